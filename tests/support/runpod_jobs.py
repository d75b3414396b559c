"""Jobs a client sends through RunPod, and what the tests read back (the fake ComfyUI's hooks)."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

from PIL import Image

from support.fake_comfyui.runner import WorkerProcess


def png(color: tuple[int, int, int] = (10, 200, 30)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def invert_job(color: tuple[int, int, int] = (10, 200, 30), hang: bool = False) -> dict[str, Any]:
    """LoadImage -> ImageInvert -> SaveImage; with `hang`, a FakeHang before the save that runs
    until it is interrupted or released (POST /fake/release)."""
    prompt: dict[str, Any] = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
    }
    if hang:
        prompt["4"] = {"class_type": "FakeHang", "inputs": {"images": ["2", 0], "seconds": 0}}
        prompt["3"]["inputs"]["images"] = ["4", 0]
    return {"workflow": prompt, "images": [{"name": "in.png", "image": png(color)}]}


def pixel(output: dict[str, Any]) -> tuple[int, int, int]:
    [image] = output["images"]
    with Image.open(io.BytesIO(base64.b64decode(image["data"]))) as img:
        return img.convert("RGB").getpixel((0, 0))


def wait_running(worker: WorkerProcess, timeout: float = 10) -> str:
    """Until ComfyUI runs a prompt; returns its id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = worker.comfy_get("/queue", timeout=5).json()["queue_running"]
        if running:
            return running[0][1]
        time.sleep(0.02)
    raise AssertionError(f"no prompt started within {timeout} s:\n{worker.log()[-3000:]}")


def comfy_queue(worker: WorkerProcess) -> list[Any]:
    body = worker.comfy_get("/queue", timeout=5).json()
    return body["queue_running"] + body["queue_pending"]
