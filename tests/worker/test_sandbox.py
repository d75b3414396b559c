"""What ComfyUI gets from the worker: no credentials, no history of earlier jobs.

Booted through worker/start.sh against the fake ComfyUI; the fake shows its own environment
(`GET /fake/env`), so what is asserted is what the child process really received. The same
attack through a code-evaluating node, against the real ComfyUI, is in test_sandbox_real.py.
"""

from __future__ import annotations

import base64
import io
import json
import time

import pytest
from PIL import Image
from support.fake_comfyui.runner import WorkerProcess

INVERT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "t/inv"}},
}

# Obviously fake values: what a RunPod endpoint's worker holds, under the names it holds them.
CREDENTIALS = {
    "BUCKET_ACCESS_KEY_ID": "test-only-bucket-key-id",
    "BUCKET_SECRET_ACCESS_KEY": "test-only-bucket-secret",
    "HF_TOKEN": "test-only-hub-token",
    "AWS_SECRET_ACCESS_KEY": "test-only-aws-secret",
    "RUNPOD_AI_API_KEY": "test-only-runpod-key",
    "RUNPOD_WEBHOOK_GET_JOB": "http://127.0.0.1:9/test-only-job-url",
    # Credentials whose names begin with an allowed prefix (NVIDIA_*, TORCH_*, PYTHON*): an
    # endpoint that also calls NVIDIA's API keeps its key in NVIDIA_API_KEY.
    "NVIDIA_API_KEY": "test-only-nvidia-key",
    "TORCH_HUB_TOKEN": "test-only-torch-token",
    "PYTHON_KEYRING_PASSWORD": "test-only-keyring-password",
}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sandbox")
    env = {
        **CREDENTIALS,
        "TORCH_TEST_ONLY_SETTING": "kept",  # an allowed prefix: ComfyUI's tuning variables
        "SOME_UNLISTED_VARIABLE": "dropped",
        "HF_HUB_OFFLINE": "0",  # the worker forces it on for ComfyUI
    }
    # RUNPOD_WEBHOOK_GET_JOB would make the SDK poll that URL instead of serving /runsync
    env.pop("RUNPOD_WEBHOOK_GET_JOB")
    with WorkerProcess(tmp, env=env) as worker:
        worker.wait_ready()
        yield worker


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def invert_job(worker: WorkerProcess) -> dict:
    return worker.runsync({"workflow": INVERT, "images": [{"name": "in.png", "image": b64(png())}]})


def test_comfyui_holds_none_of_the_workers_credentials(worker):
    child = worker.comfy_get("/fake/env", timeout=5).json()
    text = json.dumps(child)
    for name in CREDENTIALS:
        assert name not in child
    for value in CREDENTIALS.values():
        assert value not in text
    assert child["HF_HUB_OFFLINE"] == "1"
    assert child["TORCH_TEST_ONLY_SETTING"] == "kept"
    assert "SOME_UNLISTED_VARIABLE" not in child
    assert child["PATH"]  # what ComfyUI needs is still there
    assert invert_job(worker)["status"] == "COMPLETED"


def wait_for_empty_history(worker: WorkerProcess, timeout: float = 5) -> dict:
    deadline = time.monotonic() + timeout
    while (history := worker.comfy_get("/history", timeout=5).json()) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    return history


def test_a_finished_job_leaves_nothing_in_comfyuis_history(worker):
    done = invert_job(worker)
    assert done["status"] == "COMPLETED", done
    # A job that fails while running (an upload that is not an image) is forgotten too.
    failed = worker.runsync(
        {"workflow": INVERT, "images": [{"name": "in.png", "image": b64(b"not an image")}]}
    )
    assert "failed while running node 1 (LoadImage)" in failed["error"]
    # Deleted right after each result is built, off the response's path.
    history = wait_for_empty_history(worker)
    assert done["output"]["prompt_id"] not in history
    assert history == {}
    stats = worker.comfy_get("/fake/stats", timeout=5).json()
    assert stats["POST /history"] >= 2


def test_passing_a_credential_to_comfyui_by_name_is_refused_at_boot(tmp_path):
    env = {"COMFYUI_ENV_PASS": "TORCH_LOGS HF_TOKEN", "HF_TOKEN": "test-only-hub-token"}
    with WorkerProcess(tmp_path, env=env) as worker:
        assert worker.wait_exit() == 2
    log = worker.log()
    assert "COMFYUI_ENV_PASS: HF_TOKEN cannot be passed to ComfyUI" in log
    assert "test-only-hub-token" not in log
    assert "starting ComfyUI" not in log
