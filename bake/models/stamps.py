"""The stamp cache: a file's identity (size, mtime_ns, inode) at the moment its blake3 was last
computed, so `verify --mode fast` can trust a file that has not changed without reading it.

Where stamps live:
- `$BAKE_STAMP_DIR` when set (one directory for every root);
- else `<root>/.bake-stamps/` beside the files, so workers sharing a network volume share the
  stamps of that volume and only the first one hashes;
- and when that is not writable (a read-only image path), `stamps/` under bake's cache root:
  `$BAKE_CACHE_DIR`, else `$XDG_CACHE_HOME/comfy-bake`, else `~/.cache/comfy-bake`.
Reads look in the same order. A stamp is one small JSON file written atomically, so concurrent
writers cannot leave a torn one; identical facts make the last writer's win harmless.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from bake.locks.lockfile import cache_root, write_text_atomic

ROOT_DIR = ".bake-stamps"


@dataclass(frozen=True)
class Stamp:
    size: int
    mtime_ns: int
    inode: int
    blake3: str

    @classmethod
    def of(cls, stat: os.stat_result, blake3: str) -> Stamp:
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ino, blake3)

    def matches(self, stat: os.stat_result) -> bool:
        """The file still is the one that was hashed (same size, mtime and inode)."""
        return (self.size, self.mtime_ns, self.inode) == (
            stat.st_size,
            stat.st_mtime_ns,
            stat.st_ino,
        )


def _fallback_dir() -> Path:
    return cache_root() / "stamps"


def _candidates(root: Path, rel: str) -> list[Path]:
    """Stamp files for `root/rel`, in the order they are read and tried for writing."""
    absolute = quote(os.path.abspath(os.path.join(root, rel)), safe="") + ".json"
    override = os.environ.get("BAKE_STAMP_DIR")
    if override:
        return [Path(override) / absolute]
    return [Path(root) / ROOT_DIR / (quote(rel, safe="") + ".json"), _fallback_dir() / absolute]


def _read(path: Path) -> Stamp | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Stamp(
            int(data["size"]), int(data["mtime_ns"]), int(data["inode"]), str(data["blake3"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def lookup(root: Path, rel: str, stat: os.stat_result) -> str | None:
    """The blake3 recorded for `root/rel` if its identity is unchanged since, else None."""
    for path in _candidates(root, rel):
        stamp = _read(path)
        if stamp is not None and stamp.matches(stat):
            return stamp.blake3
    return None


def record(root: Path, rel: str, stat: os.stat_result, blake3: str) -> Path | None:
    """Remember that the file with this identity hashed to `blake3`. Returns where, or None
    when no location is writable (fast mode then simply re-hashes next time)."""
    text = json.dumps({"path": rel, **asdict(Stamp.of(stat, blake3))}, sort_keys=True) + "\n"
    for path in _candidates(root, rel):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, text)
            return path
        except OSError:
            continue
    return None


def forget(root: Path, rel: str) -> None:
    """Drop every stamp of `root/rel` (its content no longer matches)."""
    for path in _candidates(root, rel):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
