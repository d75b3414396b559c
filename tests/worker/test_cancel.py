"""A job that RunPod stops (the user's /cancel, the endpoint's execution timeout) stops its prompt.

The stop goes through RunPod's SDK itself: its JobScaler takes jobs from an injected job fetcher
and stop signals from an injected stop-signal fetcher (the hooks the SDK offers for local runs),
runs our handler as an asyncio task, and cancels that task when the signal names the job. The
handler runs in this process against a ComfyUI child started as the worker starts it: the fake
(a node that hangs until interrupted), and the real ComfyUI with the test node pack.
"""

from __future__ import annotations

import asyncio
import base64
import io
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from runpod.serverless.modules import rp_job
from runpod.serverless.modules.rp_scale import JobScaler
from support import real_comfyui
from support.fake_comfyui import free_port, install

from worker import rp_handler
from worker.comfy.client import ComfyClient
from worker.comfy.process import ComfyProcess
from worker.config import Config


def png_b64() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 30)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def workflow(hang_class: str | None) -> dict[str, Any]:
    prompt: dict[str, Any] = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "c"}},
    }
    if hang_class:
        prompt["4"] = {"class_type": hang_class, "inputs": {"images": ["2", 0], "seconds": 0}}
        prompt["3"]["inputs"]["images"] = ["4", 0]
    return {"workflow": prompt, "images": [{"name": "in.png", "image": png_b64()}]}


def comfy_queue(url: str) -> list[str]:
    """The ids of the prompts ComfyUI is running or holding."""
    body = requests.get(url + "/queue", timeout=5).json()
    return [item[1] for item in body["queue_running"] + body["queue_pending"]]


def job_files(comfyui_dir: Path) -> list[str]:
    """Files left in the per-job input/output folders once the background removal ran."""
    deadline = time.monotonic() + 5
    while True:
        found = [
            str(p)
            for kind in ("input", "output")
            for p in (comfyui_dir / kind).glob("job-*/**/*")
            if p.is_file()
        ]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


class QueueWatcher(threading.Thread):
    """Notes when ComfyUI's queue first becomes empty after `start()`, off the event loop."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.empty_at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.empty_at is None:
            if not comfy_queue(self.url):
                self.empty_at = time.monotonic()
            time.sleep(0.01)


def run_cancel_scenario(
    tmp: Path, comfyui_dir: Path, python: str, env: dict[str, str], hang_class: str
) -> None:
    port = free_port()
    config = Config.from_env(
        {
            "COMFYUI_DIR": str(comfyui_dir),
            "COMFYUI_PYTHON": python,
            "COMFYUI_PORT": str(port),
            "MODEL_VERIFY": "off",
            "SAGE_ATTENTION": "off",
            "VOLUME_ROOTS": str(tmp / "volume"),
            "JOB_TIMEOUT": "20",
            "INTERRUPT_GRACE": "10",
            **env,
        }
    )
    comfy = ComfyProcess(config, sage=False)
    comfy.start()
    try:
        comfy.wait_ready()
        client = ComfyClient(config.comfyui_url, alive=comfy.alive)
        client.ensure_connected()
        rp_handler.install(rp_handler.Runtime(config, comfy, client))
        outcome = asyncio.run(asyncio.wait_for(_scale(config.comfyui_url, hang_class), 120))
        assert "hung" not in outcome["results"], "a stopped job must not report a result"
        # Stopped: ComfyUI let go of the prompt within 1 s of the stop signal
        assert outcome["empty_after"] is not None, "ComfyUI still held the prompt"
        assert outcome["empty_after"] < 1.0, outcome
        # The next job ran on an idle ComfyUI, and worked
        assert outcome["queue_at_next"] == []
        after = outcome["results"]["after"]
        assert "error" not in after, after
        assert after["output"]["images"][0]["filename"].endswith(".png")
        assert job_files(comfyui_dir) == []
        assert comfy.restarts == 0  # the interrupt was enough
        client.close()
    finally:
        rp_handler.install(None)  # type: ignore[arg-type]
        comfy.stop()


async def _scale(url: str, hang_class: str) -> dict[str, Any]:
    jobs = [{"id": "hung", "input": workflow(hang_class)}, {"id": "after", "input": workflow(None)}]
    results: dict[str, dict[str, Any]] = {}
    seen: dict[str, Any] = {"signalled": False, "watcher": QueueWatcher(url)}
    scaler: JobScaler

    async def jobs_fetcher(session: Any, wanted: int) -> list[dict[str, Any]] | None:
        if jobs and (jobs[0]["id"] == "hung" or seen["signalled"]):
            return [jobs.pop(0)]
        await asyncio.sleep(0.05)
        return None

    async def jobs_handler(session: Any, config: dict[str, Any], job: dict[str, Any]) -> None:
        if job["id"] == "after":
            seen["queue_at_next"] = await asyncio.to_thread(comfy_queue, url)
        results[job["id"]] = await rp_job.run_job(config["handler"], job)
        if job["id"] == "after":
            scaler.kill_worker()

    async def stop_signals_fetcher(session: Any) -> list[str]:
        # RunPod's stop channel, named once the hung job's prompt is running in ComfyUI.
        if seen["signalled"]:
            await asyncio.sleep(0.1)
            return []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if await asyncio.to_thread(comfy_queue, url):
                seen["signalled"] = True
                seen["signalled_at"] = time.monotonic()
                seen["watcher"].start()
                return ["hung"]
            await asyncio.sleep(0.05)
        seen["signalled"] = True
        return []

    scaler = JobScaler(
        {
            "handler": rp_handler.handler,
            "jobs_fetcher": jobs_fetcher,
            "jobs_handler": jobs_handler,
            "stop_signals_fetcher": stop_signals_fetcher,
        }
    )
    try:
        await scaler.run()
    finally:
        watcher: QueueWatcher = seen["watcher"]
        watcher.stop.set()
    empty_after = None
    if watcher.empty_at is not None:
        empty_after = watcher.empty_at - seen["signalled_at"]
    return {"results": results, "empty_after": empty_after, "queue_at_next": seen["queue_at_next"]}


def test_a_stopped_job_interrupts_its_prompt_and_the_next_job_runs(tmp_path):
    comfyui_dir = install(tmp_path / "comfyui")
    run_cancel_scenario(tmp_path, comfyui_dir, sys.executable, {}, "FakeHang")


@pytest.mark.real_comfyui
@pytest.mark.slow
def test_a_stopped_job_interrupts_its_prompt_on_the_real_comfyui(tmp_path):
    src, python = real_comfyui.source_and_interpreter()
    comfyui_dir = real_comfyui.make_comfyui(tmp_path / "comfyui", src, [])
    env = {k: v for k, v in real_comfyui.REAL_ENV.items() if k != "MODEL_VERIFY"}
    run_cancel_scenario(tmp_path, comfyui_dir, python, env, "BakeTestHang")
