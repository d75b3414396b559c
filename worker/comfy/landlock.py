"""Landlock, the Linux LSM that lets an unprivileged process restrict itself, over ctypes.

ComfyUI runs whatever its nodes do with a job's input, so it starts inside a Landlock ruleset:
it may read and execute the system and its own code, write only its own folders and caches,
open the GPU's device files, bind its own port and connect nowhere over TCP, and (from ABI 6)
neither signal nor reach the abstract unix sockets of processes outside its domain. A
restricted process and everything it starts (ffmpeg, compilers) keep the restriction for life.

Why a launcher that applies the ruleset and then exec's (``python landlock.py --ruleset JSON --
PROGRAM ARGS...``) rather than a ``preexec_fn``: landlock_restrict_self(2) restricts the calling
thread only, and code between fork and exec in a threaded worker is unsafe; a fresh
single-threaded interpreter that exec's is neither. As a script it imports nothing but the
standard library, so it runs under any interpreter and nothing of the project's can shadow it.
Any failure to apply the ruleset ends the launcher with exit code 126 and one line on stderr,
without running the program: it never runs a program uncontained silently.

Why not a binding from PyPI: the ``landlock`` package (1.0.0.dev5, a pre-release) covers
filesystem rules only, not the network rules of ABI 4 or the scopes of ABI 6. This module is
the three system calls and their structures, checked against include/uapi/linux/landlock.h.

Best effort, as in the kernel documentation's example: the rights handled are exactly those the
running kernel's ABI knows, so an older kernel enforces what it can; ``Applied`` says which
layers are in force. Not covered by Landlock (up to ABI 7): UDP, pathname unix sockets,
mmap(PROT_EXEC) of a readable file (so dlopen), stat/chmod/chown-like calls. Its ptrace rule
keeps /proc/<pid>/environ of processes outside closed, but the kernel (mm_access) lets a
holder of CAP_SYS_ADMIN or CAP_PERFMON read it anyway: restrict_self drops both.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

# System call numbers: the same on x86_64 and every architecture with the unified table.
SYS_CREATE_RULESET = 444
SYS_ADD_RULE = 445
SYS_RESTRICT_SELF = 446

CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1
RULE_NET_PORT = 2
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_LOWER = 3
CAP_VERSION_3 = 0x20080522
# With either, the kernel lets a process read another's /proc/<pid>/environ and maps whatever
# Landlock's ptrace rule says (mm_access: perfmon_capable()). restrict_self drops both.
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
DROPPED_CAPS = (CAP_SYS_ADMIN, CAP_PERFMON)

# Filesystem rights (ABI 1 unless noted).
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

# The only rights the kernel accepts on a rule for a file (not a directory).
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV

READ_RIGHTS = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
# No EXECUTE: a binary dropped in a writable folder cannot be exec'd. No MAKE_CHAR/MAKE_BLOCK.
WRITE_RIGHTS = (
    FS_READ_FILE
    | FS_READ_DIR
    | FS_WRITE_FILE
    | FS_TRUNCATE
    | FS_REMOVE_DIR
    | FS_REMOVE_FILE
    | FS_MAKE_DIR
    | FS_MAKE_REG
    | FS_MAKE_SOCK
    | FS_MAKE_FIFO
    | FS_MAKE_SYM
    | FS_REFER
)
# A GPU is opened read/write and driven by ioctls.
DEVICE_RIGHTS = FS_READ_FILE | FS_WRITE_FILE | FS_IOCTL_DEV


class LandlockError(OSError):
    """A Landlock call failed: the message names the call, the path or port, and the errno."""

    def __init__(self, call: str, err: int, where: str = "", why: str = "") -> None:
        # 95 is both; errorcode says ENOTSUP, the Landlock documentation EOPNOTSUPP
        name = "EOPNOTSUPP" if err == errno.EOPNOTSUPP else errno.errorcode.get(err, str(err))
        target = f"({where})" if where else ""
        because = f": {why}" if why else ""
        super().__init__(err, f"{call}{target} failed: {name} ({os.strerror(err)}){because}")

    def __str__(self) -> str:
        return str(self.strerror)


class Handled(NamedTuple):
    """The access rights a ruleset handles (denies unless a rule allows them)."""

    fs: int
    net: int
    scoped: int


def handled_for_abi(abi: int) -> Handled:
    """Every right this module knows that the given ABI knows too: a kernel refuses a ruleset
    handling a right newer than itself (EINVAL), so newer rights are masked off."""
    if abi < 1:
        return Handled(0, 0, 0)
    fs = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
    if abi >= 2:
        fs |= FS_REFER
    if abi >= 3:
        fs |= FS_TRUNCATE
    if abi >= 5:
        fs |= FS_IOCTL_DEV
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    return Handled(fs, net, scoped)


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),  # ABI 4
        ("scoped", ctypes.c_uint64),  # ABI 6
    )


def _attr_size(abi: int) -> int:
    """The size of struct landlock_ruleset_attr as the ABI knows it: an older kernel refuses a
    larger struct whose extra fields are not zero, so pass only the fields it knows."""
    return 8 if abi < 4 else 16 if abi < 6 else 24


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # packed in the UAPI: 12 bytes
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class _NetPortAttr(ctypes.Structure):
    _fields_ = (("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64))


# Linux only: the worker and its image are; CDLL(None) is the C library already loaded.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(call: str, nr: int, *args: object, where: str = "") -> int:
    ctypes.set_errno(0)
    result = _libc.syscall(ctypes.c_long(nr), *args)
    if result < 0:
        raise LandlockError(call, ctypes.get_errno(), where)
    return result


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> int:
    ctypes.set_errno(0)
    ulong = ctypes.c_ulong
    return _libc.prctl(ctypes.c_int(option), ulong(arg2), ulong(arg3), ulong(0), ulong(0))


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = tuple((name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable"))


def drop_capabilities(caps: Iterable[int] = DROPPED_CAPS) -> None:
    """Drop `caps` from this process's effective, permitted, inheritable, ambient and (where
    it may: root) bounding sets. Without CAP_SETPCAP the bounding set stays, but after
    PR_SET_NO_NEW_PRIVS exec never grants beyond the permitted set, so nothing brings them back."""
    header, data = _CapHeader(CAP_VERSION_3, 0), (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data):
        raise LandlockError("capget", ctypes.get_errno())
    for cap in caps:
        word, keep = data[cap // 32], ~(1 << (cap % 32)) & 0xFFFFFFFF
        word.effective &= keep
        word.permitted &= keep
        word.inheritable &= keep
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, cap)  # always allowed; EINVAL: no such cap
        if _prctl(PR_CAPBSET_DROP, cap) and ctypes.get_errno() not in (errno.EPERM, errno.EINVAL):
            raise LandlockError("prctl(PR_CAPBSET_DROP)", ctypes.get_errno(), f"capability {cap}")
    if _libc.capset(ctypes.byref(header), data):
        raise LandlockError("capset", ctypes.get_errno())


_WHY = {
    errno.ENOSYS: "this kernel has no Landlock, or a seccomp filter blocks its system calls",
    errno.EOPNOTSUPP: "Landlock is built in but not enabled at boot "
    "(`landlock` is missing from /sys/kernel/security/lsm)",
    errno.EPERM: "a seccomp filter denies the Landlock system calls",
}


def _probe() -> tuple[int, LandlockError | None]:
    """(ABI, None), or (0, the error saying why Landlock is unavailable)."""
    try:
        return _syscall(
            "landlock_create_ruleset",
            SYS_CREATE_RULESET,
            ctypes.c_void_p(None),
            ctypes.c_size_t(0),
            ctypes.c_uint32(CREATE_RULESET_VERSION),
        ), None
    except LandlockError as e:
        err = e.errno or 0
        return 0, LandlockError("landlock_create_ruleset", err, why=_WHY.get(err, ""))


def abi_version() -> int:
    """The kernel's Landlock ABI version, 0 where Landlock is unavailable: which rights exist
    (and so which layers a ruleset can enforce) depends on it."""
    return _probe()[0]


def unavailable_reason() -> str | None:
    """Why Landlock is unavailable, for a log line (errno and its usual cause); None when
    it is available."""
    error = _probe()[1]
    return None if error is None else str(error)


@dataclass(frozen=True)
class Ruleset:
    """What a contained process may do; everything else Landlock handles is denied.

    Paths are files or folders (folders recursively); a path that does not exist, or that the
    process cannot reach, is skipped.
    """

    # read and execute
    read: tuple[str, ...] = ()
    # folders: create, write, truncate, remove, rename within, and read (not execute);
    # files: read, write and truncate
    write: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()  # device files: open read/write, ioctl (ABI 5)
    bind_tcp: tuple[int, ...] = ()  # ports it may listen on (ABI 4)
    connect_tcp: tuple[int, ...] = ()  # ports it may connect to; empty: none at all (ABI 4)
    scope: bool = True  # no signals to, no abstract unix sockets of, processes outside (ABI 6)

    def to_json(self) -> str:
        """The launcher's --ruleset argument."""
        return json.dumps(
            {
                "read": list(self.read),
                "write": list(self.write),
                "devices": list(self.devices),
                "bind_tcp": list(self.bind_tcp),
                "connect_tcp": list(self.connect_tcp),
                "scope": self.scope,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Ruleset:
        """Parse --ruleset; a wrong shape is a ValueError, never a half-understood ruleset."""
        data = json.loads(text)
        if not isinstance(data, dict) or set(data) - set(cls.__dataclass_fields__):
            raise ValueError(f"not a ruleset: {text[:200]}")
        paths = {k: data.get(k, []) for k in ("read", "write", "devices")}
        ports = {k: data.get(k, []) for k in ("bind_tcp", "connect_tcp")}
        scope = data.get("scope", True)
        if (
            not all(
                isinstance(v, list) and all(isinstance(p, str) for p in v) for v in paths.values()
            )
            or not all(
                isinstance(v, list) and all(type(p) is int and 0 <= p < 65536 for p in v)
                for v in ports.values()
            )
            or not isinstance(scope, bool)
        ):
            raise ValueError(f"not a ruleset: {text[:200]}")
        return cls(
            **{k: tuple(v) for k, v in paths.items()},
            **{k: tuple(v) for k, v in ports.items()},
            scope=scope,
        )


@dataclass(frozen=True)
class Applied:
    """The layers in force after restrict_self (or, from `expected`, those it would put in
    force on this ABI), for the log line every job carries."""

    abi: int
    fs: bool
    net: bool
    scope: bool
    skipped: tuple[str, ...] = ()  # paths of the ruleset that did not exist (or not for it)

    @classmethod
    def expected(cls, abi: int, *, scope: bool = True) -> Applied:
        return cls(abi=abi, fs=abi >= 1, net=abi >= 4, scope=scope and abi >= 6)

    def describe(self) -> str:
        """e.g. `landlock abi 7 (fs, net, scope)`, `landlock abi 3 (fs; no net or scope
        rules on this kernel)`."""
        on = [
            name
            for name, flag in (("fs", self.fs), ("net", self.net), ("scope", self.scope))
            if flag
        ]
        text = ", ".join(on)
        too_old = [name for name, abi in (("net", 4), ("scope", 6)) if self.abi < abi]
        if too_old:
            text += f"; no {' or '.join(too_old)} rules on this kernel"
        elif not self.scope:
            text += "; scope off"
        return f"landlock abi {self.abi} ({text})"


def _add_path(ruleset_fd: int, path: str, rights: int, handled_fs: int) -> bool:
    """Allow `rights` beneath `path`; False when it does not exist, or the process cannot
    reach it anyway (a folder of root's, for ComfyUI's user: its permissions deny it more)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return False
    except OSError as e:
        raise LandlockError("open(O_PATH)", e.errno or 0, path) from None
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= FILE_RIGHTS  # a file rule with directory rights is EINVAL
        attr = _PathBeneathAttr(allowed_access=rights & handled_fs, parent_fd=fd)
        if attr.allowed_access:  # an empty rule is ENOMSG (e.g. IOCTL_DEV only, before ABI 5)
            _syscall(
                "landlock_add_rule",
                SYS_ADD_RULE,
                ctypes.c_int(ruleset_fd),
                ctypes.c_int(RULE_PATH_BENEATH),
                ctypes.byref(attr),
                ctypes.c_uint32(0),
                where=path,
            )
    finally:
        os.close(fd)
    return True


def restrict_self(ruleset: Ruleset) -> Applied:
    """Restrict this thread (and what it exec's and forks from now on) to `ruleset`, for good;
    it also drops DROPPED_CAPS, without which Landlock's ptrace rule does not hold for root.

    Call it in a single-threaded process: other threads stay unrestricted. Raises
    LandlockError when Landlock is unavailable or any call fails.
    """
    abi, unavailable = _probe()
    if unavailable is not None:
        raise unavailable
    # First: required to restrict oneself without CAP_SYS_ADMIN, and it keeps a setuid binary
    # run later from gaining what the ruleset takes away.
    if _prctl(PR_SET_NO_NEW_PRIVS, 1):
        raise LandlockError("prctl(PR_SET_NO_NEW_PRIVS)", ctypes.get_errno())
    drop_capabilities()
    handled = handled_for_abi(abi)
    attr = _RulesetAttr(handled.fs, handled.net, handled.scoped if ruleset.scope else 0)
    ruleset_fd = _syscall(
        "landlock_create_ruleset",
        SYS_CREATE_RULESET,
        ctypes.byref(attr),
        ctypes.c_size_t(_attr_size(abi)),
        ctypes.c_uint32(0),
    )
    skipped: list[str] = []
    try:
        for paths, rights in (
            (ruleset.read, READ_RIGHTS),
            (ruleset.write, WRITE_RIGHTS),
            (ruleset.devices, DEVICE_RIGHTS),
        ):
            for path in paths:
                if not _add_path(ruleset_fd, path, rights, handled.fs):
                    skipped.append(path)
        if handled.net:
            for ports, right in (
                (ruleset.bind_tcp, NET_BIND_TCP),
                (ruleset.connect_tcp, NET_CONNECT_TCP),
            ):
                for port in ports:
                    net = _NetPortAttr(allowed_access=right, port=port)
                    _syscall(
                        "landlock_add_rule",
                        SYS_ADD_RULE,
                        ctypes.c_int(ruleset_fd),
                        ctypes.c_int(RULE_NET_PORT),
                        ctypes.byref(net),
                        ctypes.c_uint32(0),
                        where=f"tcp port {port}",
                    )
        _syscall(
            "landlock_restrict_self",
            SYS_RESTRICT_SELF,
            ctypes.c_int(ruleset_fd),
            ctypes.c_uint32(0),
        )
    finally:
        os.close(ruleset_fd)
    return Applied(
        abi=abi,
        fs=True,
        net=bool(handled.net),
        scope=bool(handled.scoped) and ruleset.scope,
        skipped=tuple(skipped),
    )


USAGE = "usage: landlock.py --ruleset JSON -- PROGRAM [ARGS...]"


def main(argv: list[str]) -> int:
    """Apply the ruleset, then exec the program; 126 (and one stderr line) if either fails."""
    if len(argv) < 4 or argv[0] != "--ruleset" or argv[2] != "--":
        print(f"landlock: {USAGE}", file=sys.stderr)
        return 126
    try:
        ruleset = Ruleset.from_json(argv[1])
    except ValueError as e:
        print(f"landlock: bad --ruleset, program not run: {e}", file=sys.stderr)
        return 126
    try:
        restrict_self(ruleset)
    except Exception as e:  # whatever failed, the program must not run uncontained
        print(f"landlock: not applied, program not run: {e}", file=sys.stderr)
        return 126
    command = argv[3:]
    try:
        os.execvp(command[0], command)
    except OSError as e:
        print(f"landlock: cannot run {command[0]}: {e.strerror}", file=sys.stderr)
        return 127 if isinstance(e, FileNotFoundError) else 126
    return 126  # not reached: execvp returns only by raising


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
