"""bake.progress: what a user reads while a long transfer runs."""

from __future__ import annotations

import io

from bake.progress import Progress, Snapshot, format_bytes, format_duration, render


def test_formats():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(14.6 * 2**30) == "14.6 GiB"
    assert format_duration(45) == "45s"
    assert format_duration(123) == "2m03s"
    assert format_duration(3900) == "1h05m"
    assert format_duration(None) == "?"


def test_render_has_bytes_rate_and_eta():
    line = render(Snapshot(done=2**30, total=4 * 2**30, elapsed=8.0, active=2))
    assert line == ("downloading 2 files: 1.0 GiB / 4.0 GiB (25%), 128.0 MiB/s, ETA 24s")
    unknown = render(Snapshot(done=2**30, total=0, elapsed=8.0, active=1), "hashing")
    assert unknown == "hashing 1 file: 1.0 GiB, 128.0 MiB/s"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_plain_lines_at_the_interval_when_not_a_terminal():
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, tty=False, interval=10, clock=clock)
    progress.start(100 * 2**20)
    for _ in range(10):
        clock.now += 3
        progress.advance(5 * 2**20)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # at 12 s and 24 s: 30 s is not 10 s after the last one
    assert all("\r" not in line and "MiB/s" in line and "ETA" in line for line in lines)
    progress.message("fetched x")
    assert out.getvalue().endswith("fetched x\n")


def test_redraws_one_line_on_a_terminal():
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, tty=True, interval=0.2, clock=clock)
    progress.start(1000)
    clock.now += 1
    progress.advance(500)
    assert out.getvalue().startswith("\r\x1b[K") and "\n" not in out.getvalue()
    progress.message("done")
    assert out.getvalue().endswith("\r\x1b[Kdone\n")


def test_a_resume_counts_only_what_is_left():
    progress = Progress(io.StringIO(), tty=False, clock=Clock())
    progress.start(1000, already=400)
    assert progress.snapshot().total == 600
