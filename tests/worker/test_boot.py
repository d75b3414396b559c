"""Boot: ComfyUI's command line and supervision, SageAttention, models verified before any job."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import requests
from support.fake_comfyui import stub_models
from support.fake_comfyui.runner import REPO, WorkerProcess, pid_alive
from support.modelfiles import blob, entry, write_lock
from support.s3server import S3Server

from bake.locks.models import S3Source, UrlSource

SERVING = "Starting API server"


def system_argv(worker: WorkerProcess) -> list[str]:
    return worker.comfy_get("/system_stats", timeout=5).json()["system"]["argv"]


def wait_for(predicate, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_serverless_boot_uses_the_exact_flags_on_loopback_and_sigterm_stops_comfyui(tmp_path):
    # a stub `sageattention` importable by ComfyUI's interpreter: the flag is then passed on
    stub = tmp_path / "site"
    (stub / "sageattention").mkdir(parents=True)
    (stub / "sageattention" / "__init__.py").write_text("")
    with WorkerProcess(
        tmp_path,
        env={
            "SAGE_ATTENTION": "on",
            "PYTHONPATH": str(stub),
            "CONTAINMENT_READ": str(stub),
            "COMFYUI_EXTRA_ARGS": "--cpu",
        },
    ) as worker:
        worker.wait_ready()
        argv = system_argv(worker)
        assert argv[1:11] == [
            "--listen",
            "127.0.0.1",
            "--port",
            str(worker.comfy_port),
            "--fast",
            "fp16_accumulation",
            "--preview-method",
            "none",
            "--use-sage-attention",
            "--extra-model-paths-config",
        ]
        assert argv[11].endswith("/extra_model_paths.yaml")  # written at boot
        assert argv[12:] == ["--cpu"]  # COMFYUI_EXTRA_ARGS comes last
        assert "[comfyui] Using sage attention" in worker.log()  # log passed through, prefixed
        comfy = worker.comfy_pid()
        assert comfy is not None
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.wait_exit(20) == 128 + signal.SIGTERM
        assert not pid_alive(comfy), "ComfyUI outlived the worker"
        assert "stopping ComfyUI" in worker.log()


def test_sage_on_without_sageattention_fails_at_once_with_a_plain_message(tmp_path):
    with WorkerProcess(tmp_path, env={"SAGE_ATTENTION": "on"}) as worker:
        assert worker.wait_exit(30) == 1
        log = worker.log()
    assert "SAGE_ATTENTION is on, but `import sageattention` fails in ComfyUI's interpreter" in log
    assert "ModuleNotFoundError: No module named 'sageattention'" in log
    assert "set SAGE_ATTENTION=off" in log
    assert SERVING not in log


def test_comfyui_exiting_at_start_fails_fast_with_its_last_log_lines(tmp_path):
    with WorkerProcess(tmp_path, env={"FAKE_COMFYUI_EXIT_AT_START": "7"}) as worker:
        assert worker.wait_exit(30) == 1
        log = worker.log()
    assert "ComfyUI exited with code 7 before it was ready. Its last log lines:" in log
    assert "RuntimeError: fake start failure requested" in log
    assert SERVING not in log


def test_a_websocket_that_never_opens_fails_the_boot_with_one_line(tmp_path):
    with WorkerProcess(
        tmp_path, env={"FAKE_COMFYUI_REFUSE_WS": "1", "WEBSOCKET_RECONNECT_TIMEOUT": "1"}
    ) as worker:
        assert worker.wait_exit(30) == 1
        log = worker.log()
    assert "ComfyUI answers HTTP but its websocket did not open within 1 s" in log
    assert "Traceback" not in log
    assert SERVING not in log


def test_comfyui_start_timeout(tmp_path):
    with WorkerProcess(
        tmp_path, env={"FAKE_COMFYUI_START_DELAY": "60", "COMFYUI_START_TIMEOUT": "1"}
    ) as worker:
        assert worker.wait_exit(30) == 1  # long before the fake's 60 s delay is over
        log = worker.log()
    assert "within 1 s (COMFYUI_START_TIMEOUT)" in log
    assert SERVING not in log


def test_pod_mode_serves_comfyui_on_all_interfaces_and_keeps_it_up(tmp_path):
    with WorkerProcess(tmp_path, env={"WORKER_MODE": "pod"}, serve_api=False) as worker:
        wait_for(lambda: "ready in" in worker.log(), what="pod ready")
        argv = system_argv(worker)
        assert argv[1:3] == ["--listen", "0.0.0.0"]
        first = worker.comfy_pid()
        assert first is not None
        os.kill(first, signal.SIGKILL)
        second = wait_for(
            lambda: (p := worker.comfy_pid()) not in (None, first) and p, what="ComfyUI restarted"
        )
        wait_for(lambda: _answers(worker), what="restarted ComfyUI answering")
        assert "ComfyUI exited with code -9; restarting it" in worker.log()
        worker.proc.send_signal(signal.SIGTERM)
        worker.wait_exit(20)
        assert not pid_alive(second)


def test_sigterm_while_pod_mode_verifies_the_models_also_stops_the_sage_check(tmp_path):
    # The models lock is a FIFO: verification blocks reading it for as long as the test holds
    # it open. The stub `sageattention` never finishes importing and writes down its PID.
    marker = tmp_path / "sage-check.pid"
    stub = tmp_path / "site" / "sageattention"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(
        "import os, pathlib, threading\n"
        f"pathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\n"
        "threading.Event().wait()\n"
    )
    lock = tmp_path / "models.lock.yaml"
    os.mkfifo(lock)
    env = {
        "WORKER_MODE": "pod",
        "SAGE_ATTENTION": "on",
        "PYTHONPATH": str(stub.parent),
        # the stub writes its PID beside the test, which containment would not let it do
        "CONTAINMENT": "off",
        "MODEL_VERIFY": "full",
        "MODELS_LOCK": str(lock),
    }
    writer = sage = None
    try:
        with WorkerProcess(tmp_path, env=env, serve_api=False) as worker:
            writer = wait_for(lambda: _open_for_writing(lock), what="verification to read")
            sage = wait_for(
                lambda: marker.is_file() and int(marker.read_text() or 0),
                what="the sage check to run",
            )
            worker.proc.send_signal(signal.SIGTERM)
            assert worker.wait_exit(20) == 128 + signal.SIGTERM
            assert not pid_alive(sage), "the sage check outlived the worker"
            assert "starting ComfyUI" not in worker.log()
    finally:
        if writer is not None:
            os.close(writer)
        if sage and pid_alive(sage):
            os.kill(sage, signal.SIGKILL)


def _open_for_writing(fifo: Path) -> int | None:
    """A write end of `fifo` once a reader has it open (None until then)."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader yet
        return None


