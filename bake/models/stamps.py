"""The stamp cache: a file's identity (device, inode, size, mtime_ns, ctime_ns) at the moment
its blake3 (and sha256) were last computed, so `verify --mode fast` can trust a file that has not
changed without reading it.

The identity is the fstat of the descriptor the bytes were read through, the same before and
after the read (bake.hashing.hash_fd), never a second look at the path: a path swapped for
another file during the read (a rename, a folder exchanged with RENAME_EXCHANGE) cannot lend its
identity to the hashes of the file that was read. A stamp records the sha256 too when it was
checked, and vouches for a pin only when every hash the pin has was checked against the same
bytes (`vouches`).

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

from bake.hashing import file_identity
from bake.locks.lockfile import cache_root, write_text_atomic
from bake.locks.models import ModelPin

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
    sha256: str | None = None  # when it was checked in the same read as blake3

    @classmethod
    def of(cls, stat: os.stat_result, blake3: str, sha256: str | None = None) -> Stamp:
        return cls(*identity(stat), blake3, sha256)

    def matches(self, stat: os.stat_result) -> bool:
        """The file still is the one that was hashed (same device, inode, size, mtime, ctime)."""
        return (self.device, self.inode, self.size, self.mtime_ns, self.ctime_ns) == identity(stat)

    def covers(self, pin: ModelPin, sha256: bool = True) -> bool:
        """Every hash `pin` has (its blake3 alone with `sha256=False`) was checked and matched
        when this stamp was written."""
        if self.blake3 != pin.blake3:
            return False
        return not sha256 or pin.sha256 is None or self.sha256 == pin.sha256


def identity(stat: os.stat_result) -> tuple[int, int, int, int, int]:
    """What a stamp keys on: (device, inode, size, mtime_ns, ctime_ns)."""
    return file_identity(stat)


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
        sha256 = data.get("sha256")
        return Stamp(
            int(data["device"]),
            int(data["inode"]),
            int(data["size"]),
            int(data["mtime_ns"]),
            int(data["ctime_ns"]),
            str(data["blake3"]),
            None if sha256 is None else str(sha256),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
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


def vouches(
    root: Path,
    rel: str,
    stat: os.stat_result,
    pin: ModelPin,
    *,
    volumes: Sequence[Path] = (),
    sha256: bool = True,
) -> bool:
    """A stamp of `root/rel` matches this identity (`stat`: the fstat of the descriptor the
    caller holds) and was written when the file matched every hash of `pin`: its blake3, and
    its sha256 when the pin has one (a stamp from before sha256 was checked, or from a pin with
    another sha256, does not vouch; the file is hashed again)."""
    for path in _candidates(root, rel, volumes):
        stamp = _read(path)
        if stamp is not None and stamp.matches(stat) and stamp.covers(pin, sha256):
            return True
    return False


def record(
    root: Path,
    rel: str,
    stat: os.stat_result,
    blake3: str,
    *,
    volumes: Sequence[Path] = (),
    sha256: str | None = None,
) -> Path | None:
    """Remember that the file with this identity hashed to `blake3` (and `sha256`, when it was
    checked in the same read). Returns where, or None when no location is writable (fast mode
    then simply re-hashes next time). `stat` must be the fstat of the descriptor the bytes were
    read through, equal before and after the read (bake.hashing.FileDigests.stat): a stat of
    the path taken at another moment may describe another file."""
    stamp = Stamp.of(stat, blake3, sha256)
    fields = {k: v for k, v in asdict(stamp).items() if v is not None}
    text = json.dumps({"path": rel, **fields}, sort_keys=True) + "\n"
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
