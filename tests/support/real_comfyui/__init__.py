"""The real ComfyUI for the `real_comfyui` test tier: its source, its interpreter, a copy to run.

    src, python = source_and_interpreter()   # $COMFYUI_SRC and its cached CPU venv, or skip
    comfyui_dir = make_comfyui(tmp / "comfyui", src, nodes=("ComfyUI-VideoHelperSuite",))
    with WorkerProcess(tmp, comfyui_dir=comfyui_dir, comfyui_python=python,
                       env=REAL_ENV) as worker: ...
    with worker_process(tmp) as worker: ...   # the same, with the tier's shared node set

`$COMFYUI_SRC` is a folder holding `ComfyUI/` and `custom_nodes/<name>/` for the nodes the tests
use (what `python -m bake nodes install --comfyui-dir DIR` lays out is accepted too: `DIR` with
`custom_nodes/` inside it). The source is never written to: ComfyUI and several nodes write
into their own folders, so every test session runs a copy of its own.

Without `$COMFYUI_SRC` the tier is skipped with the reason; with `CI=true` a missing source or
interpreter fails instead, so CI cannot go green by running none of it.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import yaml

from support.fake_comfyui.runner import WorkerProcess
from support.real_comfyui.venv import ensure_venv

SOURCE_ENV = "COMFYUI_SRC"
# An existing interpreter to use instead of the cached venv (e.g. the image's own).
PYTHON_ENV = "REAL_COMFYUI_PYTHON"
REPO = Path(__file__).resolve().parents[3]
TEST_NODES = Path(__file__).resolve().parents[1] / "comfy_test_nodes"
TEST_NODES_NAME = "comfy_bake_test_nodes"
# Never copied: ComfyUI's own tests and CI files; nothing at run time reads them.
SKIP_COPY = shutil.ignore_patterns(".git", ".github", ".ci", "tests", "tests-unit", "__pycache__")
# How the worker starts the real ComfyUI here: on the CPU, without SageAttention (no GPU), and
# without the model verification (these tests place no real models).
REAL_ENV = {
    "COMFYUI_EXTRA_ARGS": "--cpu",
    "SAGE_ATTENTION": "off",
    "MODEL_VERIFY": "off",
    "COMFYUI_START_TIMEOUT": "180",
}
# JOB_TIMEOUT of the shared real worker: it bounds the hang tests, and every other job of the
# tier takes about a second on the CPU, so 10 s leaves room on a loaded 2-core machine.
REAL_JOB_TIMEOUT = 10


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip the test, or fail it in CI where the tier must run."""
    if in_ci():
        pytest.fail(f"CI=true and the real ComfyUI tier cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def locked_nodes() -> list[str]:
    """The custom nodes nodes.lock.yaml pins, by folder name."""
    lock = yaml.safe_load((REPO / "nodes.lock.yaml").read_text(encoding="utf-8"))
    return sorted(lock["custom_nodes"])


def _layout(src: Path) -> tuple[Path, Path]:
    """(ComfyUI folder, custom nodes folder) of a source, in either accepted layout."""
    if (src / "ComfyUI" / "main.py").is_file():
        return src / "ComfyUI", src / "custom_nodes"
    return src, src / "custom_nodes"


def _source() -> tuple[Path | None, str]:
    raw = os.environ.get(SOURCE_ENV, "").strip()
    if not raw:
        return None, (
            f"{SOURCE_ENV} is not set: it names the real ComfyUI source "
            "(ComfyUI/ and custom_nodes/) this tier runs"
        )
    src = Path(raw).resolve()
    comfy, _ = _layout(src)
    if not (comfy / "main.py").is_file():
        return None, f"{SOURCE_ENV}={raw}: no ComfyUI/main.py (or main.py) there"
    return src, ""


def _interpreter(src: Path, announce: Callable[[str], None]) -> tuple[str | None, str]:
    given = os.environ.get(PYTHON_ENV, "").strip()
    if given:
        if not Path(given).exists():
            return None, f"{PYTHON_ENV}={given} does not exist"
        return given, ""
    comfy, nodes = _layout(src)
    try:
        return str(ensure_venv(comfy, nodes, announce=announce)), ""
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        return None, f"the real ComfyUI's interpreter could not be built: {exc}"


_prepared: tuple[Path | None, str | None, str] | None = None


def prepare(announce: Callable[[str], None] = print) -> None:
    """Find the source and build (or find) the interpreter, once per session; never raises.
    `announce` tells the user about a build (it takes minutes)."""
    global _prepared
    if _prepared is not None:
        return
    src, reason = _source()
    python = None
    if src is not None:
        python, reason = _interpreter(src, announce)
    _prepared = (src, python, reason)


def source_and_interpreter() -> tuple[Path, str]:
    """($COMFYUI_SRC, the interpreter that runs it); skips (fails in CI) if either is missing."""
    prepare()
    assert _prepared is not None
    src, python, reason = _prepared
    if src is None or python is None:
        unavailable(reason)
    assert src is not None and python is not None
    return src, python


def missing_nodes(src: Path, names: Iterable[str]) -> list[str]:
    _, nodes = _layout(src)
    return [name for name in names if not (nodes / name).is_dir()]


def make_comfyui(
    dest: Path,
    src: Path,
    nodes: Iterable[str],
    *,
    test_nodes: bool = True,
    first_start: bool = True,
) -> Path:
    """A writable copy of ComfyUI at `dest` with `nodes` (and the test node pack) installed.

    `first_start`: as the image is, after ComfyUI's build-time first start (`bake nodes
    smoke`), which leaves the files nodes write into their own folders at first start
    (Custom-Scripts' pysssss.json, Easy-Use's styles, ...): under containment a node cannot
    write there, as in the image. Done once per node set and session, then copied."""
    names = list(nodes)
    if first_start:
        key = (str(src), tuple(sorted(names)), test_nodes)
        if key not in _STARTED:
            folder = Path(tempfile.mkdtemp(prefix="real-comfyui-started-"))
            atexit.register(shutil.rmtree, folder, True)
            tree = make_comfyui(
                folder / "comfyui", src, names, test_nodes=test_nodes, first_start=False
            )
            _, python = source_and_interpreter()
            env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
            done = subprocess.run(
                [python, "main.py", "--cpu", "--quick-test-for-ci"],
                cwd=tree,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                raise AssertionError(f"ComfyUI's first start failed:\n{done.stdout[-3000:]}")
            _STARTED[key] = tree
        _copy(_STARTED[key], Path(dest))
        return Path(dest)
    comfy, node_src = _layout(src)
    absent = missing_nodes(src, names)
    if absent:
        unavailable(f"{SOURCE_ENV}={src} lacks custom_nodes/{', '.join(absent)}")
    dest = Path(dest)
    _copy(comfy, dest)
    # A source laid out by `bake nodes install` has its nodes inside; keep only those asked for.
    custom = dest / "custom_nodes"
    for entry in custom.iterdir() if custom.is_dir() else ():
        if entry.is_dir() and entry.name not in names and entry.name != "__pycache__":
            shutil.rmtree(entry)
    for name in names:
        if not (custom / name).exists():
            _copy(node_src / name, custom / name)
    if test_nodes:
        _copy(TEST_NODES, custom / TEST_NODES_NAME)
    return dest


_STARTED: dict[tuple, Path] = {}  # node set -> a tree after its first start

# The node set of the tier's shared worker (`real_worker`, tests/worker/conftest.py), which
# benchmarks/handler_overhead.py runs too: one definition, so both measure the same ComfyUI.
WORKER_NODES = ("ComfyUI-VideoHelperSuite",)


def worker_process(tmp: Path, env: dict[str, str] | None = None) -> WorkerProcess:
    """The worker (RunPod's local API) on a copy of the real ComfyUI with WORKER_NODES and the
    test node pack, after its first start, started with REAL_ENV and `env`; not started yet."""
    src, python = source_and_interpreter()
    comfyui_dir = make_comfyui(Path(tmp) / "comfyui", src, WORKER_NODES)
    return WorkerProcess(
        Path(tmp), comfyui_dir=comfyui_dir, comfyui_python=python, env={**REAL_ENV, **(env or {})}
    )


def _copy(src: Path, dest: Path) -> None:
    # copyfile, not copy2: the source may be read-only, and ComfyUI and its nodes write into
    # their own folders, so the copy takes the umask's modes instead of the source's.
    shutil.copytree(
        src,
        dest,
        ignore=SKIP_COPY,
        copy_function=shutil.copyfile,
        dirs_exist_ok=True,
        symlinks=True,
    )
    for folder, _, _ in os.walk(dest):
        os.chmod(folder, 0o755)


def place_placeholder_models(comfyui_dir: Path) -> list[str]:
    """A zero-byte file at every model destination of models.lock.yaml under models/ (what
    ComfyUI's loaders list): enough to pass validation, never to load. Returns the paths."""
    lock = yaml.safe_load((REPO / "models.lock.yaml").read_text(encoding="utf-8"))
    placed = []
    for entry in lock["models"].values():
        dest = entry["dest"]
        if not dest.startswith("models/"):
            continue
        path = Path(comfyui_dir) / dest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        placed.append(dest)
    return placed


# ComfyUI's summary once it has loaded the custom nodes, one line per node:
#      0.1 seconds: /path/to/custom_nodes/ComfyUI-KJNodes
#      0.0 seconds (IMPORT FAILED): /path/to/custom_nodes/RES4LYF
_IMPORT_LINE = re.compile(r"\d+\.\d+ seconds( \(IMPORT FAILED\))?: (\S.*?)\s*$", re.MULTILINE)


def custom_node_imports(log: str) -> dict[str, bool]:
    """{node folder name: imported?} from ComfyUI's import summary in `log` (the last one
    wins: a restarted ComfyUI logs it again)."""
    found: dict[str, bool] = {}
    for match in _IMPORT_LINE.finditer(log):
        found[Path(match.group(2).rstrip("/")).name] = match.group(1) is None
    return found
