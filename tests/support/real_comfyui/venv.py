"""A CPU interpreter for the real ComfyUI and the locked nodes, built once per machine.

The venv is several GB, so it lives in the user's cache, not in the checkout (CI runs in a fresh
clone, and a developer's next session gets the same machine back):

    $REAL_COMFYUI_VENV_ROOT, else $BAKE_CACHE_DIR/real-comfyui,
    else $XDG_CACHE_HOME/comfy-bake/real-comfyui, else ~/.cache/comfy-bake/real-comfyui

under a folder named by the hash of everything that decides its contents (the requirement files
of ComfyUI and every node, the torch pins, the base interpreter's version, this recipe), so a
node update builds a new one and an unchanged source reuses the old one. A file lock serialises
concurrent builds (two pytest runs, two engineers); a build goes to a temporary folder that is
renamed into place only when complete, so a killed build is never taken for a finished one.

The recipe is pip's, not uv's: pip takes the CPU torch from the machine's local wheels where it
has them, while uv would resolve torch to a multi-GB CUDA build. torchaudio is left out (no build
matches this torch; three ComfyUI audio extras then log IMPORT FAILED, which is harmless).

Run it by hand to build ahead of a test run (prints the interpreter's path):

    python tests/support/real_comfyui/venv.py "$COMFYUI_SRC/ComfyUI" "$COMFYUI_SRC/custom_nodes"
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from filelock import FileLock

# torch must be a build whose torchvision imports beside it; both are held by a constraints file
# so no node's bare `torch` line can move them.
TORCH_PINS = ("torch==2.14.1", "torchvision==0.29.1")
# ComfyUI's requirement lines that the constraints replace (torchaudio: none matches the pins).
DROPPED = ("torch", "torchvision", "torchaudio")
# A node whose default requirements file needs CUDA at install time names another one here.
REQUIREMENT_FILES = {"ComfyUI-Frame-Interpolation": "requirements-no-cupy.txt"}
# Bump when the steps below change, so existing venvs are rebuilt.
RECIPE = "1"
BASE_PYTHON_ENV = "REAL_COMFYUI_BASE_PYTHON"


def cache_root(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ if env is None else env)
    if env.get("REAL_COMFYUI_VENV_ROOT"):
        return Path(env["REAL_COMFYUI_VENV_ROOT"])
    if env.get("BAKE_CACHE_DIR"):
        return Path(env["BAKE_CACHE_DIR"]) / "real-comfyui"
    xdg = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "comfy-bake" / "real-comfyui"


def node_requirement_file(node_dir: Path) -> Path | None:
    path = node_dir / REQUIREMENT_FILES.get(node_dir.name, "requirements.txt")
    return path if path.is_file() else None


def requirement_files(comfyui_dir: Path, nodes_dir: Path) -> list[tuple[str, Path]]:
    """ComfyUI's requirements, then every node's in `nodes_dir`, in name order, each with the
    label it is hashed under (independent of where the source lies)."""
    files = [("ComfyUI/requirements.txt", comfyui_dir / "requirements.txt")]
    if nodes_dir.is_dir():
        for node in sorted(p for p in nodes_dir.iterdir() if p.is_dir()):
            found = node_requirement_file(node)
            if found is not None:
                files.append((f"custom_nodes/{node.name}/{found.name}", found))
    return files


def base_python(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ if env is None else env)
    if env.get(BASE_PYTHON_ENV):
        return env[BASE_PYTHON_ENV]
    found = shutil.which("python3.11")
    if found is None:
        raise RuntimeError(
            "python3.11 not found on PATH: the real ComfyUI tier needs it "
            f"(or set {BASE_PYTHON_ENV})"
        )
    return found


def venv_key(comfyui_dir: Path, nodes_dir: Path, python: str) -> str:
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    digest = hashlib.sha256()
    for part in (RECIPE, version, *TORCH_PINS):
        digest.update(part.encode() + b"\0")
    for label, path in requirement_files(comfyui_dir, nodes_dir):
        digest.update(label.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _without(lines: Iterable[str], names: tuple[str, ...]) -> list[str]:
    """The requirement lines whose project is not one of `names` (comments kept out too)."""
    kept = []
    for line in lines:
        bare = line.split("#", 1)[0].strip()
        if not bare:
            continue
        name = re.split(r"[\s<>=!~;\[@]", bare, maxsplit=1)[0]
        if name.lower().replace("_", "-") not in names:
            kept.append(bare)
    return kept


def _pip(python: Path, *args: str, log: Path) -> None:
    with log.open("a") as out:
        out.write(f"\n$ pip {' '.join(args)}\n")
        out.flush()
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--no-input", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"pip install {' '.join(args)} failed; end of {log}:\n{tail}")


def _build(comfyui_dir: Path, nodes_dir: Path, python: str, dest: Path) -> None:
    subprocess.run([python, "-m", "venv", str(dest)], check=True)
    py = dest / "bin" / "python"
    log = dest / "build.log"
    _pip(py, *TORCH_PINS, log=log)
    constraints = dest / "constraints.txt"
    constraints.write_text("\n".join(TORCH_PINS) + "\n")
    [(_, comfy_reqs), *node_reqs] = requirement_files(comfyui_dir, nodes_dir)
    comfy = dest / "comfyui-requirements.txt"
    comfy.write_text("\n".join(_without(comfy_reqs.read_text().splitlines(), DROPPED)) + "\n")
    _pip(py, "-c", str(constraints), "-r", str(comfy), log=log)
    for _, path in node_reqs:
        _pip(py, "-c", str(constraints), "-r", str(path), log=log)


def ensure_venv(comfyui_dir: Path, nodes_dir: Path, *, env: dict[str, str] | None = None) -> Path:
    """The interpreter of a ready venv for ComfyUI at `comfyui_dir` and every node in
    `nodes_dir` (one venv for all of them, so any subset of nodes can run on it)."""
    python = base_python(env)
    root = cache_root(env)
    root.mkdir(parents=True, exist_ok=True)
    key = venv_key(Path(comfyui_dir), Path(nodes_dir), python)
    final = root / f"venv-{key}"
    interpreter = final / "bin" / "python"
    if interpreter.exists():
        return interpreter
    with FileLock(str(root / f"venv-{key}.lock")):
        if interpreter.exists():  # another process built it while we waited
            return interpreter
        partial = root / f"venv-{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        started = time.monotonic()
        print(f"building the real ComfyUI venv in {final} (one time)", file=sys.stderr)
        _build(Path(comfyui_dir), Path(nodes_dir), python, partial)
        partial.rename(final)
        took = time.monotonic() - started
        print(f"built {final} in {took:.0f} s", file=sys.stderr)
    return interpreter


if __name__ == "__main__":
    print(ensure_venv(Path(sys.argv[1]), Path(sys.argv[2])))
