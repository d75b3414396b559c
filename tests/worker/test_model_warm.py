"""The page-cache warm-up (MODEL_WARM): which files it reads, and that a boot runs it; with
`full`, the read-ahead beside the hash."""

from __future__ import annotations

import logging
import os
import threading
import time

from support.fake_comfyui.runner import WorkerProcess
from support.modelfiles import blob, entry, write_lock

from bake.locks.models import UrlSource, load_models_lock
from bake.models.verify import LARGE_FILE, verify_models
from worker.model_warm import _read_ranges, available_memory, fitting, second_half


def test_files_are_read_once_each_and_only_while_they_fit(tmp_path):
    sizes = {"a": 100, "b": 300, "c": 50}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    paths = [str(tmp_path / n) for n in ("a", "link", "b", "c", "missing")]
    assert fitting(paths, None) == [(str(tmp_path / n), sizes[n]) for n in ("a", "b", "c")]
    # b would go over the budget: skipped, the smaller c after it still fits
    assert fitting(paths, 200) == [(str(tmp_path / "a"), 100), (str(tmp_path / "c"), 50)]


def test_available_memory_is_read_from_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   2048 kB\n")
    assert available_memory(meminfo) == 2048 * 1024
    assert available_memory(tmp_path / "absent") is None


def test_a_fast_boot_reads_the_stamped_files_into_the_page_cache(tmp_path):
    data = blob(3 << 20, seed=4)
    dest = "models/checkpoints/warm.safetensors"
    lock = write_lock(
        tmp_path / "models.lock.yaml",
        entry("warm", UrlSource("https://example.invalid/w"), dest, data),
    )
    worker = WorkerProcess(tmp_path, env={"MODEL_VERIFY": "fast", "MODELS_LOCK": str(lock)})
    (worker.comfyui_dir / dest).write_bytes(data)
    assert verify_models(load_models_lock(lock), worker.comfyui_dir).ok  # the build's stamps
    with worker:
        worker.wait_ready()
        deadline = time.monotonic() + 20
        while "read into the page cache" not in worker.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = worker.log()
    assert "models: 1 verified (0.0 MiB hashed" in log  # the stamp was trusted: nothing hashed
    assert "models: 3.0 MiB read into the page cache" in log


def test_read_ahead_covers_the_second_half_of_the_bytes_in_hash_order(tmp_path):
    for name, size in {"a": 100, "b": 300, "c": 200}.items():
        (tmp_path / name).write_bytes(b"x" * size)
    (tmp_path / "again").symlink_to(tmp_path / "b")
    files = [(str(tmp_path / n), s) for n, s in (("a", 100), ("b", 300), ("again", 300))]
    files.append((str(tmp_path / "c"), 200))
    # 600 unique bytes: the hash takes 0-300 (a, and b up to 200), the read-ahead the rest
    assert second_half(files) == [(str(tmp_path / "b"), 200, 100), (str(tmp_path / "c"), 0, 200)]
    assert second_half([]) == []


def test_read_ahead_reads_regular_files_only_and_stops_when_told(tmp_path, caplog):
    (tmp_path / "model").write_bytes(b"y" * (3 << 20))
    os.mkfifo(tmp_path / "fifo")  # opened without blocking, and not read
    stop = threading.Event()
    with caplog.at_level(logging.INFO, logger="worker"):
        _read_ranges(
            [(str(tmp_path / "fifo"), 0, 1 << 20), (str(tmp_path / "model"), 1 << 20, 8 << 20)],
            stop,
        )
        assert "models: 2.0 MiB read ahead of the hash" in caplog.text  # to the file's end
        stop.set()
        _read_ranges([(str(tmp_path / "model"), 0, 3 << 20)], stop)
        assert "models: 0.0 MiB read ahead of the hash" in caplog.text


def test_a_full_boot_reads_ahead_of_the_hash_and_verifies_every_file(tmp_path):
    files = {f"models/checkpoints/m{i}.safetensors": blob(LARGE_FILE, seed=i) for i in range(2)}
    lock = write_lock(
        tmp_path / "models.lock.yaml",
        *(
            entry(f"m{i}", UrlSource(f"https://example.invalid/{i}"), dest, data)
            for i, (dest, data) in enumerate(files.items())
        ),
    )
    worker = WorkerProcess(tmp_path, env={"MODEL_VERIFY": "full", "MODELS_LOCK": str(lock)})
    for dest, data in files.items():
        (worker.comfyui_dir / dest).write_bytes(data)
    with worker:
        worker.wait_ready()
        log = worker.log()
    assert "models: 2 verified (128.0 MiB hashed" in log  # every byte hashed by the check
    assert "MiB read ahead of the hash" in log
