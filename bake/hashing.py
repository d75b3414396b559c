"""Hashes: blake3 of files (memory-mapped, all cores), sha256 + blake3 of a byte stream in one
pass, and the `tree` hash of a checked-out directory.

The tree hash is our narHash: a blake3 over a canonical listing of the tree, one record per
file, sorted by path bytes, so it is the same on every machine and file-system order:

    <mode> <blake3 of content, or of the link target> <relative posix path> NUL

Each record ends with NUL, which no path can hold, so one listing cannot be read as another
(a newline-terminated listing let a file named "x\\n100644 <hash> y" pass for two files); a
name holding a newline is refused all the same. The prefix `tree2-blake3:` names this format.
A symlink is recorded as a link (hash of its target), never followed, a symlinked folder too.

`mode` is git's notion of it (100644 file, 100755 executable, 120000 symlink), not the raw
permission bits, which depend on the umask of whoever checked the tree out. Any `.git` entry
(a directory, or the file a submodule or worktree leaves) is left out, as are empty directories,
which git does not track either.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import blake3 as _blake3

TREE_PREFIX = "tree2-blake3:"
_MMAP_MIN = 1 << 20  # below this a plain read is faster than setting up a mapping


def blake3_file(path: Path | str, *, threads: int | None = None) -> str:
    """Hex blake3 of a file, memory-mapped and hashed on all cores (or `threads`)."""
    max_threads = _blake3.blake3.AUTO if threads is None else threads
    hasher = _blake3.blake3(max_threads=max_threads)
    path = os.fspath(path)
    if os.path.getsize(path) >= _MMAP_MIN:
        hasher.update_mmap(path)
    else:
        with open(path, "rb") as handle:
            hasher.update(handle.read())
    return hasher.hexdigest()


@dataclass(frozen=True)
class Digests:
    size: int
    sha256: str
    blake3: str


class _HashThread:
    """One hash function fed from a queue on a thread of its own (hashlib and blake3 release
    the GIL), so hashing overlaps with the network and the disk instead of adding to them."""

    def __init__(self, hasher) -> None:
        self.hasher = hasher
        # bounded: a stalled hash holds back the stream, never fills memory (Hub chunks are
        # 10 MiB, so at most ~80 MiB per stream in flight)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._run, name="hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self.hasher.update(chunk)

    def put(self, data: bytes | None) -> None:
        self._queue.put(data)

    def join(self) -> str:
        self._thread.join()
        return self.hasher.hexdigest()


class StreamHasher:
    """sha256 and blake3 of bytes as they stream past, in one pass (for downloads), each hash
    on its own thread: on a fast link neither the download nor the other hash waits for the
    slower one (sha256). Call `finish()` exactly once."""

    def __init__(self) -> None:
        # one blake3 thread: the other cores are busy downloading and computing sha256
        self._threads = (_HashThread(hashlib.sha256()), _HashThread(_blake3.blake3()))
        self.size = 0

    def update(self, data: bytes) -> None:
        for thread in self._threads:
            thread.put(data)
        self.size += len(data)

    def finish(self) -> Digests:
        for thread in self._threads:
            thread.put(None)
        sha256, blake3 = (thread.join() for thread in self._threads)
        return Digests(self.size, sha256, blake3)


class UnsafeNameError(ValueError):
    """A path that the tree listing refuses: a name holding a newline (or NUL), which could
    make one listing read as another."""


def _check_name(rel: str) -> bytes:
    name = rel.encode("utf-8", "surrogateescape")
    if b"\n" in name or b"\0" in name:
        raise UnsafeNameError(f"{rel!r}: a file name holding a newline or NUL is refused")
    return name


def _tree_row(full: str, rel: str) -> bytes | None:
    """One record of the listing, or None for what is not content (directories, sockets)."""
    info = os.lstat(full)
    name = _check_name(rel)
    if stat.S_ISLNK(info.st_mode):
        target = os.readlink(full).encode("utf-8", "surrogateescape")
        return b"120000 " + _blake3.blake3(target).hexdigest().encode() + b" " + name
    if stat.S_ISREG(info.st_mode):
        mode = b"100755" if info.st_mode & stat.S_IXUSR else b"100644"
        return mode + b" " + blake3_file(full, threads=1).encode() + b" " + name
    return None


def tree_listing(root: Path | str) -> bytes:
    """The canonical listing the tree hash is taken over (see the module docstring): every
    file under `root`, tracked by git or not, except `.git`."""
    root = os.fspath(root)
    rows: list[bytes] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # os.walk lists a symlinked directory among dirnames but never descends into it: it
        # gets a row of its own, as a link
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in [*dirnames, *filenames]:
            if name == ".git":
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if (row := _tree_row(full, rel)) is not None:
                rows.append(row)
    return _listing_by_path(rows)


def _listing_by_path(rows: list[bytes]) -> bytes:
    # The path is the last field and cannot hold NUL: NUL-terminated records read one way only.
    rows.sort(key=lambda row: row.split(b" ", 2)[2])
    return b"".join(row + b"\0" for row in rows)


def tree_hash(root: Path | str) -> str:
    """`tree2-blake3:<hex>` of the canonical listing of `root`."""
    return TREE_PREFIX + _blake3.blake3(tree_listing(root)).hexdigest()


def _under_symlink(root: str, rel: str, seen: dict[str, bool]) -> bool:
    """Whether a parent folder of `rel` is a symlink (or not a folder): its content is not
    under `root`, whatever the path says."""
    parts = rel.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        if prefix not in seen:
            try:
                mode = os.lstat(os.path.join(root, *parts[:depth])).st_mode
                seen[prefix] = not stat.S_ISDIR(mode)
            except FileNotFoundError:
                seen[prefix] = True
        if seen[prefix]:
            return True
    return False


def tree_hash_paths(root: Path | str, paths: Iterable[str]) -> str:
    """The tree hash of only `paths` (relative, posix) under `root`, in the same listing
    format as `tree_hash`. For a checkout whose folder also holds untracked data (models under
    ComfyUI, checkpoints under a node), pass git's list of tracked files: the result equals
    `tree_hash` of a clean checkout. A listed path that is missing, a directory, or reached
    through a symlinked folder has no row, so the hash differs from the clean one."""
    root = os.fspath(root)
    rows: list[bytes] = []
    seen: dict[str, bool] = {}
    for rel in set(paths):
        if _under_symlink(root, rel, seen):
            continue
        full = os.path.join(root, *rel.split("/"))
        try:
            row = _tree_row(full, rel)
        except FileNotFoundError:
            continue
        if row is not None:
            rows.append(row)
    return TREE_PREFIX + _blake3.blake3(_listing_by_path(rows)).hexdigest()


def git_blob_id(data: bytes) -> str:
    """The id git gives a blob holding `data` (sha1 of its header and bytes), to compare a
    file on disk with the blob a commit records without asking git about the file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
