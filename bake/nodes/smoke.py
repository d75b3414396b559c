"""`python -m bake nodes smoke`: start ComfyUI once, as the image will, and prove that ComfyUI
and every locked custom node import.

`main.py --cpu --quick-test-for-ci` loads ComfyUI's own nodes and every custom node, then exits
before serving (about 20 s on CPU for the locked set). ComfyUI never fails that start for a node
that does not import: it logs `IMPORT FAILED` and carries on. So its output is read: each
locked node must appear in ComfyUI's import summary without `(IMPORT FAILED)`, and no node of
ComfyUI's own (`comfy_extras`, API nodes) may fail. Run in the image after `nodes install`, it
also leaves the files nodes write at first start (their configs) in the image, where `nodes
verify` then checks them.

The start runs with PYTHONDONTWRITEBYTECODE=1: byte-code in the image comes from the build's
own compile step, never as a side effect of this start.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from bake.errors import BakeError
from bake.locks.lockfile import NODES_LOCK, default_lock
from bake.locks.nodes import NodesLock, load_nodes_lock

COMMAND = ("main.py", "--cpu", "--quick-test-for-ci")
# ComfyUI's summary, one line per custom node: "   0.3 seconds (IMPORT FAILED): /path/Name"
_SUMMARY = re.compile(
    r"^\s*\d+(?:\.\d+)?\s+seconds(?P<failed> \(IMPORT FAILED\))?:\s+(?P<path>.+?)\s*$"
)
# ComfyUI's own nodes that did not import: "IMPORT FAILED: nodes_audio.py"
_OWN = re.compile(r"^IMPORT FAILED:\s+(?P<name>.+?)\s*$")
DEFAULT_TIMEOUT = 900.0


class SmokeError(BakeError):
    """ComfyUI's first start failed, or a node did not import."""


def judge(output: str, returncode: int, lock: NodesLock) -> list[str]:
    """The problems ComfyUI's first-start `output` shows, one line each (empty: all loaded)."""
    loaded: dict[str, bool] = {}
    own: list[str] = []
    for line in output.splitlines():
        # ComfyUI's log lines may carry a "[timestamp] " or "LEVEL:" prefix before the text
        text = re.sub(r"^(?:\[[^\]]*\]\s*|[A-Z]+:(?:root:)?)", "", line)
        if match := _SUMMARY.match(text):
            name = match["path"].rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
            loaded[name] = loaded.get(name, True) and not match["failed"]
        elif match := _OWN.match(text.strip()):
            own.append(match["name"])
    problems = []
    if returncode != 0:
        problems.append(
            f"comfyui: `python {' '.join(COMMAND)}` exited {returncode}; its output is above"
        )
    for name in own:
        problems.append(f"comfyui: IMPORT FAILED: {name} (one of ComfyUI's own nodes)")
    for name in sorted(lock.custom_nodes):
        if name not in loaded:
            problems.append(
                f"custom_nodes.{name}: ComfyUI did not load it at its first start (it is not in "
                "the import summary); is its folder there? run python -m bake nodes verify"
            )
        elif not loaded[name]:
            problems.append(
                f"custom_nodes.{name}: IMPORT FAILED at ComfyUI's first start; its traceback "
                "is in the output above (a requirement missing from requirements.lock?)"
            )
    return problems


def smoke(
    lock: NodesLock, comfyui_dir: Path, *, timeout: float = DEFAULT_TIMEOUT, echo=print
) -> None:
    """Start ComfyUI at `comfyui_dir` once (loading every node, then exiting) and raise naming
    every locked node, or ComfyUI's own node, that did not import."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        proc = subprocess.run(
            [sys.executable, *COMMAND],
            cwd=comfyui_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else (exc.output or b"").decode()
        echo(out)
        raise SmokeError(
            f"comfyui: its first start did not finish within {timeout:.0f} s; its output is above"
        ) from None
    except FileNotFoundError as exc:
        raise SmokeError(f"comfyui: cannot start it in {comfyui_dir}: {exc}") from None
    echo(proc.stdout)
    problems = judge(proc.stdout, proc.returncode, lock)
    if problems:
        raise SmokeError("\n".join(problems))


def cli(args: argparse.Namespace) -> int:
    lock = load_nodes_lock(default_lock(NODES_LOCK, args.lock))
    smoke(lock, Path(args.comfyui_dir), timeout=args.timeout, echo=lambda s: print(s, flush=True))
    print(
        f"nodes smoke: ComfyUI and {len(lock.custom_nodes)} custom nodes imported at first start",
        flush=True,
    )
    return 0
