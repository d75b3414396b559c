"""Putting one model file in place: a temporary file beside the destination, written under a
per-file lock, hashed while it streams, renamed into place only when size and hashes match.

Nothing half-written is ever at a destination path. Several processes may place the same file
at once (workers booting on one network volume): the first takes the lock and downloads, the
others wait, then find the file present and valid and skip it. A partial temporary file left by
an interrupted run is resumed: its bytes are re-hashed from disk and the download continues
from where it stopped. Its name carries the expected blake3, so a partial file of another
version is never resumed into this one; such a file is deleted when the file is next fetched.

Every file is read through the descriptor it was opened with, never reopened by path: a file
already at the destination is checked (size, stamp, sha256 and blake3 in one read) through one
descriptor, a partial file is resumed and re-hashed through the descriptor it is appended to,
and the stamp of a new file is the fstat of the descriptor it was written through, taken after
the rename. The temporary file is opened without following a symlink planted in its place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

import filelock

from bake.errors import FetchError, HashMismatchError, SizeMismatchError
from bake.hashing import (
    Digests,
    FileChangedError,
    Identity,
    NotRegularFileError,
    StreamHasher,
    file_identity,
    hash_fd,
    open_file,
)
from bake.locks.models import ModelPin
from bake.models import stamps
from bake.progress import Progress

_READ_CHUNK = 8 << 20
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DownloadInterrupted(FetchError):
    """The connection dropped and retries ran out; the partial file is kept to resume from."""


class _Overflow(Exception):
    """The source sent more bytes than the lock says the file has."""


def temp_path(dest: Path, pin: ModelPin) -> Path:
    return dest.with_name(f".{dest.name}.{pin.blake3[:16]}.incomplete")


def _remove_stale_partials(dest: Path, keep: Path) -> None:
    """Delete the partial files of other versions of `dest` (the lock moved on while a fetch
    was interrupted). Called with dest's lock held: nobody else is writing any of them."""
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.[0-9a-f]{{16}}\.incomplete")
    try:
        names = os.listdir(dest.parent)
    except OSError:
        return
    for name in names:
        if name != keep.name and pattern.fullmatch(name):
            # gone already, or not ours to delete: the download goes on regardless
            with contextlib.suppress(OSError):
                (dest.parent / name).unlink()


def lock_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.lock")


def _write_chunk(handle, data: bytes) -> None:
    """The one place bytes reach the disk (tests inject a full disk here)."""
    handle.write(data)


class Sink:
    """A write-only file object the sources write a file's bytes into.

    `offset` is how many bytes were already there when the download began (a resume): the
    source asks the server for the rest. Every byte written is hashed on the way. `seek` plus
    `truncate` back to an earlier position (a server that ignored a Range request) is
    supported by re-hashing what stays. `handle=None` hashes without keeping a copy.
    """

    def __init__(
        self,
        handle=None,
        *,
        limit: int | None = None,
        progress: Progress | None = None,
        prefix: Path | None = None,
    ):
        self._handle = handle
        self._limit = limit
        self._progress = progress
        self._pipe = StreamHasher()
        self._pending: int | None = None
        self.position = 0
        if prefix is not None and handle is not None:
            self._feed_prefix(handle.tell())
        self.offset = self.position
        if progress is not None:
            progress.start(limit or 0, already=self.offset)

    def _feed_prefix(self, length: int) -> None:
        """Hash the first `length` bytes already in the file, read through the handle's own
        descriptor (the file that is appended to, whatever its path names by now)."""
        self._handle.flush()
        fd = self._handle.fileno()
        while self.position < length:
            chunk = os.pread(fd, min(_READ_CHUNK, length - self.position), self.position)
            if not chunk:
                break
            self._pipe.update(chunk)
            self.position += len(chunk)

    # -- the file-object surface the libraries use ----------------------------------------

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        # s3transfer then writes parts in order, which streaming hashes need
        return False

    def write(self, data) -> int:
        data = bytes(data) if not isinstance(data, bytes) else data
        if self._limit is not None and self.position + len(data) > self._limit:
            raise _Overflow(self.position + len(data))
        if self._handle is not None:
            _write_chunk(self._handle, data)
        self._pipe.update(data)
        self.position += len(data)
        if self._progress is not None:
            self._progress.advance(len(data))
        return len(data)

    def tell(self) -> int:
        return self.position

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self.position
        elif whence == 2:
            raise OSError(errno.ESPIPE, "cannot seek from the end of a download")
        self._pending = pos
        return pos

    def truncate(self, size: int | None = None) -> int:
        keep = self._pending if size is None else size
        self._pending = None
        if keep is None or keep >= self.position:
            return self.position
        if keep > 0 and self._handle is None:
            raise OSError(errno.ESPIPE, "cannot rewind a hash-only download part way")
        dropped = self.position - keep
        self._pipe.finish()
        self._pipe = StreamHasher()
        self.position = 0
        if self._handle is not None:
            self._handle.flush()
            self._handle.seek(keep)
            self._handle.truncate()
            if keep:
                self._feed_prefix(keep)
        self.offset = min(self.offset, keep)
        if self._progress is not None:
            self._progress.advance(-dropped)
        return keep

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.flush()

    def close_hash(self) -> Digests:
        return self._pipe.finish()


