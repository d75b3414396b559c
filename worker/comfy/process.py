"""ComfyUI as a supervised child process: its command line, start, readiness, logs and stop."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any

from worker.comfy.api_guard import KEY_FD_ENV
from worker.comfy.environment import child_environment
from worker.comfy.launch import API_GUARD, Setup
from worker.comfy.user import ComfyUser
from worker.config import Config
from worker.log_text import log_lines

log = logging.getLogger("worker")

SAGE_MISSING_EXIT = 255  # what ComfyUI itself exits with when the sage flag cannot be honoured


class ComfyStartError(RuntimeError):
    """ComfyUI did not come up; the message says why and carries its last log lines."""


def comfy_command(config: Config, *, sage: bool, guarded: bool = False) -> list[str]:
    """The exact ComfyUI command line the worker runs (before containment wraps it).
    `guarded`: main.py runs behind the API key check (worker/comfy/api_guard.py)."""
    cmd = [config.comfyui_python]
    if guarded:
        cmd.append(str(API_GUARD))
    cmd += [
        str(config.comfyui_dir / "main.py"),
        "--listen",
        config.listen,
        "--port",
        str(config.comfyui_port),
        "--fast",
        "fp16_accumulation",
        "--preview-method",
        "none",
    ]
    if sage:
        cmd.append("--use-sage-attention")
    if config.extra_model_paths is not None:  # boot writes one (worker.model_paths)
        cmd += ["--extra-model-paths-config", str(config.extra_model_paths)]
    cmd += list(config.comfyui_extra_args)
    return cmd


def sage_check_command(python: str) -> list[str]:
    return [python, "-c", "import sageattention"]


def child_kwargs(
    config: Config, user: ComfyUser | None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """How every child in ComfyUI's interpreter is started: the scrubbed environment (`env`,
    else built here), and the switched user when there is one (see worker/comfy/environment.py,
    worker/comfy/user.py)."""
    if env is None:
        env = child_environment(
            os.environ,
            extra=config.comfyui_env_pass,
            home=user.home if user else None,
            user=user.name if user else None,
        )
    return {"env": env, **(user.popen_kwargs() if user else {})}


def start_sage_check(
    config: Config, user: ComfyUser | None = None, setup: Setup | None = None
) -> subprocess.Popen[str] | None:
    """Start `import sageattention` in ComfyUI's interpreter, as ComfyUI will run (same user,
    environment and containment); None when sage is off."""
    if not config.sage_attention:
        return None
    command = sage_check_command(config.comfyui_python)
    return subprocess.Popen(
        setup.wrap(command) if setup else command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **child_kwargs(config, user, setup.env if setup else None),
    )


def finish_sage_check(
    proc: subprocess.Popen[str] | None, python: str, timeout: float
) -> str | None:
    """None when sageattention imports (or the check was not started); else the reason."""
    if proc is None:
        return None
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return f"`import sageattention` did not finish within {timeout:.0f} s"
    if proc.returncode == 0:
        return None
    last = [line for line in out.strip().splitlines() if line.strip()][-1:] or ["no output"]
    return (
        f"SAGE_ATTENTION is on, but `import sageattention` fails in ComfyUI's interpreter "
        f"({python}): {last[0]}. Install the SageAttention wheel built for this GPU into "
        f"that environment, or set SAGE_ATTENTION=off to run without it."
    )


def _die_with_parent() -> None:
    # If the worker is killed outright, ComfyUI must not linger holding the GPU and the port.
    # Linux sends the signal when the *thread* that started the child ends, so this is only
    # used for children started by the main thread (see ComfyProcess.start).
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ComfyProcess:
    """One ComfyUI child: started, watched, restarted and stopped by the worker."""

    def __init__(
        self,
        config: Config,
        *,
        sage: bool,
        log_lines: int = 60,
        user: ComfyUser | None = None,
        setup: Setup | None = None,
    ):
        self.config = config
        self.sage = sage
        self.user = user  # None: ComfyUI runs as the worker's own user
        # None: ComfyUI's environment built here, no containment, no API key (unit tests)
        self.setup = setup
        self.proc: subprocess.Popen[bytes] | None = None
        self.last_lines: deque[str] = deque(maxlen=log_lines)
        self._pump: threading.Thread | None = None
        self.restarts = 0
        # Once closed (the worker is stopping), no restart may start another ComfyUI: one
        # started on a restart thread after the final stop would outlive the worker.
        self._starting = threading.Lock()
        self._closed = False

    @property
    def command(self) -> list[str]:
        guarded = self.setup is not None and self.setup.api_key is not None
        command = comfy_command(self.config, sage=self.sage, guarded=guarded)
        return self.setup.wrap(command) if self.setup else command

    def start(self) -> None:
        with self._starting:
            if self._closed:
                raise ComfyStartError("not started: the worker is stopping")
            self._start()

    def _start(self) -> None:
        self.last_lines.clear()
        as_user = f" as {self.user.name} (uid {self.user.uid})" if self.user else ""
        guarded = self.setup is not None and self.setup.api_key is not None
        shown = " ".join(comfy_command(self.config, sage=self.sage, guarded=guarded))
        contained = f", contained ({self.setup.contained})" if self.setup else ""
        log.info("starting ComfyUI%s%s: %s", as_user, contained, shown)
        main = threading.current_thread() is threading.main_thread()
        on_main_thread = _die_with_parent if main else None
        kwargs = child_kwargs(self.config, self.user, self.setup.env if self.setup else None)
        key_fd = None
        if self.setup is not None and self.setup.api_key is not None:
            # The key travels on a pipe that api_guard.py reads and closes: never in ComfyUI's
            # environment or command line, where its children and /proc could read it.
            key_fd, write_end = os.pipe()
            os.write(write_end, self.setup.api_key.encode())
            os.close(write_end)
            kwargs["env"] = {**kwargs["env"], KEY_FD_ENV: str(key_fd)}
        try:
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.config.comfyui_dir,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=on_main_thread,
                pass_fds=(key_fd,) if key_fd is not None else (),
                **kwargs,
            )
        finally:
            if key_fd is not None:
                os.close(key_fd)
        self._pump = threading.Thread(
            target=self._pass_log, args=(self.proc,), name="comfyui-log", daemon=True
        )
        self._pump.start()

    def _pass_log(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        prefix = self.config.log_prefix
        for raw in iter(proc.stdout.readline, b""):
            for line in log_lines(raw.decode("utf-8", "replace")):
                self.last_lines.append(line)
                sys.stdout.write(f"{prefix}{line}\n")
            sys.stdout.flush()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def tail(self, n: int = 20) -> str:
        if self._pump is not None and not self.alive():
            self._pump.join(timeout=2)  # let the last lines of a dead process arrive
        lines = list(self.last_lines)[-n:]
        return "\n".join(lines) if lines else "(no output)"

    def wait_ready(self, timeout: float | None = None) -> float:
        """Block until /system_stats answers; returns the seconds waited."""
        timeout = self.config.start_timeout if timeout is None else timeout
        started = time.monotonic()
        import requests  # imported here: ComfyUI is started before the worker's HTTP stack

        url = self.config.comfyui_url + "/system_stats"
        session = requests.Session()
        session.trust_env = False
        session.headers.update(self.auth_headers)
        while True:
            if not self.alive():
                code = self.returncode
                hint = ""
                if code == SAGE_MISSING_EXIT and self.sage:
                    hint = (
                        " (ComfyUI exits with 255 when --use-sage-attention is given and "
                        "sageattention does not import; SAGE_ATTENTION=off runs without it)"
                    )
                raise ComfyStartError(
                    f"ComfyUI exited with code {code} before it was ready"
                    f"{hint}. Its last log lines:\n{self.tail()}"
                )
            try:
                if session.get(url, timeout=2).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            if time.monotonic() - started > timeout:
                self.stop()
                raise ComfyStartError(
                    f"ComfyUI did not answer {url} within {timeout:.0f} s "
                    f"(COMFYUI_START_TIMEOUT). Its last log lines:\n"
                    f"{self.tail()}"
                )
            time.sleep(0.05)

    @property
    def auth_headers(self) -> dict[str, str]:
        """What every request to ComfyUI carries (empty when ComfyUI is not guarded)."""
        key = self.setup.api_key if self.setup else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    def check_guarded(self) -> None:
        """Raise ComfyStartError unless ComfyUI refuses a request without the key: proof that
        the guard is in force, not an assumption."""
        if not self.auth_headers:
            return
        import requests

        session = requests.Session()
        session.trust_env = False
        try:
            status = session.get(self.config.comfyui_url + "/system_stats", timeout=5).status_code
        except requests.RequestException as exc:
            raise ComfyStartError(f"ComfyUI's API guard could not be checked: {exc}") from None
        if status != 403:
            raise ComfyStartError(
                f"ComfyUI answered a request without the worker's API key with {status}, not "
                "403: its API would answer anything that reaches its port; not serving jobs"
            )

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after COMFYUI_STOP_TIMEOUT; returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            log.info("stopping ComfyUI (pid %d)", proc.pid)
            proc.terminate()
            try:
                proc.wait(self.config.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "ComfyUI ignored SIGTERM for %.0f s; killing it", self.config.stop_timeout
                )
                proc.kill()
                proc.wait()
        if self._pump is not None:
            self._pump.join(timeout=2)
        return proc.returncode

    def close(self) -> int | None:
        """The final stop: ComfyUI is stopped and never started again by this object."""
        with self._starting:
            self._closed = True
        return self.stop()

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        self.start()
        self.wait_ready()
