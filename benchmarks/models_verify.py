"""How fast `models verify` is, as ratios against references measured in the same run.

    python benchmarks/models_verify.py [--total-mb 2048] [--files 4] [--dir DIR] [--repeat 3]

1. `--mode full`, warm page cache, pins with blake3 only, against `b3sum` over the same files
   (target: our throughput >= 0.9x b3sum's). b3sum: `apt-get install b3sum` or
   `cargo install b3sum`.
2. `--mode full` with pins carrying sha256 and blake3 (both hashed in the one read, as every
   verify does for a pin with both), against blake3 alone, alternately in the same run: the
   cost of checking sha256, warm and cold. sha256 runs on one core (hashlib), so its
   single-core throughput, measured here too, bounds the combined one.
3. `--mode full`, cold cache, against `cat FILES > /dev/null` (target: within 10%). The
   files are evicted from the page cache with posix_fadvise(DONTNEED), which needs no
   privileges and leaves the rest of a shared machine's cache alone.
4. `--mode fast` on 100 unchanged, stamped files: wall time and bytes read (target: none read,
   well under a second).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import blake3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bake.locks.models import ModelEntry, ModelPin, ModelsLock, UrlSource
from bake.models.verify import verify_models

MB = 1 << 20


def make_files(root: Path, count: int, size: int, prefix: str) -> ModelsLock:
    """`count` files of `size` random bytes under root/models/bench/, and a lock for them
    (pins with sha256 and blake3, as update-locks writes them)."""
    entries = {}
    chunk = os.urandom(8 * MB)
    for i in range(count):
        rel = f"models/bench/{prefix}{i:03d}.safetensors"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        hasher, sha = blake3.blake3(), hashlib.sha256()
        with open(path, "wb") as handle:
            left = size
            salt = i.to_bytes(8, "little")
            while left:
                piece = (salt + chunk)[: min(left, len(chunk) + 8)]
                handle.write(piece)
                hasher.update(piece)
                sha.update(piece)
                left -= len(piece)
        name = f"{prefix}{i:03d}"
        entries[name] = ModelEntry(
            name,
            UrlSource(f"https://example.invalid/{name}"),
            rel,
            "image",
            ModelPin(size=size, blake3=hasher.hexdigest(), sha256=sha.hexdigest()),
        )
    return ModelsLock(entries)


def blake3_only(lock: ModelsLock) -> ModelsLock:
    """The same lock with the sha256 left out of every pin: verify then hashes blake3 alone."""
    return ModelsLock(
        {
            name: dataclasses.replace(e, locked=dataclasses.replace(e.locked, sha256=None))
            for name, e in lock.models.items()
        }
    )


def sha256_alone(paths: list[Path]) -> None:
    """hashlib sha256 of each file on one thread, read in 8 MiB pieces: the bound of what
    checking sha256 can cost per file."""
    for path in paths:
        sha = hashlib.sha256()
        with open(path, "rb") as handle:
            while piece := handle.read(8 * MB):
                sha.update(piece)


def best(fn: Callable[[], object], repeat: int, before: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def race(
    a: Callable[[], object],
    b: Callable[[], object],
    repeat: int,
    before: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """Best times of a and b, run alternately so that a busy (shared) machine slows both
    alike instead of whichever happened to run during the busy spell."""
    ta, tb = [], []
    for _ in range(repeat):
        for fn, times in ((a, ta), (b, tb)):
            if before is not None:
                before()
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(ta), min(tb)


def drop_caches(paths: list[Path]) -> str:
    """Evict these files (only them: the machine may be shared) from the page cache."""
    os.sync()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return "posix_fadvise(DONTNEED)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total-mb", type=int, default=2048, help="bytes hashed per run")
    parser.add_argument("--files", type=int, default=4, help="how many files they are split in")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the test files")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-verify-", dir=args.dir))
    try:
        size = args.total_mb * MB // args.files
        both = make_files(work, args.files, size, "big")
        b3_lock = blake3_only(both)
        paths = [work / e.dest for e in both.entries()]
        total = size * args.files
        print(
            f"files: {args.files} x {size / MB:.0f} MiB in {work}; cores: {os.cpu_count()}; "
            f"load average: {os.getloadavg()[0]:.1f}"
        )

        def verify(lock: ModelsLock) -> Callable[[], None]:
            def run() -> None:
                report = verify_models(lock, work, mode="full")
                assert report.ok and len(report.verified) == args.files, report.problems

            return run

        ours, ours_both = verify(b3_lock), verify(both)

        def rate(seconds: float) -> str:
            return f"{total / seconds / MB:8.0f} MiB/s ({seconds:.3f}s)"

        subprocess.run(["cat", *map(str, paths)], stdout=subprocess.DEVNULL, check=True)
        b3sum = shutil.which("b3sum")
        if b3sum:
            t_ours, t_b3 = race(
                ours,
                lambda: subprocess.run(
                    [b3sum, "--no-names", *map(str, paths)], stdout=subprocess.DEVNULL, check=True
                ),
                args.repeat,
            )
            print(f"warm  verify --mode full (blake3)        : {rate(t_ours)}")
            print(f"warm  b3sum                              : {rate(t_b3)}")
            print(f"ratio verify/b3sum throughput (warm): {t_b3 / t_ours:.2f}x  (target >= 0.9)")
        else:
            print(
                "b3sum not found: install it (`apt-get install b3sum`, or `cargo install "
                "b3sum`) to compare against it"
            )

        def previous() -> None:  # what verify did before: blake3's own mmap of each path
            for path in paths:
                blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(path)

        t_new, t_old = race(ours, previous, args.repeat)
        print(f"warm  verify --mode full (blake3)        : {rate(t_new)}")
        print(f"warm  blake3 update_mmap(path), all cores: {rate(t_old)}")
        print(f"ratio verify (one fd, chunked) / update_mmap throughput: {t_old / t_new:.2f}x")

        t_b3only, t_both = race(ours, ours_both, args.repeat)
        t_sha = best(lambda: sha256_alone(paths), args.repeat)
        print(f"warm  verify --mode full (blake3)        : {rate(t_b3only)}")
        print(f"warm  verify --mode full (sha256+blake3) : {rate(t_both)}")
        print(f"warm  sha256 alone (hashlib, one thread) : {rate(t_sha)}")
        print(
            f"ratio sha256+blake3 / blake3 time (warm): {t_both / t_b3only:.2f}x; "
            f"sha256+blake3 / sha256 alone: {t_both / t_sha:.2f}x"
        )

        how = drop_caches(paths)
        t_cold, t_cat = race(
            ours,
            lambda: subprocess.run(
                ["cat", *map(str, paths)], stdout=subprocess.DEVNULL, check=True
            ),
            args.repeat,
            before=lambda: drop_caches(paths),
        )
        print(f"cold  cat > /dev/null                    : {rate(t_cat)}")
        print(f"cold  verify --mode full (blake3)        : {rate(t_cold)}")
        print(
            f"ratio verify/cat throughput (cold, evicted by {how}): "
            f"{t_cat / t_cold:.2f}x  (target >= 0.9)"
        )
        t_cold_b3, t_cold_both = race(
            ours, ours_both, args.repeat, before=lambda: drop_caches(paths)
        )
        print(f"cold  verify --mode full (blake3)        : {rate(t_cold_b3)}")
        print(f"cold  verify --mode full (sha256+blake3) : {rate(t_cold_both)}")
        print(f"ratio sha256+blake3 / blake3 time (cold): {t_cold_both / t_cold_b3:.2f}x")

        small = make_files(work, 100, MB, "small")
        verify_models(small, work, mode="full")  # stamps them
        reports = []
        t_fast = best(lambda: reports.append(verify_models(small, work, mode="fast")), args.repeat)
        read = reports[-1].hashed_bytes
        assert reports[-1].ok and len(reports[-1].verified) == 100
        t_full_small = best(lambda: verify_models(small, work, mode="full"), args.repeat)
        print(
            f"fast  100 unchanged files: {t_fast * 1000:.1f} ms, {read} bytes read "
            f"(full: {t_full_small * 1000:.1f} ms; {t_full_small / t_fast:.0f}x slower)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
