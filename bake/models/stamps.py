"""The stamp cache: a file's identity (device, inode, size, mtime_ns, ctime_ns) at the moment
its blake3 was last computed, so `verify --mode fast` can trust a file that has not changed
without reading it.

What a stamp proves: the file is the same inode on the same device, and nothing changed its
content or metadata since. Anyone can put an mtime back (`os.utime`), but the kernel sets ctime
on every write, rename, link or chmod and offers no way to set it, so an edit in place with the
mtime restored still shows. A stamp is only as trustworthy as the place it lives: a network
volume is written by other machines and by whoever else mounts it, who could replace a file and
write a matching stamp beside it. Stamps under a volume root are therefore never read nor
written; a volume's files are stamped on local disk, in bake's cache.

Where stamps live:
- `$BAKE_STAMP_DIR` when set (one directory for every root);
- else `<root>/.bake-stamps/` beside the files (the ComfyUI directory);
- and when that is not writable (a read-only image path) or lies on a volume, `stamps/` under
  bake's cache root: `$BAKE_CACHE_DIR`, else `$XDG_CACHE_HOME/comfy-bake`, else
  `~/.cache/comfy-bake`.
Any of these under a volume root (the ones given, and always /workspace and /runpod-volume) is
skipped. Reads look in the same order. A stamp is one small JSON file written atomically, so
concurrent writers cannot leave a torn one; identical facts make the last writer's win harmless.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from bake.locks.lockfile import cache_root, write_text_atomic

ROOT_DIR = ".bake-stamps"
# The network-volume roots RunPod mounts (pods: /workspace, serverless: /runpod-volume). Stamps
# under them are never trusted, whether or not a command was told about them.
VOLUME_ROOTS = (Path("/workspace"), Path("/runpod-volume"))


@dataclass(frozen=True)
class Stamp:
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    blake3: str

    @classmethod
    def of(cls, stat: os.stat_result, blake3: str) -> Stamp:
        return cls(*identity(stat), blake3)

    def matches(self, stat: os.stat_result) -> bool:
        """The file still is the one that was hashed (same device, inode, size, mtime, ctime)."""
        return (self.device, self.inode, self.size, self.mtime_ns, self.ctime_ns) == identity(stat)


def identity(stat: os.stat_result) -> tuple[int, int, int, int, int]:
    """What a stamp keys on: (device, inode, size, mtime_ns, ctime_ns)."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _fallback_dir() -> Path:
    return cache_root() / "stamps"


def _on_volume(path: Path, volumes: Sequence[Path]) -> bool:
    """`path` lies under one of the volume roots (symlinks resolved on both sides)."""
    real = os.path.realpath(path)
    for root in (*volumes, *VOLUME_ROOTS):
        top = os.path.realpath(root)
        if real == top or real.startswith(top.rstrip("/") + "/"):
            return True
    return False


def _candidates(root: Path, rel: str, volumes: Sequence[Path] = ()) -> list[Path]:
    """Stamp files for `root/rel`, in the order they are read and tried for writing; none of
    them under a volume root."""
    absolute = quote(os.path.abspath(os.path.join(root, rel)), safe="") + ".json"
    override = os.environ.get("BAKE_STAMP_DIR")
    if override:
        paths = [Path(override) / absolute]
    else:
        paths = [
            Path(root) / ROOT_DIR / (quote(rel, safe="") + ".json"),
            _fallback_dir() / absolute,
        ]
    return [path for path in paths if not _on_volume(path.parent, volumes)]


def _read(path: Path) -> Stamp | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Stamp(
            int(data["device"]),
            int(data["inode"]),
            int(data["size"]),
            int(data["mtime_ns"]),
            int(data["ctime_ns"]),
            str(data["blake3"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def lookup(
    root: Path, rel: str, stat: os.stat_result, *, volumes: Sequence[Path] = ()
) -> str | None:
    """The blake3 recorded for `root/rel` if its identity is unchanged since, else None.
    `volumes`: the network-volume roots in use (their stamps are not trusted)."""
    for path in _candidates(root, rel, volumes):
        stamp = _read(path)
        if stamp is not None and stamp.matches(stat):
            return stamp.blake3
    return None


def record(
    root: Path, rel: str, stat: os.stat_result, blake3: str, *, volumes: Sequence[Path] = ()
) -> Path | None:
    """Remember that the file with this identity hashed to `blake3`. Returns where, or None
    when no location is writable (fast mode then simply re-hashes next time). `stat` is taken
    before the file is hashed, so a write during the hash leaves a stamp that never matches."""
    text = json.dumps({"path": rel, **asdict(Stamp.of(stat, blake3))}, sort_keys=True) + "\n"
    for path in _candidates(root, rel, volumes):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, text)
            return path
        except OSError:
            continue
    return None


def forget(root: Path, rel: str, *, volumes: Sequence[Path] = ()) -> None:
    """Drop every stamp of `root/rel` (its content no longer matches)."""
    for path in _candidates(root, rel, volumes):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
