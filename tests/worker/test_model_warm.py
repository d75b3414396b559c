"""The page-cache warm-up (MODEL_WARM): which files it reads, and that a boot runs it."""

from __future__ import annotations

import time

from support.fake_comfyui.runner import WorkerProcess
from support.modelfiles import blob, entry, write_lock

from bake.locks.models import UrlSource, load_models_lock
from bake.models.verify import verify_models
from worker.model_warm import available_memory, fitting


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
