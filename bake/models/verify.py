"""`python -m bake models verify`: every locked model present in the search paths, by hash.

Search paths: COMFYUI_DIR/dest, then VOLUME/dest for each volume root. Every copy found is
checked (ComfyUI may load any of them). A `cache` entry is looked for in the Hub cache roots
(RunPod's model cache, see bake.models.hfcache) at its locked commit, then at VOLUME/dest
(where FETCH_MISSING puts one the cache lacks); the first copy found is the one checked, and
the one the worker shows ComfyUI. `full` re-hashes each file: blake3 (memory-mapped, all cores)
and, where the pin has one, sha256 in the same read (on one more thread); `fast` trusts the
stamp recorded at the last successful check when the file's identity (device, inode, size,
mtime_ns, ctime_ns) is unchanged and the stamp covers every hash of the pin, and hashes only the
others; stamps kept on a network volume are never trusted (see bake.models.stamps). A wrong
size is reported without reading the file. This is what the worker runs at boot.

Each file is opened once: its size, its stamp, its hashes and the stamp written afterwards all
come from that one descriptor. A file whose descriptor's identity moves during the read
(written to) is refused; a path that names another file once the read is over (the file or its
folder was swapped) is reported, since the bytes read are no longer the ones the path loads.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bake.hashing import (
    FileChangedError,
    FileDigests,
    Identity,
    NotRegularFileError,
    file_identity,
    hash_fd,
    open_file,
)
from bake.locks.lockfile import MODELS_LOCK, default_lock
from bake.locks.models import ModelEntry, ModelPin, ModelsLock, load_models_lock
from bake.models import hfcache, stamps

DEFAULT_VOLUME_ROOTS = stamps.VOLUME_ROOTS
MODES = ("full", "fast")
LARGE_FILE = 64 << 20


def default_volume_dirs() -> list[Path]:
    """The network-volume roots RunPod mounts (pods: /workspace, serverless: /runpod-volume)
    that exist here."""
    return [p for p in DEFAULT_VOLUME_ROOTS if p.is_dir()]


@dataclass
class VerifyReport:
    verified: list[str] = field(default_factory=list)  # paths whose size and blake3 match
    missing: list[ModelEntry] = field(default_factory=list)  # in no search path
    unlocked: list[ModelEntry] = field(default_factory=list)  # nothing to check against
    problems: list[str] = field(default_factory=list)  # one line per wrong file
    hashed_bytes: int = 0  # bytes actually read (0 for a fast run over unchanged files)
    # cache entries: name -> the verified file (in a Hub cache, or on a volume)
    cache_files: dict[str, Path] = field(default_factory=dict)
    # each verified path -> the identity (device, inode, size, mtime_ns, ctime_ns) of the file
    # that was checked: the fstat of the descriptor it was read through (or whose stamp was
    # trusted). A caller that later finds another identity at the path is not looking at it.
    identities: dict[str, Identity] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _hash(fd: int, sha256: bool) -> FileDigests:
    """The one read of a file (tests replace this to see whether a file was read)."""
    return hash_fd(fd, sha256=sha256)


def _check(
    root: Path,
    rel: str,
    entry: ModelEntry,
    mode: str,
    volumes: Sequence[Path],
    sha256: bool = True,
) -> tuple[str | None, int, Identity | None]:
    """None when root/rel is right, else the problem line; the bytes hashed; and the identity
    of the file checked (its descriptor's)."""
    path = root / rel
    try:
        fd = open_file(path)
    except (OSError, NotRegularFileError) as exc:
        stamps.forget(root, rel, volumes=volumes)
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return (
            f"{entry.name}: {path}: cannot be opened ({why}): make it a readable file (if "
            "it was moved while being checked, find what moves it), and run the check again",
            0,
            None,
        )
    try:
        return _check_open(root, rel, entry, mode, volumes, fd, sha256)
    finally:
        os.close(fd)


def _check_open(
    root: Path,
    rel: str,
    entry: ModelEntry,
    mode: str,
    volumes: Sequence[Path],
    fd: int,
    sha256: bool = True,
) -> tuple[str | None, int, Identity | None]:
    pin = entry.locked
    assert pin is not None
    path = root / rel
    opened = os.fstat(fd)
    if opened.st_size != pin.size:
        stamps.forget(root, rel, volumes=volumes)
        found = f"{opened.st_size} bytes"
        return _wrong(entry, path, pin, "size", f"{pin.size} bytes", found), 0, None
    if mode == "fast" and stamps.vouches(root, rel, opened, pin, volumes=volumes, sha256=sha256):
        return None, 0, file_identity(opened)
    try:
        digests = _hash(fd, sha256 and pin.sha256 is not None)
    except FileChangedError:
        stamps.forget(root, rel, volumes=volumes)
        return (
            f"{entry.name}: {path}: changed while it was being hashed (its size, mtime or "
            "ctime moved during the read: it was written to or renamed), so its hashes "
            "describe no one file: find what changes it, and run the check again",
            pin.size,
            None,
        )
    hashed = digests.size
    if digests.blake3 != pin.blake3:
        stamps.forget(root, rel, volumes=volumes)
        return _wrong(entry, path, pin, "blake3", pin.blake3, digests.blake3), hashed, None
    if digests.sha256 is not None and digests.sha256 != pin.sha256:
        stamps.forget(root, rel, volumes=volumes)
        return _wrong_sha256(entry, path, pin, digests), hashed, None
    # bound to the descriptor's identity: the file that was read, whatever the path names now
    stamps.record(root, rel, digests.stat, pin.blake3, volumes=volumes, sha256=digests.sha256)
    try:
        now = file_identity(os.stat(path))
    except OSError:
        now = None
    if now != digests.identity:
        return (
            f"{entry.name}: {path}: was replaced while it was being verified (the file read "
            "is right, but the path now names another file, or none): find what moves it, "
            "and run the check again",
            hashed,
            None,
        )
    return None, hashed, digests.identity


def _wrong_sha256(entry: ModelEntry, path: Path, pin: ModelPin, digests: FileDigests) -> str:
    """blake3 matched, sha256 did not: the pin's two hashes describe different bytes."""
    return (
        f"{entry.name}: {path}: wrong sha256: expected {pin.sha256}, found {digests.sha256}, "
        f"while its blake3 matches the lock: the lock's sha256 and blake3 describe different "
        f"files, so the pin was edited by hand or is corrupt. Run "
        f"`scripts/update-locks.py --models {entry.name}` and review the diff"
    )


def _wrong(
    entry: ModelEntry, path: Path, pin: ModelPin, what: str, expected: str, found: str
) -> str:
    if entry.placement == "cache":
        return (
            f"{entry.name}: {path}: wrong {what}: expected {expected}, found {found}; this "
            f"file came from RunPod's model cache (or a FETCH_MISSING download) and is not the "
            f"locked one: point the endpoint's model at the locked repository and commit, or "
            f"run `scripts/update-locks.py --models {entry.name}` if this file is the one you want"
        )
    return (
        f"{entry.name}: {path}: wrong {what}: expected {expected}, found {found}; delete it "
        f"and run `python -m bake models fetch` (or, if this file is the one you want, "
        f"`scripts/update-locks.py --models {entry.name}`)"
    )


def verify_models(
    lock: ModelsLock,
    comfyui_dir: Path,
    volume_dirs: Sequence[Path] = (),
    *,
    mode: str = "full",
    placement: str = "all",
    on_file: Callable[[str], None] | None = None,
    hf_cache_roots: Sequence[Path] = (),
    sha256: bool = True,
) -> VerifyReport:
    """Check every locked entry of `placement` in the search paths; see the module doc.
    `on_file` is told of each file as its check ends (a log line), from a worker thread.
    `hf_cache_roots`: the Hub cache folders `cache` entries are looked for in. `sha256=False`:
    blake3 alone (the worker's boot: the build and update-locks proved the pin's two hashes
    describe the same bytes, and one core's sha256 would set the pace of the boot)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    volume_dirs = [Path(v) for v in volume_dirs]
    hf_cache_roots = [Path(r) for r in hf_cache_roots]
    roots = [Path(comfyui_dir), *volume_dirs]
    # A Hub cache is on the network volume: its files are stamped on local disk only.
    stamp_volumes = [*volume_dirs, *hf_cache_roots]
    report = VerifyReport()
    work: list[tuple[Path, str, ModelEntry]] = []
    for entry in lock.entries(placement):
        if entry.locked is None:
            report.unlocked.append(entry)
            continue
        if entry.placement == "cache":
            cached = hfcache.find(entry, hf_cache_roots) if hf_cache_roots else None
            if cached is None:
                cached = next(
                    ((v, v / entry.dest) for v in volume_dirs if (v / entry.dest).is_file()), None
                )
            if cached is None:
                report.missing.append(entry)
            else:
                root, path = cached
                work.append((root, path.relative_to(root).as_posix(), entry))
            continue
        found = [root for root in roots if (root / entry.dest).is_file()]
        if not found:
            report.missing.append(entry)
        work += [(root, entry.dest, entry) for root in found]
    # blake3 spreads one large file over all cores already; reading several large files at
    # once only turns sequential reads into seeks on a cold disk. Small files (and the
    # stat-only checks of fast mode) go through a pool so they do not wait behind a large one.
    large = {i for i, (_, _, e) in enumerate(work) if e.locked and e.locked.size >= LARGE_FILE}
    with (
        ThreadPoolExecutor(max_workers=1) as serial,
        ThreadPoolExecutor(max_workers=min(4, max(len(work), 1))) as pool,
    ):

        def check(
            root: Path, rel: str, entry: ModelEntry
        ) -> tuple[str | None, int, Identity | None]:
            started = time.monotonic()
            result = _check(root, rel, entry, mode, stamp_volumes, sha256)
            if on_file is not None:
                problem, hashed, _ = result
                if hashed:
                    how = f"hashed in {time.monotonic() - started:.1f}s"
                else:
                    how = "unchanged since stamped" if problem is None else "not read"
                state = "ok" if problem is None else "WRONG"
                on_file(f"{state} {entry.name} {root / rel} ({how})")
            return result

        futures = [
            (serial if i in large else pool).submit(check, root, rel, entry)
            for i, (root, rel, entry) in enumerate(work)
        ]
        results = [f.result() for f in futures]
    for (root, rel, entry), (problem, hashed, identity) in zip(work, results, strict=True):
        report.hashed_bytes += hashed
        if problem is None:
            report.verified.append(str(root / rel))
            assert identity is not None
            report.identities[str(root / rel)] = identity
            if entry.placement == "cache":
                report.cache_files[entry.name] = root / rel
        else:
            report.problems.append(problem)
    return report


def missing_line(
    entry: ModelEntry, roots: Sequence[Path], hf_cache_roots: Sequence[Path] = ()
) -> str:
    if entry.placement == "cache":
        return hfcache.missing_line(entry, hf_cache_roots)
    where = " or ".join(str(Path(r) / entry.dest) for r in roots)
    return (
        f"{entry.name}: missing: expected {where}; run `python -m bake models fetch "
        f"--placement {entry.placement}`"
    )


def cli(args: argparse.Namespace) -> int:
    lock = load_models_lock(default_lock(MODELS_LOCK, args.lock))
    volume_dirs = args.volume_dir if args.volume_dir else default_volume_dirs()
    hf_cache_roots = hfcache.cache_roots()
    started = time.monotonic()
    report = verify_models(
        lock,
        args.comfyui_dir,
        volume_dirs,
        mode=args.mode,
        placement=getattr(args, "placement", "all"),
        on_file=lambda line: print(line, file=sys.stderr, flush=True),
        hf_cache_roots=hf_cache_roots,
    )
    took = time.monotonic() - started
    roots = [args.comfyui_dir, *volume_dirs]
    for entry in report.unlocked:
        why = "optional and not locked: skipped" if entry.optional else "not locked, not verified"
        print(
            f"warning: {entry.name}: {why}: run `scripts/update-locks.py --models {entry.name}`",
            file=sys.stderr,
        )
    for entry in report.missing:
        print(f"error: {missing_line(entry, roots, hf_cache_roots)}", file=sys.stderr)
    for line in report.problems:
        print(f"error: {line}", file=sys.stderr)
    rate = report.hashed_bytes / took / 2**20 if took > 0 else 0.0
    print(
        f"{len(report.verified)} verified, {len(report.missing)} missing, "
        f"{len(report.problems)} wrong, {len(report.unlocked)} unlocked "
        f"({args.mode}: {report.hashed_bytes / 2**20:.1f} MiB hashed in {took:.2f}s, "
        f"{rate:.0f} MiB/s)"
    )
    return 0 if report.ok and not report.missing else 1
