"""`python -m bake models fetch`: download every locked model of a placement, verified.

An `image` entry goes to COMFYUI_DIR/dest; a `volume` entry to VOLUME/dest for the first volume
root given. A `cache` entry is never fetched here: RunPod's model cache provides it (the worker
fetches a missing one to the volume only when told to, with FETCH_MISSING=1). Each file is
placed by bake.models.store (temporary file, per-file lock, hashes checked while streaming,
atomic rename), so several processes may fetch one lock into one directory at once and each
file is still downloaded once. Downloads run in a bounded pool.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bake.errors import BakeError, FetchError, UnlockedError
from bake.locks.lockfile import MODELS_LOCK, default_lock
from bake.locks.models import ModelEntry, ModelsLock, load_models_lock
from bake.models.sources import downloader, origin
from bake.models.sources import select as select_entries
from bake.models.store import place
from bake.models.verify import default_volume_dirs
from bake.progress import Progress, format_bytes
from bake.redact import scrub

DEFAULT_JOBS = 4


def _unexpected(entry: ModelEntry, exc: Exception, dest: Path) -> str:
    """The failure line of an error no source translated: the entry, where from, and the
    error with any URL in it reduced to scheme, host and path (a query may hold a signature)."""
    detail = scrub(str(exc)).splitlines()
    detail_text = f": {detail[0]}" if detail else ""
    return (
        f"{entry.name}: downloading from {origin(entry, entry.locked.revision)} failed "
        f"({type(exc).__name__}{detail_text}); nothing was written to {dest}. Run "
        "the fetch again; if it keeps failing, report this line"
    )


@dataclass
class FetchReport:
    fetched: list[str] = field(default_factory=list)  # paths downloaded by this run
    present: list[str] = field(default_factory=list)  # paths already there and valid
    failed: list[str] = field(default_factory=list)  # one line per failure
    skipped: list[str] = field(default_factory=list)  # optional entries that are not locked
    from_cache: list[str] = field(default_factory=list)  # `cache` entries: not fetched here
    # each fetched or present path -> the identity (device, inode, size, mtime_ns, ctime_ns)
    # of the file verified there, from the descriptor it was written or read through
    identities: dict[str, tuple[int, int, int, int, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def target(entry: ModelEntry, comfyui_dir: Path, volume_dirs: Sequence[Path]) -> Path:
    """The root an entry is fetched into (its file is root/dest)."""
    if entry.placement == "image":
        return Path(comfyui_dir)
    if not volume_dirs:
        raise FetchError(
            f"{entry.name}: a volume entry needs a volume root: pass --volume-dir "
            "(e.g. /runpod-volume or /workspace)"
        )
    return Path(volume_dirs[0])


def select(lock: ModelsLock, placement: str = "all", names: Sequence[str] = ()) -> list[ModelEntry]:
    """The entries to fetch, refusing unknown names and unlocked entries up front (an optional
    entry that is not locked is left out: see ModelEntry.optional)."""
    entries = [
        e
        for e in select_entries(lock, names, placement)
        if not e.skipped and e.placement != "cache"
    ]
    unlocked = [e.name for e in entries if e.locked is None]
    if unlocked:
        raise UnlockedError(
            "\n".join(
                f"{name}: not locked yet, so there is nothing to verify a download against: run "
                f"`scripts/update-locks.py --models {name}` with network access and commit the lock"
                for name in unlocked
            )
        )
    return entries


def fetch_models(
    lock: ModelsLock,
    comfyui_dir: Path,
    volume_dirs: Sequence[Path] = (),
    *,
    placement: str = "all",
    names: Sequence[str] = (),
    jobs: int = DEFAULT_JOBS,
    progress: Progress | None = None,
) -> FetchReport:
    """Put every selected entry in place. Unknown names and unlocked entries raise before
    anything is downloaded; per-file failures are collected in the report."""
    entries = select(lock, placement, names)
    roots = {e.name: target(e, comfyui_dir, volume_dirs) for e in entries}
    # The root exists even when every selected entry was skipped (an optional model not locked
    # yet), so an image stage that copies it out still has a folder to copy.
    Path(comfyui_dir).mkdir(parents=True, exist_ok=True)
    chosen = select_entries(lock, names, placement)
    report = FetchReport(
        skipped=[e.name for e in chosen if e.skipped],
        from_cache=[e.name for e in chosen if e.placement == "cache" and not e.skipped],
    )

    def one(entry: ModelEntry) -> None:
        assert entry.locked is not None
        root = roots[entry.name]
        try:
            fetched = place(
                root,
                entry.dest,
                entry.locked,
                downloader(entry),
                label=entry.name,
                origin=origin(entry, entry.locked.revision),
                progress=progress,
                volumes=volume_dirs,
                identities=report.identities,
            )
        except BakeError as exc:
            # scrubbed here too, at the edge: a URL with credentials in any message is cut
            report.failed.extend(scrub(line) for line in exc.lines())
            return
        except Exception as exc:  # one entry's failure, never the whole run's (Ctrl-C still is)
            report.failed.append(_unexpected(entry, exc, root / entry.dest))
            return
        path = str(root / entry.dest)
        (report.fetched if fetched else report.present).append(path)
        if progress is not None:
            verb = "fetched" if fetched else "present"
            progress.message(f"{verb} {entry.name} ({format_bytes(entry.locked.size)}) {path}")

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="fetch") as pool:
        list(pool.map(one, entries))
    report.fetched.sort()
    report.present.sort()
    return report


def cli(args: argparse.Namespace) -> int:
    lock = load_models_lock(default_lock(MODELS_LOCK, args.lock))
    volume_dirs = args.volume_dir if args.volume_dir else default_volume_dirs()
    progress = Progress(sys.stderr)
    started = time.monotonic()
    try:
        report = fetch_models(
            lock,
            args.comfyui_dir,
            volume_dirs,
            placement=args.placement,
            names=getattr(args, "names", None) or (),
            jobs=args.jobs or DEFAULT_JOBS,
            progress=progress,
        )
    finally:
        progress.close()
    for name in report.skipped:
        print(f"warning: {name}: optional and not locked: skipped", file=sys.stderr)
    for name in report.from_cache:
        print(
            f"note: {name}: placement cache: not fetched (RunPod's model cache provides it; "
            "the worker finds and verifies it at boot)",
            file=sys.stderr,
        )
    for line in report.failed:
        print(f"error: {line}", file=sys.stderr)
    took = time.monotonic() - started
    print(
        f"{len(report.fetched)} fetched, {len(report.present)} already present, "
        f"{len(report.failed)} failed ({took:.1f}s)"
    )
    return 0 if report.ok else 1
