#!/usr/bin/env python3
"""What the build's byte-code compilation saves at a cold start of the real ComfyUI.

    COMFYUI_SRC=/path/to/src python benchmarks/bytecode_import.py [--rounds 5] [--timestamp]

In the image ComfyUI's tree is read-only to ComfyUI, so Python cannot cache the byte-code it
compiles: without `.pyc` files from the build, every start compiles ComfyUI and every custom
node again. This starts `main.py --cpu --quick-test-for-ci` (imports ComfyUI and every node in
the source, then exits) on three copies of the same tree, alternating, each with
PYTHONDONTWRITEBYTECODE=1 so that nothing is written during the runs (what a read-only tree
does):

- `none`: no `.pyc` (the reference);
- `checked-hash`: `compileall --invalidation-mode checked-hash`, what the Dockerfile runs (the
  source is hashed at each import, so a `.pyc` that does not match its source is never used);
- with `--timestamp`, also compileall's default, for comparison (trusts mtimes, which a layer
  copy resets).

Each copy had one start beforehand, so the files nodes write at their first start exist in all
copies (as the build-time first start leaves them). Prints, per variant, the median CPU time
(user + system) of a start and the median wall time, each with its ratio to `none`. CPU time is
the figure to read on a shared machine: wall time also counts waiting for other processes.
The interpreter is the real-ComfyUI test tier's (tests/support/real_comfyui), built once per
machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.real_comfyui import make_comfyui, source_and_interpreter  # noqa: E402


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_once(python: str, comfyui: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one start."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    cpu = cpu_of_children()
    started = time.perf_counter()
    done = subprocess.run(
        [python, "main.py", "--cpu", "--quick-test-for-ci"],
        cwd=comfyui,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"ComfyUI in {comfyui} failed:\n{done.stderr[-3000:]}")
    return cpu_of_children() - cpu, took


def prepare(python: str, src: Path, dest: Path, mode: str | None, nodes: list[str]) -> Path:
    comfyui = make_comfyui(dest, src, nodes=nodes, test_nodes=False)
    start_once(python, comfyui)  # the nodes' first-start files, as the build leaves them
    for cache in comfyui.rglob("__pycache__"):
        shutil.rmtree(cache)
    if mode is not None:
        subprocess.run(
            [python, "-m", "compileall", "-q", "--invalidation-mode", mode, str(comfyui)],
            check=True,
        )
    return comfyui


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timestamp", action="store_true", help="also time timestamp .pyc")
    args = parser.parse_args()
    variants = {"none": None, "checked-hash": "checked-hash"}
    if args.timestamp:
        variants["timestamp"] = "timestamp"
    src, python = source_and_interpreter()
    nodes = sorted(p.name for p in (src / "custom_nodes").iterdir() if p.is_dir())
    with tempfile.TemporaryDirectory() as tmp:
        trees = {
            name: prepare(python, src, Path(tmp) / name, mode, nodes)
            for name, mode in variants.items()
        }
        pyc = {name: sum(1 for _ in tree.rglob("*.pyc")) for name, tree in trees.items()}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for _ in range(args.rounds):  # alternating, so load on the machine hits all alike
            for name, tree in trees.items():
                times[name].append(start_once(python, tree))
    base_cpu = statistics.median(cpu for cpu, _ in times["none"])
    base_wall = statistics.median(wall for _, wall in times["none"])
    print(f"ComfyUI and {len(nodes)} custom nodes, median of {args.rounds} starts each:")
    for name in trees:
        cpu = statistics.median(c for c, _ in times[name])
        wall = statistics.median(w for _, w in times[name])
        print(
            f"  {name:13s} CPU {cpu:6.2f} s {cpu / base_cpu:5.2f}x   "
            f"wall {wall:6.2f} s {wall / base_wall:5.2f}x   ({pyc[name]} .pyc)"
        )


if __name__ == "__main__":
    main()
