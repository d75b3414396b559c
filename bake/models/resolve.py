"""`scripts/update-locks.py --models [NAME ...]`: resolve each model's `original` to a pin.

For a Hub file: the revision becomes a commit and the file's size and LFS sha256 come from the
Hub's metadata; then every source is streamed once through sha256 and blake3 together (no copy
kept on disk) to fill size, sha256 and blake3. If the Hub's sha256 and the streamed one differ,
the entry fails. A Hub entry already locked at the same commit with the same size and sha256
is kept as it is without downloading again (the sha256 already names that content).
`--check` resolves nothing: it fails when an entry is unlocked or its pin contradicts its
`original` (a Hub revision given as a commit that differs from the locked one).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bake.errors import BakeError, FetchError
from bake.locks.diff import diff_locks, format_diff
from bake.locks.lockfile import HEX40
from bake.locks.models import (
    HfSource,
    ModelEntry,
    ModelPin,
    load_models_lock,
    write_models_lock,
)
from bake.models.sources import downloader, origin, select
from bake.models.store import download_hashes
from bake.progress import Progress
from bake.redact import scrub


def check_entry(entry: ModelEntry) -> str | None:
    """Why the entry's pin is incomplete or stale without asking the network, or None."""
    if entry.locked is None and entry.optional:
        return None  # skipped until someone with access to its source locks it
    if entry.locked is None:
        return (
            f"{entry.qualified}: not locked: run `scripts/update-locks.py --models "
            f"{entry.name}` with network access"
        )
    source = entry.source
    if (
        isinstance(source, HfSource)
        and HEX40.fullmatch(source.revision)
        and entry.locked.revision != source.revision
    ):
        return (
            f"{entry.qualified}: stale: original.revision is {source.revision} but the lock "
            f"holds {entry.locked.revision}: run `scripts/update-locks.py --models "
            f"{entry.name}`"
        )
    return None


def resolve_entry(entry: ModelEntry, progress: Progress | None = None) -> ModelPin:
    """The pin of `entry.original` as the source serves it now."""
    source = entry.source
    where = origin(entry)
    if isinstance(source, HfSource):
        from bake.models import hf as source_hf

        hub = source_hf.resolve(source)
        old = entry.locked
        if (
            old is not None
            and old.revision == hub.commit
            and old.size == hub.size
            and hub.sha256 is not None
            and old.sha256 == hub.sha256
        ):
            return old
        hashes = download_hashes(downloader(entry, hub.commit), limit=hub.size, progress=progress)
        if hashes.size != hub.size:
            raise FetchError(
                f"{entry.qualified}: {origin(entry, hub.commit)} streamed "
                f"{hashes.size} bytes but the Hub lists {hub.size}"
            )
        if hub.sha256 is not None and hashes.sha256 != hub.sha256:
            raise FetchError(
                f"{entry.qualified}: {origin(entry, hub.commit)}: the Hub lists "
                f"sha256 {hub.sha256} but the streamed file hashes to "
                f"{hashes.sha256}; not locked (retry; if it persists, report it "
                "to the repository's owner)"
            )
        return ModelPin(
            size=hashes.size, blake3=hashes.blake3, sha256=hashes.sha256, revision=hub.commit
        )
    hashes = download_hashes(downloader(entry), progress=progress)
    if hashes.size == 0:
        raise FetchError(f"{entry.qualified}: {where} is empty")
    return ModelPin(size=hashes.size, blake3=hashes.blake3, sha256=hashes.sha256)


def update_models(
    lock_path: Path,
    names: Sequence[str] = (),
    *,
    check: bool = False,
    out: Callable[[str], None] = print,
) -> int:
    """Resolve the named entries (all when none) and rewrite the lock; print what changed.
    Returns 0 when everything resolved (or, with check, when every pin is complete) and 1
    otherwise. Entries that resolved are written even when others failed."""
    lock_path = Path(lock_path)
    try:
        lock = load_models_lock(lock_path)
        entries = select(lock, names)
    except BakeError as exc:
        for line in exc.lines():
            out(f"error: {scrub(line)}")
        return 1

    if check:
        problems = [p for e in entries if (p := check_entry(e)) is not None]
        for line in problems:
            out(f"error: {line}")
        skipped = [e.name for e in entries if e.skipped]
        for name in skipped:
            out(f"warning: models.{name}: optional and not locked: skipped by the build")
        if not problems:
            out(f"{lock_path.name}: {len(entries) - len(skipped)} entries locked")
        return 1 if problems else 0

    new = lock
    failed = 0
    progress = Progress(sys.stderr, verb="hashing")
    try:
        for entry in entries:
            try:
                pin = resolve_entry(entry, progress)
            except BakeError as exc:
                # An optional entry's source is often one only some maintainers can reach (a
                # private bucket): its failure is kept as it was and said, but fails no run.
                level = "warning" if entry.optional else "error"
                failed += not entry.optional
                for line in exc.lines():
                    if not line.startswith((entry.qualified, entry.name)):
                        line = f"{entry.qualified}: {line}"
                    # at the edge as well as in each source: no URL keeps its credentials
                    out(f"{level}: {scrub(line)}")
                if entry.optional:
                    out(f"warning: {entry.qualified}: optional: kept as it was")
                continue
            new = new.with_pin(entry.name, pin)
    finally:
        progress.close()
    changes = format_diff(diff_locks(lock, new))
    for line in changes:
        out(line)
    if write_models_lock(new, lock_path):
        out(f"{lock_path.name}: updated")
    elif not changes:
        out(f"{lock_path.name}: up to date")
    return 1 if failed else 0
