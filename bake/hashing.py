"""Hashes: blake3 (and sha256) of files, read once through one descriptor; sha256 + blake3 of a
byte stream in one pass; and the `tree` hash of a checked-out directory.

A file is hashed through the descriptor it was opened with, never reopened by path: its identity
(device, inode, size, mtime_ns, ctime_ns) is taken from that descriptor before and after the
read, and a file whose identity moved meanwhile is refused (`FileChangedError`). What a caller
records about the file (a stamp) is bound to that identity, not to whatever the path names by
the time it looks again. blake3 runs on all cores over a memory map of the descriptor; sha256,
when asked for, runs on one more thread over the same map, a few chunks behind, so the file is
read from disk once.

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
import mmap
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
# A mapped file is hashed this many bytes at a time (a multiple of the page size): blake3 spreads
# each chunk over all cores, sha256 follows chunk by chunk, and the next chunk is read ahead.
_CHUNK = 64 << 20
# How many chunks blake3 may run ahead of sha256: enough that neither waits for the other's
# start, few enough that what sha256 still has to read is certainly in the page cache.
_AHEAD = 2
# Opening never blocks (a FIFO swapped in for a model would), never gives a child the descriptor.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK

Identity = tuple[int, int, int, int, int]


def file_identity(info: os.stat_result) -> Identity:
    """What says a file is still the one that was hashed: (device, inode, size, mtime_ns,
    ctime_ns). ctime moves on every write, rename, link or chmod and no call sets it."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class FileChangedError(OSError):
    """The file changed while it was being hashed: its descriptor's identity differs before and
    after the read (or it held fewer bytes than it said). Its hashes describe no one file."""

    def __init__(self, before: os.stat_result, after: os.stat_result | None, why: str) -> None:
        super().__init__(why)
        self.before = before
        self.after = after


class NotRegularFileError(Exception):
    """The path names no regular file (a folder, a FIFO, a device): nothing to hash."""


@dataclass(frozen=True)
class FileDigests:
    """Hashes of the bytes read through one descriptor, and that descriptor's fstat (the same
    before and after the read)."""

    stat: os.stat_result
    blake3: str
    sha256: str | None = None

    @property
    def size(self) -> int:
        return self.stat.st_size

    @property
    def identity(self) -> Identity:
        return file_identity(self.stat)


def _chunk_hashed(done: int, total: int) -> None:
    """Called on the hashing thread after each chunk of a file (`done` of `total` bytes). Does
    nothing: tests race a hash here (swap the file, write to it) at a known point."""


def open_file(path: Path | str) -> int:
    """A read-only descriptor of `path` (following symlinks, as loading the file would) that
    names a regular file; the caller closes it. Raises NotRegularFileError otherwise, and the
    OSError of the open (FileNotFoundError, ...)."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"{os.fspath(path)} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Follower:
    """sha256 on a thread of its own over slices of the mapping blake3 reads, at most `_AHEAD`
    chunks behind (hashlib releases the GIL). Each slice is released by the thread that used it,
    so the mapping can be closed once `finish` or `abandon` returned."""

    def __init__(self, hasher) -> None:
        self.hasher = hasher
        self.error: BaseException | None = None
        self._queue: queue.Queue[memoryview | None] = queue.Queue(maxsize=_AHEAD)
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (piece := self._queue.get()) is not None:
            with piece:
                if self.error is None:
                    try:
                        self.hasher.update(piece)
                    except BaseException as exc:  # kept for finish(); the queue still drains
                        self.error = exc

    def put(self, piece: memoryview) -> None:
        self._queue.put(piece)

    def finish(self) -> str:
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.hasher.hexdigest()

    def abandon(self) -> None:
        self._queue.put(None)
        self._thread.join()


def _read_exactly(fd: int, size: int) -> bytes:
    parts, done = [], 0
    while done < size:
        part = os.pread(fd, size - done, done)
        if not part:
            break
        parts.append(part)
        done += len(part)
    return b"".join(parts)


def _hash_mapped(fd: int, size: int, b3, sha) -> str | None:
    with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
        follower = _Follower(sha) if sha is not None else None
        try:
            with memoryview(mapped) as view:
                for start in range(0, size, _CHUNK):
                    end = min(start + _CHUNK, size)
                    if end < size and end % mmap.PAGESIZE == 0:
                        # the disk reads the next chunk while this one is hashed
                        mapped.madvise(mmap.MADV_WILLNEED, end, min(_CHUNK, size - end))
                    if follower is not None:
                        theirs = view[start:end]
                        try:
                            follower.put(theirs)
                        except BaseException:  # never queued: the follower cannot release it
                            theirs.release()
                            raise
                    with view[start:end] as piece:
                        b3.update(piece)
                    _chunk_hashed(end, size)
        except BaseException:
            # its slices must be released before the mapping is closed
            if follower is not None:
                follower.abandon()
            raise
        return follower.finish() if follower is not None else None


def hash_fd(fd: int, *, sha256: bool = False, threads: int | None = None) -> FileDigests:
    """blake3 (and sha256 when asked) of the regular file open as `fd`, in one read. The
    descriptor's fstat before and after the read must agree on (device, inode, size, mtime_ns,
    ctime_ns), else FileChangedError: a write during the read would mix old and new bytes."""
    before = os.fstat(fd)
    if not stat.S_ISREG(before.st_mode):
        raise NotRegularFileError(f"descriptor {fd} is not a regular file")
    size = before.st_size
    b3 = _blake3.blake3(max_threads=_blake3.blake3.AUTO if threads is None else threads)
    sha = hashlib.sha256() if sha256 else None
    if size >= _MMAP_MIN:
        sha_hex = _hash_mapped(fd, size, b3, sha)
    else:
        data = _read_exactly(fd, size)
        if len(data) != size:
            raise FileChangedError(
                before, os.fstat(fd), f"held {len(data)} bytes of the {size} it said"
            )
        b3.update(data)
        if sha is not None:
            sha.update(data)
        sha_hex = sha.hexdigest() if sha is not None else None
        _chunk_hashed(size, size)
    after = os.fstat(fd)
    if file_identity(before) != file_identity(after):
        raise FileChangedError(before, after, "it changed while it was being read")
    return FileDigests(before, b3.hexdigest(), sha_hex)


def hash_file(path: Path | str, *, sha256: bool = False, threads: int | None = None) -> FileDigests:
    """`hash_fd` of `path`, opened once (see open_file)."""
    fd = open_file(path)
    try:
        return hash_fd(fd, sha256=sha256, threads=threads)
    finally:
        os.close(fd)


def blake3_file(path: Path | str, *, threads: int | None = None) -> str:
    """Hex blake3 of a file, memory-mapped and hashed on all cores (or `threads`)."""
    return hash_file(path, threads=threads).blake3


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
        # mode and content both come from the one descriptor, never from a second look at the
        # path (a file swapped for a link meanwhile is refused, not followed)
        try:
            fd = os.open(full, _OPEN_FLAGS | os.O_NOFOLLOW)
        except OSError as exc:
            raise FileChangedError(info, None, f"{full}: changed while listed ({exc})") from None
        try:
            digests = hash_fd(fd, threads=1)
        except NotRegularFileError:
            raise FileChangedError(info, None, f"{full}: changed while listed") from None
        finally:
            os.close(fd)
        mode = b"100755" if digests.stat.st_mode & stat.S_IXUSR else b"100644"
        return mode + b" " + digests.blake3.encode() + b" " + name
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