def download_hashes(
    download: Callable[[Sink], None], *, limit: int | None = None, progress: Progress | None = None
) -> Digests:
    """Stream a file through sha256 and blake3 without keeping it (what `update-locks` does)."""
    sink = Sink(limit=limit, progress=progress)
    try:
        download(sink)
    finally:
        hasher = sink.close_hash()
        if progress is not None:
            progress.finish()
    return hasher


def is_present(
    root: Path,
    rel: str,
    pin: ModelPin,
    *,
    volumes: Sequence[Path] = (),
    identities: dict[str, Identity] | None = None,
) -> bool:
    """The file is at root/rel with the locked size, blake3 and sha256 (trusting a fresh stamp
    that does not live on one of the network `volumes` and covers the pin's hashes). Size,
    stamp and hashes come from one descriptor; a file that changes while it is hashed is not
    present. `identities`, when given, gets str(root/rel) -> the identity of the file checked."""
    path = Path(root) / rel
    try:
        fd = open_file(path)
    except (FileNotFoundError, NotADirectoryError, NotRegularFileError):
        return False
    try:
        opened = os.fstat(fd)
        if opened.st_size != pin.size:
            return False
        if stamps.vouches(root, rel, opened, pin, volumes=volumes):
            checked = file_identity(opened)
        else:
            try:
                digests = hash_fd(fd, sha256=pin.sha256 is not None)
            except FileChangedError:
                return False
            if digests.blake3 != pin.blake3 or (
                pin.sha256 is not None and digests.sha256 != pin.sha256
            ):
                return False
            stamps.record(
                root, rel, digests.stat, pin.blake3, volumes=volumes, sha256=digests.sha256
            )
            checked = digests.identity
    finally:
        os.close(fd)
    try:
        now = file_identity(os.stat(path))
    except OSError:
        now = None
    if now != checked:  # the path names another file by now: the one checked is not there
        return False
    if identities is not None:
        identities[str(path)] = checked
    return True


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_writable_path(root: Path, rel: str, label: str) -> None:
    """Refuse to write root/rel through a symlinked folder that leads out of the root (a
    planted `models/vae -> /usr/lib/python3/...` would turn a model fetch into a write
    anywhere), and refuse a folder standing where the file goes (the rename could never
    succeed). Folders that do not exist yet are created as real folders, below the deepest
    one that does."""
    root = Path(root)
    real_root = os.path.realpath(root)
    current = root
    for part in Path(rel).parent.parts:
        current = current / part
        if not os.path.lexists(current):
            break
        if os.path.islink(current):
            target = os.path.realpath(current)
            if not _inside(target, real_root):
                raise FetchError(
                    f"{label}: {current} is a symlink to {target}, outside {root}: refusing "
                    f"to write {root / rel} through it; nothing was downloaded. Replace the "
                    "link with a folder, or fetch with the root the files should go to"
                )
    dest = root / rel
    if os.path.isdir(dest) and not os.path.islink(dest):
        raise FetchError(
            f"{label}: {dest} is a folder, where the model file should be; nothing was "
            "downloaded. Move that folder away (its contents are not this model) and run the "
            "fetch again"
        )


