"""`python -m bake build sageattention`: the pinned SageAttention source built into one wheel.

SageAttention 2.x is not on PyPI, so the image builds it from the commit nodes.lock.yaml pins
(`source_builds.sageattention`), in the CUDA devel stage. Its setup.py imports torch and reads
TORCH_CUDA_ARCH_LIST (only "12.0" style tokens count), so the build runs without isolation in
the interpreter that already has torch, with the entry's `env` on top of the environment.
Parallelism follows the CPU count unless the environment already sets it: EXT_PARALLEL (how
many extensions compile at once, at most 4) and MAX_JOBS (ninja jobs in each).

The frontend is `python -m pip wheel` when that interpreter has pip, else `uv build` (the
image's environments are made by uv and have no pip); both run the project's own build backend
in the target environment. The wheel is built in a temporary folder and moved into --out only
when it is the single wheel the build produced, then its sha256 is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from bake.errors import BakeError, BuildError, UnlockedError, VerificationError
from bake.locks.lockfile import NODES_LOCK, default_lock
from bake.locks.nodes import NodeEntry, load_nodes_lock
from bake.nodes import git

ENTRY = "sageattention"
Frontend = Literal["auto", "pip", "uv"]


def cpu_count() -> int:
    """CPUs this process may use (a container's cpuset, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def build_env(
    entry: NodeEntry, environ: Mapping[str, str] | None = None, cpus: int | None = None
) -> dict[str, str]:
    """The build's environment: `environ`, then parallelism defaults for what it leaves unset,
    then the entry's `env` (which always wins: it is what the lock pins)."""
    env = dict(os.environ if environ is None else environ)
    cpus = cpus or cpu_count()
    env.setdefault("EXT_PARALLEL", str(min(4, cpus)))
    env.setdefault("MAX_JOBS", str(cpus))
    env.update(entry.env)
    return env


def _has_pip(python: str) -> bool:
    proc = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, check=False)
    return proc.returncode == 0


def _find_uv(python: str) -> str | None:
    for candidate in (
        os.environ.get("UV"),
        str(Path(python).parent / "uv"),
        str(Path(sys.executable).parent / "uv"),
        shutil.which("uv"),
    ):
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return candidate
    return None


def build_command(
    src: Path, wheel_dir: Path, python: str, frontend: Frontend = "auto"
) -> list[str]:
    """The wheel-build command line for `src` into `wheel_dir` with `python`."""
    if frontend == "auto":
        frontend = "pip" if _has_pip(python) else "uv"
    if frontend == "pip":
        return [
            python,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-build-isolation",
            "--no-deps",
            "--no-cache-dir",
            "--wheel-dir",
            str(wheel_dir),
        ]
    uv = _find_uv(python)
    if uv is None:
        raise BuildError(
            f"{python} has no pip and uv is not on PATH: install one of them in "
            "the build stage to build the SageAttention wheel"
        )
    return [
        uv,
        "build",
        "--wheel",
        "--no-build-isolation",
        "--python",
        python,
        "--out-dir",
        str(wheel_dir),
        str(src),
    ]


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _dist_name(wheel: Path) -> str:
    return wheel.name.split("-", 1)[0].lower()


def build_wheel(
    entry: NodeEntry,
    out: Path,
    *,
    python: str = sys.executable,
    frontend: Frontend = "auto",
    log: Callable[[str], None] = print,
) -> Path:
    """Build `entry`'s locked commit into a wheel in `out` (replacing an older wheel of the
    same project there) and return its path."""
    label = entry.qualified
    if entry.locked is None:
        raise UnlockedError(
            f"{label}: not locked; run scripts/update-locks.py --nodes "
            f"{entry.name} with network access"
        )
    rev = entry.locked.rev
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    foreign = sorted(w.name for w in out.glob("*.whl") if _dist_name(w) != entry.name.lower())
    if foreign:
        raise BuildError(
            f"{label}: {out} already holds other wheels ({', '.join(foreign)}); "
            "give --out an empty folder so it ends with exactly one wheel"
        )

    src = Path(tempfile.mkdtemp(prefix=f"bake-{entry.name}-src-"))
    wheel_dir = Path(tempfile.mkdtemp(prefix=f".bake-{entry.name}-", dir=out))
    try:
        git.fetch_checkout(src, entry.original.url, rev, entry=label)
        if entry.locked.tree is not None:
            tree = git.worktree_tree_hash(src, entry=label)
            if tree != entry.locked.tree:
                raise VerificationError(
                    f"{label}: the tree at {rev[:12]} is {tree}, the lock says "
                    f"{entry.locked.tree}; refusing to build other source than the lock pins"
                )
        # The tree hash pins a link's text, not what it reaches: a link out of the source
        # would put a file of the build machine into the wheel, or run one as build code.
        escaping = git.escaping_links(src, entry=label)
        if escaping:
            raise VerificationError(
                f"{label}: commit {rev[:12]} holds symlinks that lead outside its source: "
                f"{'; '.join(escaping)}; refusing to build it: pin another commit "
                "(scripts/update-locks.py --nodes) or ask upstream"
            )
        env = build_env(entry)
        cmd = build_command(src, wheel_dir, python, frontend)
        shown = " ".join(f"{k}={env[k]}" for k in sorted({*entry.env, "EXT_PARALLEL", "MAX_JOBS"}))
        log(f"{label}: building {rev[:12]} with {shown}: {' '.join(cmd[:4])} ...")
        sys.stdout.flush()
        proc = subprocess.run(cmd, cwd=src, env=env, check=False, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise BuildError(
                f"{label}: the wheel build of {rev[:12]} failed (exit "
                f"{proc.returncode}); its output is above"
            )
        wheels = sorted(wheel_dir.glob("*.whl"))
        if len(wheels) != 1:
            names = ", ".join(w.name for w in wheels) or "none"
            raise BuildError(f"{label}: expected the build to produce one wheel, found {names}")
        wheel = wheels[0]
        for old in out.glob("*.whl"):
            old.unlink()
        final = out / wheel.name
        os.replace(wheel, final)
    finally:
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(wheel_dir, ignore_errors=True)
    log(f"{final.name} sha256={_sha256(final)}")
    return final


def cli(args: argparse.Namespace) -> int:
    lock = load_nodes_lock(default_lock(NODES_LOCK, args.lock))
    entry = lock.source_builds.get(ENTRY)
    if entry is None:
        raise BakeError(
            f"source_builds.{ENTRY}: no such entry in the nodes lock; add it "
            "(original url and ref, env TORCH_CUDA_ARCH_LIST) and run "
            "scripts/update-locks.py --nodes"
        )
    build_wheel(entry, args.out, log=lambda s: print(s, flush=True))
    return 0
