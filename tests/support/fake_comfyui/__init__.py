"""A fake ComfyUI for tests, started exactly as the worker starts the real one.

Use it from any test that boots the worker:

    from support.fake_comfyui import install
    comfyui_dir = install(tmp_path / "comfyui")          # writes main.py and its data there
    env = {"COMFYUI_DIR": str(comfyui_dir), "COMFYUI_PYTHON": sys.executable, ...}
    # then run worker/start.sh (or `python -m worker`) with that environment

`install` copies the fake's `main.py` and `object_info.json.gz` into the directory and creates
`input/`, `output/`, `temp/` and `models/<folder>/`. Loader nodes only accept model files that
exist under `models/` or the configured extra model paths, as ComfyUI does, so put (stub) model
files there before running a workflow that names them. The test hooks the fake offers (crash,
hang, slow start, request statistics) are described at the top of `main.py`.

`FakeComfy` starts the fake on its own (no worker) for client-level tests.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
MODEL_FOLDERS = (
    "checkpoints",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "upscale_models",
)
# The model files worker/workflows/wan_flf_i2v_api.json loads, relative to models/.
WAN_MODELS = (
    "diffusion_models/wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors",
    "diffusion_models/wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors",
    "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    "vae/wan_2.1_vae.safetensors",
)


def install(comfyui_dir: Path) -> Path:
    """Make `comfyui_dir` a ComfyUI directory whose main.py is the fake; returns it."""
    comfyui_dir = Path(comfyui_dir)
    comfyui_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(HERE / "main.py", comfyui_dir / "main.py")
    shutil.copy2(HERE / "object_info.json.gz", comfyui_dir / "object_info.json.gz")
    for name in ("input", "output", "temp", *(f"models/{f}" for f in MODEL_FOLDERS)):
        (comfyui_dir / name).mkdir(parents=True, exist_ok=True)
    return comfyui_dir


def stub_models(comfyui_dir: Path, models: tuple[str, ...] = WAN_MODELS) -> None:
    """Put placeholder files where the fake's loaders look (it checks names, not contents)."""
    for rel in models:
        path = Path(comfyui_dir) / "models" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"stub")


def object_info() -> dict[str, Any]:
    """The real server's /object_info with the locked node set (model lists empty)."""
    with gzip.open(HERE / "object_info.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeComfy:
    """The fake started directly, for tests of the client without the worker around it."""

    def __init__(
        self, comfyui_dir: Path, *, args: tuple[str, ...] = (), env: dict[str, str] | None = None
    ):
        self.dir = install(comfyui_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (self.dir / "fake.log").open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(self.dir / "main.py"),
                "--listen",
                "127.0.0.1",
                "--port",
                str(self.port),
                *args,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fake ComfyUI exited: {self.read_log()}")
            try:
                requests.get(self.url + "/system_stats", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("fake ComfyUI did not start")

    def read_log(self) -> str:
        return (self.dir / "fake.log").read_text()

    def stats(self) -> dict[str, int]:
        return requests.get(self.url + "/fake/stats", timeout=5).json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
