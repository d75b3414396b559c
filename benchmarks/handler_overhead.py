#!/usr/bin/env python3
"""What the worker adds to a trivial job, against a bare ComfyUI client, in the same run.

    python benchmarks/handler_overhead.py [--rounds 200] [--warmup 20]

The job: LoadImage -> ImageInvert -> SaveImage on a 64x48 PNG sent as base64. The worker side
is a real round trip through RunPod's local API (`worker/start.sh --rp_serve_api`, POST
/runsync over a kept-alive HTTP connection). The bare side talks to the same ComfyUI directly:
upload, POST /prompt, its one websocket until `executing {node: null}`, /history, /view. Both
write a fresh output file per job (the bare client varies `filename_prefix`, the worker uses
its per-job folder), and runs alternate so a busy machine slows both alike.

ComfyUI here is the fake from tests/support/fake_comfyui (no torch): its own time per job is
small, so the ratio is a harsh upper bound on what the worker would add to a real ComfyUI.
Targets: under 5 ms added at the median and at most 1.25x the bare client.

A third column, "sdk floor", is RunPod's local API with a handler that returns a constant
result of the same shape: what /runsync itself costs (FastAPI, uvicorn, the SDK's job
wrapper) before the worker does anything.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import requests  # noqa: E402
import websocket  # noqa: E402
from PIL import Image  # noqa: E402
from support.fake_comfyui import free_port  # noqa: E402
from support.fake_comfyui.runner import WorkerProcess  # noqa: E402

FLOOR = """
import runpod
RESULT = {"images": [{"filename": "b_00001_.png", "type": "base64", "data": "A" * 2000,
                      "content_type": "image/png", "node_id": "3"}], "videos": []}
runpod.serverless.start({"handler": lambda job: RESULT})
"""

GRAPH = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "bench.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "b"}},
}


class BareClient:
    """The least a client must do for this job, with one websocket kept open."""

    def __init__(self, url: str, key: str):
        self.url = url
        self.session = requests.Session()
        # ComfyUI answers only the worker's key (worker/comfy/api_guard.py): the bare client
        # carries it too, so both sides pay the same check
        self.session.headers["Authorization"] = f"Bearer {key}"
        self.client_id = uuid.uuid4().hex
        self.ws = websocket.create_connection(
            url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}",
            header=[f"Authorization: Bearer {key}"],
        )

    def run(self, png_b64: str) -> bytes:
        data = base64.b64decode(png_b64)
        name = self.session.post(
            self.url + "/upload/image",
            files={"image": ("bench.png", data)},
            data={"overwrite": "true"},
        ).json()["name"]
        prompt = json.loads(json.dumps(GRAPH))
        prompt["1"]["inputs"]["image"] = name
        prompt["3"]["inputs"]["filename_prefix"] = f"bare-{uuid.uuid4().hex[:8]}/b"
        prompt_id = self.session.post(
            self.url + "/prompt", json={"prompt": prompt, "client_id": self.client_id}
        ).json()["prompt_id"]
        while True:
            raw = self.ws.recv()
            if not isinstance(raw, str):
                continue
            msg = json.loads(raw)
            if (
                msg["type"] == "executing"
                and msg["data"].get("node") is None
                and msg["data"].get("prompt_id") == prompt_id
            ):
                break
        entry = self.session.get(f"{self.url}/history/{prompt_id}").json()[prompt_id]
        image = entry["outputs"]["3"]["images"][0]
        return self.session.get(self.url + "/view", params=image).content


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buf, "PNG")
    png_b64 = base64.b64encode(buf.getvalue()).decode()
    job = {"input": {"workflow": GRAPH, "images": [{"name": "bench.png", "image": png_b64}]}}

    floor_port = free_port()
    floor = subprocess.Popen(
        [
            sys.executable,
            "-c",
            FLOOR,
            "--rp_serve_api",
            "--rp_api_port",
            str(floor_port),
            "--rp_api_host",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUNPOD_LOG_LEVEL": "INFO", "UVICORN_LOG_LEVEL": "warning"},
    )
    with tempfile.TemporaryDirectory() as tmp, WorkerProcess(Path(tmp)) as worker:
        worker.wait_ready()
        session = requests.Session()
        bare = BareClient(worker.comfy_url, worker.api_key)
        floor_url = f"http://127.0.0.1:{floor_port}/runsync"
        for _ in range(200):
            try:
                session.post(floor_url, json=job, timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)

        def via_worker() -> None:
            answer = session.post(worker.url + "/runsync", json=job).json()
            assert answer["status"] == "COMPLETED", answer

        def via_bare() -> None:
            assert bare.run(png_b64)

        def via_floor() -> None:
            assert session.post(floor_url, json=job).json()["status"] == "COMPLETED"

        sides = [("worker", via_worker), ("bare", via_bare), ("floor", via_floor)]
        try:
            for _ in range(args.warmup):
                for _, fn in sides:
                    fn()
            timings: dict[str, list[float]] = {name: [] for name, _ in sides}
            for i in range(args.rounds):
                for name, fn in sides if i % 2 == 0 else sides[::-1]:
                    started = time.perf_counter()
                    fn()
                    timings[name].append((time.perf_counter() - started) * 1000)
        finally:
            floor.terminate()
            floor.wait(10)

    w = statistics.median(timings["worker"])
    b = statistics.median(timings["bare"])
    p90 = {k: statistics.quantiles(v, n=10)[-1] for k, v in timings.items()}
    print(f"rounds: {args.rounds} (after {args.warmup} warm-up), against the fake ComfyUI")
    print(f"bare client   median {b:7.2f} ms   p90 {p90['bare']:7.2f} ms")
    print(f"worker        median {w:7.2f} ms   p90 {p90['worker']:7.2f} ms")
    f = statistics.median(timings["floor"])
    print(f"sdk floor     median {f:7.2f} ms   p90 {p90['floor']:7.2f} ms   (constant handler)")
    print(
        f"added at the median: {w - b:.2f} ms (target < 5 ms); ratio {w / b:.2f}x (target <= 1.25x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
