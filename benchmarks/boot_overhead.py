#!/usr/bin/env python3
"""The worker's own boot cost: start to handler ready, minus ComfyUI's start and hashing.

    python benchmarks/boot_overhead.py [--runs 3] [--comfy-delay 0 8]

For each ComfyUI start delay (the fake ComfyUI sleeps that long before binding its port, to
stand in for a real ComfyUI's start: 8-17 s on a 2-core machine), it boots
`worker/start.sh --rp_serve_api` with a models lock of small files (MODEL_VERIFY=full) and
measures from process start until RunPod's local API answers. The worker logs how long
ComfyUI took to answer and how long verification took; they run concurrently, so

    overhead = ready - max(ComfyUI start, verification)

is what the worker itself adds on the critical path (interpreter start, configuration, the
SageAttention check, the RunPod SDK import and its API server start). Target: under 1 s.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from support.fake_comfyui.runner import WorkerProcess  # noqa: E402
from support.modelfiles import blob, entry, write_lock  # noqa: E402

from bake.locks.models import UrlSource  # noqa: E402

READY = re.compile(r"ComfyUI answered after ([\d.]+) s, model verification ([\d.]+) s")


def boot_once(delay: float, model_mb: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        data = blob(model_mb << 20, seed=7)
        dest = "models/diffusion_models/bench.safetensors"
        lock = write_lock(
            Path(tmp) / "models.lock.yaml",
            entry("bench", UrlSource("https://example.invalid/b"), dest, data),
        )
        worker = WorkerProcess(
            Path(tmp),
            env={
                "MODEL_VERIFY": "full",
                "MODELS_LOCK": str(lock),
                "FAKE_COMFYUI_START_DELAY": str(delay),
            },
        )
        path = worker.comfyui_dir / dest
        path.write_bytes(data)
        started = time.perf_counter()
        with worker:
            worker.wait_ready(timeout=120)
            ready = time.perf_counter() - started
            time.sleep(0.2)
            match = READY.search(worker.log())
            assert match, worker.log()
        return ready, float(match.group(1)), float(match.group(2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--comfy-delay", type=float, nargs="+", default=[0.0, 8.0])
    parser.add_argument("--model-mb", type=int, default=64)
    args = parser.parse_args()
    print(f"{args.runs} boots per row; one {args.model_mb} MiB model verified (full) each boot")
    print(f"{'ComfyUI delay':>13} {'ready':>8} {'ComfyUI':>8} {'verify':>8} {'overhead':>9}")
    for delay in args.comfy_delay:
        rows = [boot_once(delay, args.model_mb) for _ in range(args.runs)]
        ready, comfy, verify = (statistics.median(col) for col in zip(*rows, strict=True))
        overhead = statistics.median(r - max(c, v) for r, c, v in rows)
        print(f"{delay:>12.1f}s {ready:>7.2f}s {comfy:>7.2f}s {verify:>7.2f}s {overhead:>8.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
