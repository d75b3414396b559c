#!/usr/bin/env python3
"""Hashing throughput: our blake3 path vs `b3sum` and `sha256sum` on the same files, one run.

    .venv/bin/python benchmarks/hashing.py [--gib 3] [--files 3] [--rounds 3] [--dir DIR]

Generates the files once (random bytes, kept in benchmarks/.data/ unless --dir), reads them once
to warm the page cache, then times each tool over all files, best of --rounds. Prints GiB/s and
the ratio to b3sum. Install the reference tools with `apt-get install b3sum coreutils`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bake.hashing import blake3_file


def make_files(folder: Path, count: int, total: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    size = total // count
    paths = []
    for index in range(count):
        path = folder / f"model-{index}.bin"
        if not path.exists() or path.stat().st_size != size:
            with open(path, "wb") as handle:
                left = size
                while left:
                    chunk = os.urandom(min(left, 64 << 20))
                    handle.write(chunk)
                    left -= len(chunk)
        paths.append(path)
    return paths


def best_of(rounds: int, run) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=3.0, help="total size (default 3 GiB)")
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(__file__).parent / ".data" / "hashing")
    args = parser.parse_args()

    paths = make_files(args.dir, args.files, int(args.gib * (1 << 30)))
    total = sum(p.stat().st_size for p in paths)
    names = [str(p) for p in paths]
    for path in paths:  # warm the page cache: every tool then reads from memory
        with open(path, "rb") as handle:
            while handle.read(64 << 20):
                pass

    tools = {"ours (bake.hashing.blake3_file)": lambda: [blake3_file(p) for p in paths]}
    for tool in ("b3sum", "sha256sum"):
        if shutil.which(tool):
            tools[tool] = lambda tool=tool: subprocess.run(
                [tool, *names], check=True, stdout=subprocess.DEVNULL
            )
        else:
            package = "coreutils" if tool == "sha256sum" else tool
            print(f"{tool}: not installed (apt-get install {package})")

    ours = [blake3_file(p) for p in paths]
    if shutil.which("b3sum"):
        out = subprocess.run(["b3sum", *names], check=True, capture_output=True, text=True)
        assert [line.split()[0] for line in out.stdout.splitlines()] == ours, "hashes differ"

    print(
        f"{len(paths)} files, {total / (1 << 30):.2f} GiB, warm cache, {os.cpu_count()} cores, "
        f"best of {args.rounds}"
    )
    seconds = {name: best_of(args.rounds, run) for name, run in tools.items()}
    reference = seconds.get("b3sum")
    for name, secs in seconds.items():
        rate = total / secs / (1 << 30)
        ratio = f"  {reference / secs:.2f}x b3sum" if reference else ""
        print(f"{name:34s} {rate:6.2f} GiB/s{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
