"""`python -m bake nodes smoke`: start ComfyUI once, as the image will, and prove that ComfyUI
and every locked custom node import.

`main.py --cpu --quick-test-for-ci` loads ComfyUI's own nodes and every custom node, then exits
before serving (about 20 s on CPU for the locked set). ComfyUI never fails that start for a node
that does not import: it logs `IMPORT FAILED` and carries on. So its output is read: each
locked node must appear in ComfyUI's import summary without `(IMPORT FAILED)`, and no node of
ComfyUI's own (`comfy_extras`, API nodes) may fail. Run in the image after `nodes install`, it
also leaves the files nodes write at first start (their configs) in the image, where `nodes
verify` then checks them.

It also records the node classes ComfyUI registered (bake/nodes/classes_probe.py runs main.py
and writes them on exit): every one must be in node-classes.yaml beside the nodes lock (a class
nobody reviewed fails the build, naming its pack), and `--record FILE` keeps the list in the
image.

The start runs with PYTHONDONTWRITEBYTECODE=1: byte-code in the image comes from the build's
own compile step, never as a side effect of this start.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bake.errors import BakeError
from bake.locks.classes import CLASSES_FILE, COMFYUI_PACK, ClassTable, load_class_table
from bake.locks.lockfile import NODES_LOCK, default_lock, write_text_atomic
from bake.locks.nodes import NodesLock, load_nodes_lock

COMMAND = ("main.py", "--cpu", "--quick-test-for-ci")
# Runs main.py and records the node classes it registered (see its docstring)
PROBE = Path(__file__).resolve().parent / "classes_probe.py"
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


def unreviewed(installed: dict[str, str], table: ClassTable, lock: NodesLock) -> list[str]:
    """One line per installed class the table does not list (by pack): these need review."""
    locked = set(lock.custom_nodes)
    missing: dict[str, list[str]] = {}
    for name, module in installed.items():
        folder = module.split(".")[1] if module.startswith("custom_nodes.") else ""
        pack = folder if folder in locked else COMFYUI_PACK
        if table.verdict(name) is None:
            missing.setdefault(pack, []).append(name)
    return [
        f"{pack}: needs review: {len(names)} installed class(es) not in {CLASSES_FILE}, refused "
        f"by the worker until reviewed: {', '.join(sorted(names))}"
        for pack, names in sorted(missing.items())
    ]


def smoke(
    lock: NodesLock,
    comfyui_dir: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    echo=print,
    record: Path | None = None,
    table: ClassTable | None = None,
) -> dict[str, str]:
    """Start ComfyUI at `comfyui_dir` once (loading every node, then exiting) and raise naming
    every locked node, or ComfyUI's own node, that did not import, and (given the class
    `table`) every installed class it does not list. Returns the installed classes (name ->
    module), also written to `record` when given."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with tempfile.TemporaryDirectory(prefix="bake-smoke-") as tmp:
        # numba caches compiled functions beside their source (in site-packages) unless told
        # otherwise: the environment's file check after this start would find them
        env["NUMBA_CACHE_DIR"] = str(Path(tmp) / "numba")
        listing = Path(tmp) / "classes.json"
        output = _start(comfyui_dir, listing, env, timeout, echo)
        installed = json.loads(listing.read_text()) if listing.is_file() else {}
    problems = judge(output.stdout, output.returncode, lock)
    if not problems and not installed:
        problems.append("comfyui: its first start registered no node class")
    if not problems and table is not None:
        problems += unreviewed(installed, table, lock)
    if problems:
        raise SmokeError("\n".join(problems))
    if record is not None:
        write_text_atomic(record, json.dumps(installed, indent=1) + "\n")
    return installed


def _start(
    comfyui_dir: Path, listing: Path, env: dict[str, str], timeout: float, echo
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            [sys.executable, str(PROBE), str(listing), *COMMAND],
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
    return proc


def cli(args: argparse.Namespace) -> int:
    lock_path = default_lock(NODES_LOCK, args.lock)
    lock = load_nodes_lock(lock_path)
    table_path = lock_path.parent / CLASSES_FILE
    table = load_class_table(table_path) if table_path.is_file() else None
    installed = smoke(
        lock,
        Path(args.comfyui_dir),
        timeout=args.timeout,
        echo=lambda s: print(s, flush=True),
        record=Path(args.record) if args.record else None,
        table=table,
    )
    reviewed = f", every one reviewed in {CLASSES_FILE}" if table is not None else ""
    print(
        f"nodes smoke: ComfyUI and {len(lock.custom_nodes)} custom nodes imported at first start;"
        f" {len(installed)} node classes{reviewed}",
        flush=True,
    )
    return 0
