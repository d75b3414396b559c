"""Run a program where Landlock's system calls fail, as under a container runtime's seccomp
profile that does not know them: `python no_landlock.py [--errno EPERM] -- PROGRAM ARGS...`.

Installs a real seccomp BPF filter (x86_64 only) that answers landlock_create_ruleset,
landlock_add_rule and landlock_restrict_self (444, 445, 446) with ENOSYS, or the errno given,
and lets every other call through; then exec's the program, which inherits the filter.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
AUDIT_ARCH_X86_64 = 0xC000003E
# classic BPF opcodes
BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
BPF_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K
# offsets in struct seccomp_data {int nr; __u32 arch; ...}
NR_OFFSET = 0
ARCH_OFFSET = 4
LANDLOCK_SYSCALLS = (444, 445, 446)


class SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter)))


def program(err: int) -> list[SockFilter]:
    """Jump offsets count the instructions skipped after the current one."""
    n = len(LANDLOCK_SYSCALLS)
    insns = [
        SockFilter(BPF_LD_W_ABS, 0, 0, ARCH_OFFSET),
        SockFilter(BPF_JEQ_K, 0, n + 1, AUDIT_ARCH_X86_64),  # another arch: to ALLOW
        SockFilter(BPF_LD_W_ABS, 0, 0, NR_OFFSET),
    ]
    for i, nr in enumerate(LANDLOCK_SYSCALLS):
        insns.append(SockFilter(BPF_JEQ_K, n - i, 0, nr))  # match: to ERRNO
    insns.append(SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    insns.append(SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | err))
    return insns


def main(argv: list[str]) -> int:
    err = errno.ENOSYS
    if argv[:1] == ["--errno"]:
        err = getattr(errno, argv[1])
        argv = argv[2:]
    if argv[:1] != ["--"] or len(argv) < 2:
        print("usage: no_landlock.py [--errno NAME] -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    if platform.machine() != "x86_64":
        print(f"no_landlock.py: x86_64 only, not {platform.machine()}", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    insns = program(err)
    filters = (SockFilter * len(insns))(*insns)
    prog = SockFprog(len(insns), filters)
    ulong = ctypes.c_ulong
    if libc.prctl(PR_SET_NO_NEW_PRIVS, ulong(1), ulong(0), ulong(0), ulong(0)):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(
        PR_SET_SECCOMP, ulong(SECCOMP_MODE_FILTER), ctypes.byref(prog), ulong(0), ulong(0)
    ):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
    os.execvp(argv[1], argv[1:])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
