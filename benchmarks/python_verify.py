#!/usr/bin/env python3
"""What `bake python verify` costs on a real environment, as ratios against references timed in
the same run on the same files.

    .venv/bin/python benchmarks/python_verify.py [--prefix VENV] [--rounds 1] [--jobs N]

The environment defaults to the real ComfyUI CPU venv the real-tier tests build under
~/.cache/comfy-bake/real-comfyui/ (torch and ComfyUI's requirements, tens of thousands of
files), else this project's .venv. Its lock is made from its own .dist-info folders (every
distribution pinned at its installed version), so the name and version half passes and every
file is accounted for; what the files check finds is printed as a count, not a failure.

Timed, each the best of --rounds (the first round also warms the page cache):

1. reference, hash floor: walk the prefix and sha256 every regular file, with the same thread
   count the verify uses;
2. reference, byte-code floor: compile every source that has a .pyc beside it, over the same
   number of processes (what the byte-code rule must do at least; `compileall -j N` without
   writing);
3. reference, the old check: a child `python -I` of the environment listing its distributions
   with importlib.metadata (names and versions only, forgeable by a .pth);
4. the verify: `check_environment` (walk, RECORDs, every digest, every .pyc compiled and
   compared), without the torch probe.

Printed: seconds for each, and the verify as a ratio of (1), of (1)+(2), and of (3).
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bake.locks.requirements import load_requirements_lock  # noqa: E402
from bake.python.record import _pyc_source, read_venv, scan_venv  # noqa: E402
from bake.python.verify import check_environment  # noqa: E402

# The listing the check made before: the environment's own interpreter asked for its
# distributions (this is what a .pth could answer for).
OLD_PROBE = r"""
import json
from importlib import metadata
print(json.dumps(sorted((d.metadata["Name"], d.version) for d in metadata.distributions())))
"""


def default_prefix() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    real = sorted((cache / "comfy-bake" / "real-comfyui").glob("venv-*/pyvenv.cfg"))
    return real[0].parent if real else ROOT / ".venv"


def best(rounds: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def hash_floor(prefix: Path, jobs: int) -> int:
    files = [
        os.path.join(folder, name)
        for folder, _, names in os.walk(prefix)
        for name in names
        if os.path.isfile(os.path.join(folder, name))
        and not os.path.islink(os.path.join(folder, name))
    ]

    def digest(path: str) -> bytes:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").digest()

    with ThreadPoolExecutor(max_workers=min(32, jobs * 2)) as pool:
        return len(list(pool.map(digest, files)))


def _compile(job: tuple[str, int]) -> int:
    source, level = job
    with open(source, "rb") as handle:
        compile(handle.read(), source, "exec", dont_inherit=True, optimize=level)
    return 1


def compile_floor(prefix: Path, jobs: int) -> int:
    """Compile every source that has a .pyc for this Python, over `jobs` processes (what
    `python -m compileall -j N -f` costs, without writing)."""
    venv = read_venv(prefix)
    work = []
    for path in scan_venv(venv).files:
        found = _pyc_source(venv, path)
        if found and (prefix / found[0]).is_file():
            work.append((str(prefix / found[0]), found[1]))
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        return sum(pool.map(_compile, work, chunksize=64))


def old_probe(prefix: Path) -> None:
    subprocess.run(
        [str(prefix / "bin" / "python"), "-I", "-c", OLD_PROBE], capture_output=True, check=True
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, default=None, help="the venv to check")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    prefix = Path(os.path.abspath(args.prefix or default_prefix()))
    venv = read_venv(prefix)
    scan = scan_venv(venv)
    size = sum((prefix / p).stat().st_size for p, kind in scan.files.items() if kind == "file")
    print(
        f"{prefix}: Python {venv.version}, {len(scan.dists)} distributions, "
        f"{len(scan.files)} files, {size / 1e9:.2f} GB; {os.cpu_count()} CPUs, jobs {args.jobs}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        lock_path = Path(scratch) / "requirements.lock"
        lock_path.write_text(
            "".join(
                f"{d.name}=={d.version} --hash=sha256:{'0' * 64}\n"
                for d in scan.dists
                if d.name != "pip"
            ),
            encoding="utf-8",
        )
        lock = load_requirements_lock(lock_path)

        verdicts = []

        def verify() -> None:
            verdicts.append(check_environment(lock, prefix=prefix, jobs=args.jobs, torch=False))

        # the verify first: its first round warms the page cache for the references too
        rows = [("python verify (RECORDs, digests, byte-code)", best(args.rounds, verify))]
        rows.append(
            (
                "ref 1: walk + sha256 every file",
                best(args.rounds, lambda: hash_floor(prefix, args.jobs)),
            )
        )
        rows.append(
            (
                "ref 2: compile every source with a .pyc",
                best(args.rounds, lambda: compile_floor(prefix, args.jobs)),
            )
        )
        rows.append(
            (
                "ref 3: old check, child importlib.metadata",
                best(args.rounds, lambda: old_probe(prefix)),
            )
        )
    report = verdicts[-1].report
    print(
        f"verify: {report.hashed} files by digest, {report.compiled} byte-code files compiled, "
        f"{report.layout} venv files; {len(verdicts[-1].problems)} problem lines"
    )
    for line in verdicts[-1].problems[:5]:
        print(f"  {line}")
    width = max(len(name) for name, _ in rows)
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:8.2f} s")
    ours, walk, comp, old = (seconds for _, seconds in rows)
    print(f"verify / ref 1 (hash floor)          {ours / walk:6.2f}x")
    print(f"verify / (ref 1 + ref 2) (both floors) {ours / (walk + comp):6.2f}x")
    print(f"verify / ref 3 (old name-only check) {ours / old:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