def _answers(worker: WorkerProcess) -> bool:
    try:
        return worker.comfy_get("/system_stats", timeout=1).ok
    except requests.ConnectionError:
        return False


# -- models (pod mode: the same boot, without the RunPod SDK start-up) -----------------------

GOOD = blob(4096, seed=1)
VAE = blob(2048, seed=2)
VOLUME = blob(3000, seed=3)
URL = UrlSource("https://example.invalid/model.safetensors")


def models_env(tmp_path: Path, *entries) -> dict[str, str]:
    lock = write_lock(tmp_path / "models.lock.yaml", *entries)
    return {"MODEL_VERIFY": "full", "MODELS_LOCK": str(lock)}


def place(worker: WorkerProcess, dest: str, data: bytes) -> Path:
    path = worker.comfyui_dir / dest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_bad_model_files_stop_the_boot_and_are_each_named(tmp_path):
    env = models_env(
        tmp_path,
        entry("unet", URL, "models/diffusion_models/unet.safetensors", GOOD),
        entry("vae", URL, "models/vae/vae.safetensors", VAE),
        entry("lora", URL, "models/loras/lora.safetensors", GOOD),
    )
    worker = WorkerProcess(tmp_path, env=env)
    place(worker, "models/diffusion_models/unet.safetensors", GOOD[:-1] + b"x")  # wrong hash
    place(worker, "models/vae/vae.safetensors", VAE[:100])  # wrong size
    with worker:  # lora is missing, and it is an image model
        assert worker.wait_exit(30) == 1
        log = worker.log()
    assert "model verification failed; no job will run on these files:" in log
    assert "unet.safetensors" in log and "vae.safetensors" in log
    assert "lora: missing" in log and "an image model" in log
    assert SERVING not in log