def _disk_full(label: str, dest: Path, written: int, size: int) -> FetchError:
    return FetchError(
        f"{label}: no space left on the device while writing {dest} ({written} of {size} "
        f"bytes written); the temporary file was deleted. Free at least {size} bytes on that "
        f"file system and run the fetch again."
    )


def place(
    root: Path,
    rel: str,
    pin: ModelPin,
    download: Callable[[Sink], None],
    *,
    label: str,
    origin: str,
    progress: Progress | None = None,
    volumes: Sequence[Path] = (),
    identities: dict[str, Identity] | None = None,
) -> bool:
    """Make root/rel hold the file `pin` describes. Returns True when it was downloaded,
    False when a valid copy was already there. Raises a FetchError or VerificationError whose
    message names the entry, the destination, what was expected and found, and what to do.
    `volumes`: the network-volume roots in use, whose stamps are not trusted. `identities`,
    when given, gets str(root/rel) -> the identity (device, inode, size, mtime_ns, ctime_ns)
    of the file verified there, from its own descriptor."""
    root = Path(root)
    dest = root / rel
    check_writable_path(root, rel, label)
    if is_present(root, rel, pin, volumes=volumes, identities=identities):
        return False
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # the folders just created are real ones; one swapped for a link meanwhile is not
        check_writable_path(root, rel, label)
        guard = filelock.FileLock(str(lock_path(dest)))
        try:
            guard.acquire(timeout=0)
        except filelock.Timeout:
            if progress is not None:
                progress.message(f"{label}: another process is fetching {dest}; waiting for it")
            guard.acquire()
    except OSError as exc:
        raise FetchError(
            f"{label}: cannot create {dest.parent} or its lock file: "
            f"{exc.strerror}; make the directory writable"
        ) from None
    try:
        if is_present(root, rel, pin, volumes=volumes, identities=identities):
            return False
        placed = _download_locked(
            root, rel, pin, download, label=label, origin=origin, progress=progress, volumes=volumes
        )
    finally:
        guard.release()
    if identities is not None:
        identities[str(dest)] = placed
    return True


def _download_locked(
    root: Path,
    rel: str,
    pin: ModelPin,
    download: Callable[[Sink], None],
    *,
    label: str,
    origin: str,
    progress: Progress | None,
    volumes: Sequence[Path],
) -> Identity:
    """Download, verify and rename into place; returns the identity of the file placed."""
    dest = root / rel
    tmp = temp_path(dest, pin)
    _remove_stale_partials(dest, tmp)  # before downloading: their space may be needed
    handle = None
    try:
        try:
            handle, hasher = _stream_to(
                tmp, dest, pin, download, label=label, origin=origin, progress=progress
            )
        except (DownloadInterrupted, KeyboardInterrupt):
            raise  # the partial file stays for the next run to resume
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _check_digests(hasher, tmp, dest, pin, label=label, origin=origin)
        return _put_in_place(handle, tmp, root, rel, pin, label=label, volumes=volumes)
    finally:
        if handle is not None:
            handle.close()


def _check_digests(
    hasher: Digests, tmp: Path, dest: Path, pin: ModelPin, *, label: str, origin: str
) -> None:
    if hasher.size != pin.size:
        tmp.unlink(missing_ok=True)
        raise SizeMismatchError(
            f"{label}: {origin} sent {hasher.size} bytes, expected {pin.size} (truncated or "
            f"changed upstream); the temporary file was deleted and nothing was written to "
            f"{dest}. Run the fetch again; if the source changed on purpose, run "
            f"`scripts/update-locks.py --models {label}`."
        )
    for algo, expected, found in (
        ("blake3", pin.blake3, hasher.blake3),
        ("sha256", pin.sha256, hasher.sha256),
    ):
        if expected is not None and expected != found:
            tmp.unlink(missing_ok=True)
            raise HashMismatchError(
                f"{label}: {algo} of the download from {origin} is {found}, expected "
                f"{expected}; the temporary file was deleted and nothing was written to {dest}. "
                f"The file upstream changed or was corrupted in transit: fetch again, or if the "
                f"new file is intended, run `scripts/update-locks.py --models {label}`."
            )


