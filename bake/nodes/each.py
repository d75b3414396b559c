"""Work on many lock entries at once, each failing alone.

Resolving and installing nodes both talk to git for every entry; one slow remote must not hold
up the others, and one hostile upstream (a file name git cannot decode, a binary requirements
file) must fail its own entry, named, never the whole run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from bake.errors import BakeError
from bake.locks.nodes import NodeEntry

T = TypeVar("T")


def each_entry(
    entries: Sequence[NodeEntry],
    work: Callable[[NodeEntry], T],
    *,
    jobs: int,
    name: str,
) -> list[T | BakeError]:
    """`work` on every entry in a pool of at most `jobs` threads (named `name`); the results in
    the entries' order, each the value or the BakeError it raised (an unforeseen exception
    becomes one naming the entry)."""

    def one(entry: NodeEntry) -> T | BakeError:
        try:
            return work(entry)
        except BakeError as exc:
            return exc
        except Exception as exc:  # an upstream we did not foresee: this entry fails alone
            return BakeError(f"{entry.qualified}: unexpected {type(exc).__name__}: {exc}")

    workers = max(1, min(jobs, len(entries) or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        return list(pool.map(one, entries))
