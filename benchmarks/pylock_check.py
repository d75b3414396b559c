#!/usr/bin/env python3
"""What proving requirements.lock fresh costs, and what `python verify` costs, one run.

    .venv/bin/python benchmarks/pylock_check.py [--rounds 5] [--recompile]

- `update-locks --python --check` (digests of the inputs + re-validation of every input line
  against the pins; no index) on the committed lock;
- with --recompile, the alternative it avoids: re-running `uv pip compile` on the same inputs
  and comparing (needs PyPI, or uv's cache with UV_OFFLINE=1);
- `bake python verify`'s inspection of this interpreter (a child `python -I` listing its
  distributions) next to `uv pip list --format json` on the same interpreter.

Prints the best of --rounds for each, in milliseconds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bake.python.compile import find_uv, load_inputs, update_python, uv_compile  # noqa: E402
from bake.python.verify import inspect_environment  # noqa: E402


def best(rounds: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--recompile",
        action="store_true",
        help="also time a full uv pip compile of the same inputs",
    )
    args = parser.parse_args()
    lock = ROOT / "requirements.lock"

    def check() -> None:
        assert update_python(lock, check=True, out=lambda _line: None) == 0

    rows = [("update-locks --python --check", best(args.rounds, check))]
    if args.recompile:
        previous = lock.read_text(encoding="utf-8")
        inputs = load_inputs(ROOT / "requirements.in", ROOT / "nodes.lock.yaml", None)
        rows.append(
            (
                "uv pip compile, same inputs",
                best(max(1, args.rounds // 2), lambda: uv_compile(inputs, previous)),
            )
        )
    rows.append(
        (
            "python verify: inspect this interpreter",
            best(args.rounds, lambda: inspect_environment(sys.executable)),
        )
    )
    uv = find_uv()
    rows.append(
        (
            "uv pip list --format json (reference)",
            best(
                args.rounds,
                lambda: subprocess.run(
                    [uv, "pip", "list", "--python", sys.executable, "--format", "json"],
                    capture_output=True,
                    check=True,
                ),
            ),
        )
    )
    width = max(len(name) for name, _ in rows)
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