def test_pod_mode_starts_comfyui_on_all_interfaces_only_after_the_models_verified(tmp_path):
    env = models_env(tmp_path, entry("unet", URL, "models/diffusion_models/unet.safetensors", GOOD))
    worker = WorkerProcess(tmp_path, env={**env, "WORKER_MODE": "pod"}, serve_api=False)
    place(worker, "models/diffusion_models/unet.safetensors", GOOD[:-1] + b"x")  # wrong hash
    with worker:
        assert worker.wait_exit(30) == 1
        log = worker.log()
    assert "model verification failed; no job will run on these files:" in log
    assert "starting ComfyUI" not in log  # never reachable, not even for a moment


@pytest.fixture()
def s3():
    with S3Server() as server:
        yield server


def test_verified_models_boot_and_missing_volume_models_are_a_warning(tmp_path):
    env = models_env(
        tmp_path,
        entry("unet", URL, "models/diffusion_models/unet.safetensors", GOOD),
        entry(
            "big",
            S3Source("models", "big.safetensors"),
            "models/diffusion_models/big.safetensors",
            VOLUME,
            placement="volume",
        ),
    )
    worker = WorkerProcess(tmp_path, env={**env, "WORKER_MODE": "pod"}, serve_api=False)
    place(worker, "models/diffusion_models/unet.safetensors", GOOD)
    with worker:
        log = wait_for(lambda: "ready in" in worker.log() and worker.log(), what="ready")
    assert "models: 1 verified" in log
    assert "big: missing" in log and "FETCH_MISSING=1 fetches it" in log
    assert log.index("models: 1 verified") < log.index("starting ComfyUI")  # pod mode


def test_missing_volume_models_are_fetched_when_asked_and_allowed(tmp_path, s3):
    s3.put("models", "big.safetensors", VOLUME)
    env = {
        **models_env(
            tmp_path,
            entry(
                "big",
                S3Source("models", "big.safetensors"),
                "models/diffusion_models/big.safetensors",
                VOLUME,
                placement="volume",
            ),
        ),
        "FETCH_MISSING": "1",
        **s3.env(),
    }
    with WorkerProcess(tmp_path, env={**env, "WORKER_MODE": "pod"}, serve_api=False) as worker:
        log = wait_for(lambda: "ready in" in worker.log() and worker.log(), what="ready")
    fetched = tmp_path / "volume" / "models" / "diffusion_models" / "big.safetensors"
    assert fetched.read_bytes() == VOLUME
    assert "fetching missing volume models: big" in log and "models: 1 verified" in log


def test_missing_volume_models_without_credentials_are_not_fetched(tmp_path):
    env = {
        **models_env(
            tmp_path,
            entry(
                "big",
                S3Source("models", "big.safetensors"),
                "models/diffusion_models/big.safetensors",
                VOLUME,
                placement="volume",
            ),
        ),
        "FETCH_MISSING": "1",
        "AWS_ENDPOINT_URL": "",
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
    }
    with WorkerProcess(tmp_path, env={**env, "WORKER_MODE": "pod"}, serve_api=False) as worker:
        log = wait_for(lambda: "ready in" in worker.log() and worker.log(), what="ready")
    assert (
        "big: missing, and not fetched: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY not set"
    ) in log


