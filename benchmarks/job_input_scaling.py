#!/usr/bin/env python3
"""Job input parsing time against its size: overrides addressed by title.

    python benchmarks/job_input_scaling.py [--sizes 2000 20000]

Applies N overrides by title to a graph of N titled nodes, for each size, and prints the time
per override and the ratio of the largest size's per-override time to the smallest's. Linear
work keeps the ratio near 1; the quadratic lookup this replaced (a scan of every title per
override) took 13.7 s for 20,000 overrides, a ratio near 10 for a tenfold size.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.job_input import apply_overrides


def per_override(n: int) -> float:
    prompt = {
        str(i): {"class_type": "PrimitiveInt", "inputs": {"value": 0}, "_meta": {"title": f"N{i}"}}
        for i in range(n)
    }
    overrides = {f"N{i}.value": i for i in range(n)}
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        apply_overrides(prompt, overrides)
        best = min(best, time.perf_counter() - started)
    return best / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    sizes = sorted(parser.parse_args().sizes)
    times = {n: per_override(n) for n in sizes}
    for n, t in times.items():
        print(f"{n:>7} overrides: {t * 1e6:7.2f} us per override, {t * n:7.3f} s in all")
    print(f"ratio {sizes[-1]}/{sizes[0]} per override: {times[sizes[-1]] / times[sizes[0]]:.2f}")


if __name__ == "__main__":
    main()
