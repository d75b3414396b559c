"""Code a job runs inside the real ComfyUI: what it can reach (its environment, the worker's,
the network, ComfyUI's own port and code), on an endpoint that allows code nodes.

RES4LYF's `Sigmas Math1` evaluates its `f1` formula with `torch` in scope; `torch.os` is the
`os` module. A caller's formula that reads `torch.os.environ`, or runs `env` through
`torch.os.popen`, used to return the worker's bucket key, Hub token and RunPod key in the job's
error text. The worker here holds obviously fake values under those names; the jobs go through
RunPod's local /runsync like any caller's.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time

import pytest
from support.fake_comfyui.runner import WorkerProcess
from support.real_comfyui import REAL_ENV, make_comfyui, source_and_interpreter

pytestmark = [pytest.mark.real_comfyui, pytest.mark.slow]

CREDENTIALS = {
    "BUCKET_SECRET_ACCESS_KEY": "test-only-bucket-secret",
    "HF_TOKEN": "test-only-hub-token",
    "RUNPOD_AI_API_KEY": "test-only-runpod-key",
    "AWS_SECRET_ACCESS_KEY": "test-only-aws-secret",
}


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    src, python = source_and_interpreter()
    tmp = tmp_path_factory.mktemp("sandbox-real")
    comfyui_dir = make_comfyui(tmp / "comfyui", src, nodes=("RES4LYF",), test_nodes=False)
    env = {
        **REAL_ENV,
        **CREDENTIALS,
        # The job-input policy refuses code-evaluating nodes unless told to trust callers;
        # this is the endpoint that trusts them, and must still leak nothing.
        "ALLOW_CODE_NODES": "1",
        # shows the formula's result in the error; a UI helper the reviewed table refuses
        "ALLOW_NODE_CLASSES": "PreviewAny",
        "JOB_TIMEOUT": "120",
    }
    with WorkerProcess(tmp, env=env, comfyui_dir=comfyui_dir, comfyui_python=python) as worker:
        worker.wait_ready(timeout=300)
        yield worker


def formula_job(formula: str) -> dict:
    """Sigmas Math1 evaluates `formula`; numpy's float64() of a string puts the whole string
    into its error message, which the worker returns to the caller."""
    return {
        "workflow": {
            "1": {
                "class_type": "Sigmas Math1",
                "inputs": {
                    "start": 0,
                    "stop": 0,
                    "trim": 0,
                    "x": 1.0,
                    "y": 1.0,
                    "z": 1.0,
                    "f1": f"np.float64({formula})",
                    "rescale": False,
                    "max1": 14.614642,
                    "min1": 0.0291675,
                },
            },
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
        }
    }


def assert_no_credential(answer: dict) -> None:
    text = json.dumps(answer)
    for value in CREDENTIALS.values():
        assert value not in text


def test_a_formula_reading_the_environment_gets_none_of_the_workers_credentials(worker):
    lookups = "+'|'+".join(f"torch.os.environ.get('{name}', '-')" for name in CREDENTIALS)
    answer = worker.runsync(formula_job(lookups), timeout=180)
    assert_no_credential(answer)
    # The formula did run (this is its own text), and found nothing under those names.
    assert "could not convert string to float: '-|-|-|-'" in answer["error"], answer


def test_a_shell_run_from_a_formula_sees_the_scrubbed_environment(worker):
    answer = worker.runsync(formula_job("torch.os.popen('env').read()"), timeout=180)
    assert_no_credential(answer)
    assert "HF_HUB_OFFLINE=1" in answer["error"], answer  # the shell's environment came back
    for name in CREDENTIALS:
        assert f"{name}=" not in answer["error"]


def test_comfyuis_history_keeps_no_earlier_job(worker):
    answer = worker.runsync(formula_job("'history'"), timeout=180)
    assert "could not convert string to float: 'history'" in answer["error"], answer
    # neither this job's formula nor the earlier ones' are kept (deleted right after each
    # result is built, off the response's path)
    deadline = time.monotonic() + 10
    while (history := worker.comfy_get("/history", timeout=10).json()) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert history == {}


# -- containment: what the shell a formula starts cannot do ---------------------------------
def shell(worker, command: str) -> str:
    """Run `command` through a formula's popen inside ComfyUI; its output (stderr too)."""
    wrapped = f"{{ {command}; }} 2>&1"
    answer = worker.runsync(formula_job(f"torch.os.popen({wrapped!r}).read()"), 180)
    assert_no_credential(answer)
    return answer["error"]


def test_a_shell_in_comfyui_cannot_read_the_workers_environment(worker):
    out = shell(worker, f"cat /proc/{worker.proc.pid}/environ")
    assert "Permission denied" in out, out


def test_a_shell_in_comfyui_cannot_write_code_or_models(worker):
    targets = [
        worker.comfyui_dir / "custom_nodes" / "planted.py",
        worker.comfyui_dir / "main.py",
        worker.comfyui_dir / "models" / "checkpoints" / "planted.safetensors",
    ]
    out = shell(worker, "; ".join(f"echo x >> {t}" for t in targets))
    assert out.count("Permission denied") == len(targets), out
    assert not targets[0].exists() and not targets[2].exists()
    assert "echo x" not in targets[1].read_text()[-10:]


def test_a_shell_in_comfyui_opens_no_tcp_connection(worker):
    accepted: list = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(2)
        port = listener.getsockname()[1]
        # bash's /dev/tcp, then a POST to ComfyUI's own port (a prompt the worker never saw)
        out = shell(
            worker,
            f"bash -c 'echo x > /dev/tcp/127.0.0.1/{port}'; "
            f"bash -c 'echo x > /dev/tcp/127.0.0.1/{worker.comfy_port}'",
        )
        with contextlib.suppress(OSError):
            accepted.append(listener.accept())
    assert accepted == []
    assert out.count("bash: connect: Permission denied") == 2, out