def _put_in_place(
    handle, tmp: Path, root: Path, rel: str, pin: ModelPin, *, label: str, volumes: Sequence[Path]
) -> Identity:
    """Rename the verified temporary file (open as `handle`) to root/rel and stamp it with the
    fstat of `handle`'s descriptor: the file that was written and hashed. The rename moves its
    ctime, so the stamp is taken after it; the path must then name that same file."""
    dest = root / rel
    fd = handle.fileno()
    try:
        handle.flush()
        os.fchmod(fd, 0o644)
        written = os.fstat(fd)
        os.replace(tmp, dest)
    except OSError as exc:
        # a complete, verified file that cannot be put in place is deleted too: left behind,
        # it would be "resumed" by every later run and fail the same way
        tmp.unlink(missing_ok=True)
        raise FetchError(
            f"{label}: the download is verified but cannot be moved to {dest}: "
            f"{exc.strerror or exc}; the temporary file was deleted. Make {dest} a writable "
            "path for a file and run the fetch again"
        ) from None
    placed = os.fstat(fd)
    try:
        at_dest = file_identity(os.stat(dest))
    except OSError:
        at_dest = None
    # (device, inode, size, mtime_ns): the rename itself moves only ctime
    if file_identity(written)[:4] != file_identity(placed)[:4] or at_dest != file_identity(placed):
        raise FetchError(
            f"{label}: {dest} was changed or replaced while the verified download was being "
            "put in place: something else writes to that folder. Find what, and run the fetch "
            "again"
        )
    stamps.record(root, rel, placed, pin.blake3, volumes=volumes, sha256=pin.sha256)
    return file_identity(placed)


def _open_temp(tmp: Path, size: int):
    """The temporary file, opened read-write without following a link planted at its name and
    without truncating it; a partial file of at most `size` bytes is kept to resume from (its
    length taken from this descriptor), anything else is emptied."""
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a FIFO planted there: O_RDWR never blocks
            raise OSError(errno.EINVAL, "not a regular file")
        existing = info.st_size if 0 < info.st_size <= size else 0
        if existing != info.st_size:
            os.ftruncate(fd, 0)
        handle = os.fdopen(fd, "r+b")
    except BaseException:
        os.close(fd)
        raise
    handle.seek(existing)
    return handle, existing


def _stream_to(
    tmp: Path,
    dest: Path,
    pin: ModelPin,
    download: Callable[[Sink], None],
    *,
    label: str,
    origin: str,
    progress: Progress | None,
):
    """Download into `tmp` (resuming what it holds) and return its open handle (the caller
    closes it) and the hashes of all its bytes."""
    written = 0
    handle = None
    try:
        handle, existing = _open_temp(tmp, pin.size)
        sink = Sink(handle, limit=pin.size, progress=progress, prefix=tmp if existing else None)
        try:
            if sink.offset < pin.size:  # a complete partial (killed before the rename)
                download(sink)  # needs no request: a Range past the end is a 416
            handle.flush()
        finally:
            written = sink.position
            hasher = sink.close_hash()
            if progress is not None:
                progress.finish(leftover=max(pin.size - written, 0))
        return handle, hasher
    except BaseException as exc:
        if handle is not None:
            with contextlib.suppress(OSError):  # a full disk fails the flush of close again
                handle.close()
        if isinstance(exc, _Overflow):
            raise SizeMismatchError(
                f"{label}: {origin} sent more than the locked {pin.size} bytes (at least "
                f"{exc.args[0]}); the temporary file was deleted and nothing was written to "
                f"{dest}. If the source changed on purpose, run "
                f"`scripts/update-locks.py --models {label}`."
            ) from None
        if isinstance(exc, DownloadInterrupted):
            raise DownloadInterrupted(
                f"{label}: {exc}; {written} of {pin.size} bytes are kept in "
                f"{tmp}: run the fetch again to resume"
            ) from None
        if isinstance(exc, FetchError):
            raise type(exc)(f"{label}: {exc}") from None
        if isinstance(exc, OSError):
            if exc.errno in _DISK_FULL:
                raise _disk_full(label, dest, written, pin.size) from None
            raise FetchError(f"{label}: cannot write {tmp}: {exc.strerror or exc}") from None
        raise
