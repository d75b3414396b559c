"""The production loop (RunPod's job API -> the SDK -> the worker) against the real ComfyUI.

test_production_loop.py runs this loop against the fake; here the worker, started as the image
starts it (`worker/start.sh` without SDK arguments, RunPod's variables pointing at the stand-in
of tests/support/runpod_api.py), runs the real ComfyUI on the CPU with the test node pack: a
job's result comes back through job-done, and a stop on RunPod's stop channel stops the real
prompt (BakeTestHang checks ComfyUI's interrupt flag, as well-behaved nodes do).
"""

from __future__ import annotations

import base64
import io
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from support import real_comfyui
from support.fake_comfyui.runner import WorkerProcess, pid_alive
from support.runpod_api import RunPodAPI
from support.runpod_jobs import comfy_queue

pytestmark = [pytest.mark.real_comfyui, pytest.mark.slow]


def job(hang: bool = False) -> dict[str, Any]:
    """LoadImage -> ImageInvert -> SaveImage; with `hang`, a BakeTestHang before the save that
    runs until ComfyUI interrupts it."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buf, "PNG")
    prompt: dict[str, Any] = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "p"}},
    }
    if hang:
        prompt["3"] = {"class_type": "BakeTestHang", "inputs": {"images": ["2", 0], "seconds": 0}}
        prompt["9"]["inputs"]["images"] = ["3", 0]
    image = base64.b64encode(buf.getvalue()).decode()
    return {"workflow": prompt, "images": [{"name": "in.png", "image": image}]}


def inverted(output: dict[str, Any]) -> bool:
    """The one image is the inverse of the job's (within 1: ComfyUI truncates x*255)."""
    [image] = output["images"]
    with Image.open(io.BytesIO(base64.b64decode(image["data"]))) as img:
        got = img.convert("RGB").getpixel((0, 0))
    return all(abs(a - b) <= 1 for a, b in zip(got, (245, 55, 225), strict=True))


@pytest.fixture(scope="module")
def api() -> Iterator[RunPodAPI]:
    with RunPodAPI() as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, api: RunPodAPI) -> Iterator[WorkerProcess]:
    src, python = real_comfyui.source_and_interpreter()
    tmp = tmp_path_factory.mktemp("real-production-loop")
    comfyui_dir = real_comfyui.make_comfyui(tmp / "comfyui", src, [])  # the test pack only
    w = WorkerProcess(
        tmp,
        comfyui_dir=comfyui_dir,
        comfyui_python=python,
        runpod_api=api,
        env={
            **real_comfyui.REAL_ENV,
            "JOB_TIMEOUT": "120",
            "INTERRUPT_GRACE": "10",
            "SHUTDOWN_GRACE": "1",
        },
    )
    w.start()
    try:
        w.wait_ready(timeout=240)
        yield w
    finally:
        w.stop()


def test_a_job_through_the_production_loop_returns_its_image_once(api, worker):
    first = api.queue(job())
    body = api.result(first, timeout=120)
    assert set(body) == {"output"}, body
    assert inverted(body["output"])
    second = api.queue(job())  # once its result is out, the first job's posts are all in
    assert inverted(api.result(second, timeout=120)["output"])
    assert api.taken(first) == 1
    assert [c.status for c in api.done_attempts(first)] == [200]


def test_a_stop_on_runpods_channel_stops_the_real_prompt_and_the_next_job_runs(api, worker):
    comfy = worker.comfy_pid()
    hung = api.queue(job(hang=True))
    deadline = time.monotonic() + 60
    while not comfy_queue(worker):
        assert time.monotonic() < deadline, f"the prompt never started:\n{worker.log()[-3000:]}"
        time.sleep(0.05)
    stopped = time.monotonic()
    api.stop(hung)
    while comfy_queue(worker) and time.monotonic() < stopped + 10:
        time.sleep(0.02)
    idle = time.monotonic()
    assert not comfy_queue(worker), "the real ComfyUI still runs the stopped job's prompt"
    assert idle - stopped < 3.0, idle - stopped  # the stop channel is polled every second
    after = api.queue(job())
    body = api.result(after, timeout=120)
    assert set(body) == {"output"}, body
    assert inverted(body["output"])
    assert api.done_attempts(hung) == []  # a stopped job posts nothing
    assert worker.comfy_pid() == comfy  # the interrupt was enough: no restart


def test_sigterm_past_the_grace_stops_the_real_prompt_and_the_worker_says_why(api, worker):
    # Last in the module: the worker does not outlive it, as on RunPod.
    comfy = worker.comfy_pid()
    hung = api.queue(job(hang=True))
    deadline = time.monotonic() + 60
    while not comfy_queue(worker):
        assert time.monotonic() < deadline, f"the prompt never started:\n{worker.log()[-3000:]}"
        time.sleep(0.05)
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    body = api.result(hung, timeout=30)
    assert body["error"].startswith(
        "the worker is shutting down (RunPod sent SIGTERM) and the job did not finish within"
    ), body
    assert worker.wait_exit(30) == 0
    assert comfy is not None and not pid_alive(comfy), "ComfyUI outlived the worker"
