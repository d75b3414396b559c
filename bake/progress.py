"""Progress of long transfers: bytes, rate and ETA.

On a terminal one status line is redrawn in place; anywhere else (CI logs, the worker's log)
a plain line is printed every `BAKE_PROGRESS_INTERVAL` seconds (default 10), so logs stay
readable. The formatting is pure and tested; `Progress` only keeps counters and a clock.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; whole bytes below 1 KiB."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float | None) -> str:
    """Seconds as '45s', '2m03s' or '1h05m'; '?' when unknown."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds > 1e7:
        return "?"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass(frozen=True)
class Snapshot:
    done: int
    total: int
    elapsed: float
    active: int  # transfers still running

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        if self.rate <= 0 or self.total <= 0:
            return None
        return max(self.total - self.done, 0) / self.rate


def render(snap: Snapshot, verb: str = "downloading") -> str:
    """'downloading 2 files: 1.0 GiB / 4.0 GiB (25%), 120.0 MiB/s, ETA 25s'."""
    files = f"{snap.active} file" + ("" if snap.active == 1 else "s")
    if not snap.total:  # sizes unknown (resolving a source that does not announce them)
        return f"{verb} {files}: {format_bytes(snap.done)}, {format_bytes(snap.rate)}/s"
    pct = f" ({100 * snap.done // snap.total}%)"
    return (
        f"{verb} {files}: {format_bytes(snap.done)} / {format_bytes(snap.total)}{pct}, "
        f"{format_bytes(snap.rate)}/s, ETA {format_duration(snap.eta)}"
    )


class Progress:
    """Thread-safe byte counters for concurrent transfers, reported on `stream`."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        interval: float | None = None,
        verb: str = "downloading",
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        if interval is None:
            interval = 0.2 if self.tty else float(os.environ.get("BAKE_PROGRESS_INTERVAL", "10"))
        self.interval = interval
        self.verb = verb
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._last = self._start
        self._done = 0
        self._total = 0
        self._active = 0
        self._drawn = False

    def start(self, total: int, already: int = 0) -> None:
        """A transfer of `total` bytes begins, `already` of them on disk (a resume)."""
        with self._lock:
            self._total += total - already
            self._active += 1

    def advance(self, n: int) -> None:
        with self._lock:
            self._done += n
            now = self._clock()
            if now - self._last >= self.interval:
                self._last = now
                self._draw()

    def finish(self, leftover: int = 0) -> None:
        """A transfer ended; `leftover` bytes it announced will never come (it failed)."""
        with self._lock:
            self._active -= 1
            self._total -= leftover

    def snapshot(self) -> Snapshot:
        return Snapshot(self._done, self._total, self._clock() - self._start, self._active)

    def message(self, line: str) -> None:
        """Print a line of its own without garbling the status line."""
        with self._lock:
            if self.tty and self._drawn:
                self.stream.write("\r\x1b[K")
                self._drawn = False
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        with self._lock:
            if self.tty and self._drawn:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._drawn = False

    def _draw(self) -> None:
        line = render(self.snapshot(), self.verb)
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
