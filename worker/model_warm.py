"""Read the model files into the page cache while ComfyUI starts (MODEL_WARM).

A full verification reads every model file while ComfyUI starts, so the first job loads its
weights from memory. `fast` (stamps trusted) and `off` read nothing, and the first job then
reads them from disk after ComfyUI is up: on a cold host that made them slower to the first
result than `full` (see docs/worker.md, "Cold start"). This reads the same files, in the
background, from the moment their list is known; it never gates the boot nor a job, stops
at the first error, and reads only as many files as fit in the memory the kernel reports
available (reading more would evict the first ones again before any job used them).

With `full`, the check's own read is the warm-up, but one read stream leaves a disk that serves
several at once (NVMe, a virtual disk) partly idle: `ahead` reads the second half of the bytes
the check will hash (in its order) into the page cache while it hashes the first half, so the
check finds them in memory when it gets there. The check still hashes every byte itself,
through its own descriptor; this only decides where the bytes come from.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

log = logging.getLogger("worker")

CHUNK = 16 << 20
# Never blocks on a FIFO swapped in for a model, never handed to a child.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK


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


def second_half(files: Sequence[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """(path, offset, length) of the second half of the bytes of `files`, taken in order (the
    order a check hashes them), each real file once."""
    unique: list[tuple[str, int]] = []
    seen: set[str] = set()
    for path, size in files:
        real = os.path.realpath(path)
        if real not in seen and size > 0:
            seen.add(real)
            unique.append((real, size))
    half = sum(size for _, size in unique) // 2
    ranges: list[tuple[str, int, int]] = []
    position = 0
    for path, size in unique:
        start = max(half - position, 0)
        if start < size:
            ranges.append((path, start, size - start))
        position += size
    return ranges


def _read_ranges(ranges: list[tuple[str, int, int]], stop: threading.Event) -> None:
    started = time.monotonic()
    done = 0
    buffer = bytearray(CHUNK)
    for path, offset, length in ranges:
        if stop.is_set():
            break
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            log.warning("model read-ahead skipped %s: %s", path, exc)
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):  # only a regular file's bytes, never a device's
                continue
            end = min(offset + length, info.st_size)
            while offset < end and not stop.is_set():
                n = os.preadv(fd, [memoryview(buffer)[: min(CHUNK, end - offset)]], offset)
                if n <= 0:
                    break
                offset += n
                done += n
        except OSError as exc:
            log.warning("model read-ahead stopped at %s: %s", path, exc)
        finally:
            os.close(fd)
    log.info(
        "models: %.1f MiB read ahead of the hash in %.1f s (MODEL_WARM)",
        done / 2**20,
        time.monotonic() - started,
    )


def ahead(files: Sequence[tuple[str, int]], stop: threading.Event) -> threading.Thread | None:
    """Start reading the second half of `files` (path, size; in the order a check hashes them)
    into the page cache on a daemon thread, until `stop` is set; None when there is nothing to
    read, or when the files do not all fit in three quarters of the available memory (the
    check's own pages and these must both still be there for the first job)."""
    available = available_memory()
    total = sum({os.path.realpath(path): size for path, size in files}.values())
    if available is None or total > available * 3 // 4:
        return None
    ranges = second_half(files)
    if not ranges:
        return None
    thread = threading.Thread(
        target=_read_ranges, args=(ranges, stop), name="read-ahead-models", daemon=True
    )
    thread.start()
    return thread