def test_when_comfyui_cannot_come_back_the_job_asks_for_a_new_worker(tmp_path):
    broken = tmp_path / "broken"
    with WorkerProcess(tmp_path, env={"FAKE_COMFYUI_FAIL_IF_EXISTS": str(broken)}) as worker:
        worker.wait_ready()
        broken.touch()  # from now on ComfyUI fails to start
        comfy = worker.comfy_pid()
        os.kill(comfy, signal.SIGKILL)
        wait_for(lambda: not pid_alive(comfy), what="ComfyUI to die")
        answer = worker.runsync({"workflow": {"1": {"class_type": "PreviewImage", "inputs": {}}}})
        assert answer["status"] == "FAILED"
        assert answer["error"].startswith("ComfyUI was not running when the job arrived")
        assert "this worker is being replaced" in answer["error"]
        assert "fake start failure" in answer["error"]
        assert "refresh_worker flag" not in answer  # the SDK consumed the flag
        assert worker.proc.poll() is None  # the worker itself stays up for RunPod to retire


def test_a_crash_is_reported_at_once_and_a_failed_restart_retires_the_worker_at_the_next_job(
    tmp_path,
):
    broken = tmp_path / "broken"
    with WorkerProcess(tmp_path, env={"FAKE_COMFYUI_FAIL_IF_EXISTS": str(broken)}) as worker:
        worker.wait_ready()
        broken.touch()  # the restart after the crash will fail
        crash = {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
            },
            "2": {"class_type": "FakeCrash", "inputs": {"images": ["1", 0]}},
        }
        answer = worker.runsync({"workflow": crash})
        assert answer["error"].startswith("ComfyUI exited (code 3) while running the job.")
        assert answer["error"].endswith("ComfyUI is being restarted for the next job.")
        answer = worker.runsync({"workflow": {"1": {"class_type": "PreviewImage", "inputs": {}}}})
        assert answer["status"] == "FAILED"
        assert "could not be restarted" in answer["error"]
        assert "this worker is being replaced" in answer["error"]


def test_comfyui_does_not_outlive_a_killed_worker(tmp_path):
    with WorkerProcess(tmp_path, env={"WORKER_MODE": "pod"}, serve_api=False) as worker:
        wait_for(lambda: "ready in" in worker.log(), what="ready")
        comfy = worker.comfy_pid()
        worker.proc.kill()
        worker.proc.wait()
        wait_for(lambda: not pid_alive(comfy), what="ComfyUI to exit after the worker died")


def test_without_arguments_the_sdk_runs_test_input_json_and_exits(tmp_path):
    # RunPod's local-test convention: no job queue configured, test_input.json in the cwd
    (tmp_path / "test_input.json").write_text((REPO / "test_input.json").read_text())
    worker = WorkerProcess(tmp_path, serve_api=False)
    worker.env.pop("RUNPOD_WEBHOOK_GET_JOB", None)
    stub_models(worker.comfyui_dir)
    with worker:
        assert worker.wait_exit(60) == 0, worker.log()
        log = worker.log()
    assert "Job local_test completed successfully." in log
    assert "wan_flf_00001.mp4" in log


def test_a_failed_fetch_stops_the_boot_and_names_the_file(tmp_path, s3):
    # moto keeps one store per test process: a key no other test writes
    s3.put("models", "other.safetensors", b"not the one")
    env = {
        **models_env(
            tmp_path,
            entry(
                "gone",
                S3Source("models", "gone.safetensors"),
                "models/diffusion_models/gone.safetensors",
                VOLUME,
                placement="volume",
            ),
        ),
        "FETCH_MISSING": "1",
        "WORKER_MODE": "pod",
        **s3.env(),
    }
    with WorkerProcess(tmp_path, env=env, serve_api=False) as worker:
        assert worker.wait_exit(60) == 1
        log = worker.log()
    assert "model verification failed; no job will run on these files:" in log
    assert "  gone: s3://models/gone.safetensors: no such object" in log
    assert not (tmp_path / "volume" / "models" / "diffusion_models" / "gone.safetensors").exists()
