"""Boot the real worker (worker/start.sh) against the fake ComfyUI and send it jobs.

    with WorkerProcess(tmp_path, env={"MODEL_VERIFY": "off"}) as worker:
        worker.wait_ready()
        answer = worker.runsync({"workflow": {...}})   # RunPod's local /runsync, real HTTP

    with RunPodAPI() as api, WorkerProcess(tmp_path, runpod_api=api) as worker:
        worker.wait_ready()                            # its first poll of RunPod's job-take
        body = api.result(api.queue({"workflow": {...}}))   # the SDK's production loop

Every process it starts is stopped by PID in `stop()`; ports are free loopback ports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from support.fake_comfyui import free_port, install

if TYPE_CHECKING:
    from support.runpod_api import RunPodAPI

REPO = Path(__file__).resolve().parents[3]
# The fake's hooks (FakeCrash, ...) and the real tier's test node pack (comfy_test_nodes)
TEST_CLASSES = (
    "FakeCrash,FakeHang,FakeIgnoreInterrupt,"
    "BakeTestRaise,BakeTestHang,BakeTestIgnoreInterrupt,BakeTestKill"
)


class WorkerProcess:
    def __init__(
        self,
        tmp: Path,
        *,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] | None = None,
        serve_api: bool = True,
        comfyui_dir: Path | None = None,
        comfyui_python: str | None = None,
        prefix: tuple[str, ...] = (),
        runpod_api: RunPodAPI | None = None,
    ):
        # comfyui_dir/comfyui_python: a real ComfyUI and its interpreter instead of the fake
        self.tmp = Path(tmp)
        self.prefix = prefix  # a command the worker runs under (tests/support/no_landlock.py)
        # runpod_api: started as on RunPod (no SDK arguments), taking jobs from this stand-in
        self.runpod_api = runpod_api
        self.comfyui_dir = comfyui_dir or install(self.tmp / "comfyui")
        self.comfy_port = free_port()
        self.api_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.comfy_url = f"http://127.0.0.1:{self.comfy_port}"
        # ComfyUI answers only the worker's key (worker/comfy/api_guard.py); the tests reach
        # it as a sidecar would, with COMFYUI_API_KEY given to the worker.
        self.api_key = f"test-key-{uuid.uuid4().hex}"
        self.comfy_session = requests.Session()
        self.comfy_session.trust_env = False
        self.comfy_session.headers["Authorization"] = f"Bearer {self.api_key}"
        (self.tmp / "volume").mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            "COMFYUI_DIR": str(self.comfyui_dir),
            "COMFYUI_PYTHON": comfyui_python or sys.executable,
            "WORKER_PYTHON": sys.executable,
            "COMFYUI_PORT": str(self.comfy_port),
            "MODEL_VERIFY": "off",
            "SAGE_ATTENTION": "off",
            "VOLUME_ROOTS": str(self.tmp / "volume"),
            "IMAGE_URL_ALLOW_PRIVATE": "1",
            "UVICORN_LOG_LEVEL": "warning",
            "PYTHONUNBUFFERED": "1",
            "COMFYUI_API_KEY": self.api_key,
            # The test hooks' node classes, which no reviewed table lists: allowed by name, as
            # an operator allows a class of their own
            "ALLOW_NODE_CLASSES": TEST_CLASSES,
            **(self._production_env() if runpod_api is not None else {}),
            **(env or {}),
        }
        # The worker hands ComfyUI only an allow-list of its environment
        # (worker/comfy/environment.py):
        # the fake's test hooks are passed on by name, as an operator passes a node's variable.
        hooks = sorted(k for k in self.env if k.startswith("FAKE_COMFYUI_"))
        if hooks:
            self.env.setdefault("COMFYUI_ENV_PASS", " ".join(hooks))
        if args is None:
            args = (
                (
                    "--rp_serve_api",
                    "--rp_api_port",
                    str(self.api_port),
                    "--rp_api_host",
                    "127.0.0.1",
                )
                if serve_api and runpod_api is None
                else ()
            )
        self.args = args
        self.log_path = self.tmp / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # The SDK's heartbeat process (production loop): forked by the worker, it pings on its
        # own and outlives a worker that is killed or exits through os._exit; pid -> cmdline
        self._forks: dict[int, bytes] = {}

    def _production_env(self) -> dict[str, str]:
        assert self.runpod_api is not None
        # A HOME without the RunPod CLI's ~/.runpod/config.toml, as in the image: the SDK would
        # send that file's key to the job API instead of RUNPOD_AI_API_KEY.
        home = self.tmp / "home"
        home.mkdir(exist_ok=True)
        return {**self.runpod_api.env(), "HOME": str(home)}

    def start(self) -> WorkerProcess:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*self.prefix, str(REPO / "worker" / "start.sh"), *self.args],
            cwd=self.tmp,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        """Until RunPod's local API answers (with `runpod_api`: until the worker first asks it
        for a job); fails with the worker's log if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            if self.runpod_api is not None:
                if self.runpod_api.arrived("job-take"):
                    self._forks.update(_forks(self.proc.pid))  # started before the first poll
                    return
                time.sleep(0.05)
                continue
            try:
                requests.get(self.url + "/docs", timeout=1, allow_redirects=False)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"worker not ready after {timeout} s:\n{self.log()}")

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker still running:\n{self.log()}") from None

    def runsync(self, job_input: Any, timeout: float = 60) -> dict[str, Any]:
        resp = requests.post(self.url + "/runsync", json={"input": job_input}, timeout=timeout)
        resp.raise_for_status()
        return resp.json()

    def comfy_get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET from ComfyUI (or the fake's test hooks), with the API key."""
        return self.comfy_session.get(self.comfy_url + path, **kwargs)

    def comfy_post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.comfy_session.post(self.comfy_url + path, **kwargs)

    def comfy_pid(self) -> int | None:
        """The PID of the ComfyUI child, read from /proc (Linux)."""
        assert self.proc is not None
        for child in _children(self.proc.pid):
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if any(part.endswith(b"main.py") for part in cmdline):
                return child
        return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            comfy = self.comfy_pid()
            self._forks.update(_forks(self.proc.pid))
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if comfy is not None:
                _kill_if_alive(comfy)
        for pid, cmdline in self._forks.items():
            with contextlib.suppress(OSError):  # gone, or its PID now names another process
                if Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                    _kill_if_alive(pid)
        if hasattr(self, "_log"):
            self._log.close()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in map(int, children):
            found.append(child)
            found.extend(_children(child))
    return found


def _forks(pid: int) -> dict[int, bytes]:
    """The children of `pid` running its own command line (forked, not exec'd), with it."""
    found: dict[int, bytes] = {}
    with contextlib.suppress(OSError):  # exited while its tree was read
        own = Path(f"/proc/{pid}/cmdline").read_bytes()
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in map(int, (task / "children").read_text().split()):
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                if cmdline == own:
                    found[child] = cmdline
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def _kill_if_alive(pid: int) -> None:
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
