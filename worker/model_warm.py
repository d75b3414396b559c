"""Read the model files into the page cache while ComfyUI starts (MODEL_WARM).

A full verification reads every model file while ComfyUI starts, so the first job loads its
weights from memory. `fast` (stamps trusted) and `off` read nothing, and the first job then
reads them from disk after ComfyUI is up: on a cold host that made them slower to the first
result than `full` (see docs/worker.md, "Cold start"). This reads the same files, in the
background, from the moment their list is known; it never gates the boot nor a job, stops
at the first error, and reads only as many files as fit in the memory the kernel reports
available (reading more would evict the first ones again before any job used them).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("worker")

CHUNK = 16 << 20


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable in bytes, or None when unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def fitting(paths: Iterable[str], budget: int | None) -> list[tuple[str, int]]:
    """The files to read, in order, with their sizes: each once, while their total stays
    under `budget` (None: all)."""
    chosen: list[tuple[str, int]] = []
    seen: set[str] = set()
    total = 0
    for path in paths:
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        try:
            size = os.stat(real).st_size
        except OSError:
            continue
        if budget is not None and total + size > budget:
            continue
        total += size
        chosen.append((real, size))
    return chosen


def _read(files: list[tuple[str, int]]) -> None:
    started = time.monotonic()
    done = 0
    buffer = bytearray(CHUNK)
    for path, _size in files:
        try:
            with open(path, "rb", buffering=0) as f:
                while n := f.readinto(buffer):
                    done += n
        except OSError as exc:
            log.warning("model warm-up stopped at %s: %s", path, exc)
            return
    log.info(
        "models: %.1f MiB read into the page cache in %.1f s (MODEL_WARM)",
        done / 2**20,
        time.monotonic() - started,
    )


def warm(paths: Iterable[str]) -> threading.Thread | None:
    """Start reading `paths` on a daemon thread; None when there is nothing to read."""
    available = available_memory()
    # leave a quarter of what is available to ComfyUI and the job
    files = fitting(paths, None if available is None else available * 3 // 4)
    if not files:
        return None
    thread = threading.Thread(target=_read, args=(files,), name="warm-models", daemon=True)
    thread.start()
    return thread
