"""The Landlock ruleset ComfyUI runs under, and whether it is applied (CONTAINMENT).

ComfyUI runs code a job can steer (see docs/worker.md, "What ComfyUI gets"). Its user keeps it
from writing its own code; this ruleset also keeps it, and everything it starts, from reading
anything but the system, its code, the models and its caches, from writing anything but its own
folders and caches, from connecting anywhere over TCP, and from signalling or reaching the
abstract unix sockets of processes outside (the worker among them). The ruleset is applied by
worker/comfy/landlock.py run as a launcher around ComfyUI's command, before its exec.
"""

from __future__ import annotations

import glob
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from worker.comfy import landlock
from worker.comfy.landlock import Ruleset
from worker.comfy.user import WRITABLE

MODES = ("required", "auto", "off")

# The system: libraries, binaries (ffmpeg, compilers), config, CUDA under /usr/local/cuda*.
# /proc and /sys: torch and the NVIDIA driver read them (CPU count, memory, PCI topology).
# Other processes' /proc entries that need ptrace rights (environ, mem, fd) stay closed by
# Landlock's ptrace rule, for root too: the launcher drops CAP_SYS_ADMIN and CAP_PERFMON, with
# which the kernel lets a process read environ and maps anyway.
SYSTEM_READ = (
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc",
    "/opt",
    "/proc",
    "/sys",
    "/run/nvidia-persistenced",
)
# Devices every program expects (ffmpeg writes to /dev/null, Python's os.urandom may read
# /dev/urandom). No /dev/tty: ComfyUI has no terminal.
SYSTEM_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
# A shared tmpfs (every process of the container sees it), where torch and CUDA keep shared
# memory (shm_open): writable as TMPDIR is, so what one job leaves there a later one can read.
SHARED_MEMORY = "/dev/shm"
# The process's own /proc folder: CUDA's driver writes there when it starts (cuInit failed with
# error 304, "OS call failed", under the ruleset without it; seen on an H100 host). The launcher
# opens "/proc/self" before it execs, so the rule holds ComfyUI's own pid folder and no other
# process's (its children, ffmpeg, get none: an NVENC encode in a child is not verified).
OWN_PROC = "/proc/self"


class ContainmentUnavailable(RuntimeError):
    """CONTAINMENT=required on a machine where Landlock cannot be applied."""


def interpreter_roots(python: str) -> list[Path]:
    """The folders an interpreter reads its standard library and packages from, found without
    running it (the launcher would otherwise run it uncontained): its venv, the venv's base
    installation (`home =` in pyvenv.cfg names its bin folder), and the real binary's prefix."""
    exe = Path(shutil.which(python) or python)  # a bare `python3` is looked up on PATH
    roots: list[Path] = []
    venv = exe.parent.parent
    cfg = venv / "pyvenv.cfg"
    if cfg.is_file():
        roots.append(venv)
        for line in cfg.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                roots.append(Path(value.strip()).parent)
    roots.append(exe.resolve().parent.parent)
    return list(dict.fromkeys(roots))


def gpu_devices(dev: Path = Path("/dev")) -> list[str]:
    """The NVIDIA and DRM device files present now: CUDA opens them read/write and drives them
    with ioctls. Listed one by one (a glob, not /dev), so no other device is opened."""
    found = [*glob.glob(str(dev / "nvidia*")), *glob.glob(str(dev / "nvidia-caps" / "*"))]
    found += glob.glob(str(dev / "dri" / "*"))
    return sorted(p for p in found if not Path(p).is_dir())


def comfy_ruleset(
    *,
    comfyui_dir: Path,
    python: str,
    read_extra: Iterable[Path],
    write_extra: Iterable[Path],
    port: int,
) -> Ruleset:
    """ComfyUI's ruleset. The caller adds what depends on the configuration: `read_extra` the
    model roots, Hub cache roots and the generated extra-model-paths folder; `write_extra` the
    HOME caches, TMPDIR and the single node files rewritten at start (user.NODE_WRITABLE)."""
    read = [*SYSTEM_READ, str(comfyui_dir), *map(str, interpreter_roots(python))]
    read += map(str, read_extra)
    write = [str(comfyui_dir / name) for name in WRITABLE]
    write += [*map(str, write_extra), SHARED_MEMORY, OWN_PROC]
    return Ruleset(
        read=tuple(dict.fromkeys(read)),
        write=tuple(dict.fromkeys(write)),
        devices=(*SYSTEM_DEVICES, *gpu_devices()),
        bind_tcp=(port,),
        connect_tcp=(),  # no outgoing TCP at all, ComfyUI's own port included
        scope=True,
    )


@dataclass(frozen=True)
class Decision:
    """Whether ComfyUI starts contained, and what the log and every job say about it."""

    mode: str
    abi: int
    layers: landlock.Applied | None  # the layers the launcher puts in force; None: not applied
    reason: str | None = None  # why not applied (mode off, or Landlock unavailable)

    @property
    def applied(self) -> bool:
        return self.layers is not None


def decide(mode: str) -> Decision:
    """Apply the ruleset or not, from CONTAINMENT and this kernel. `required` without Landlock
    raises ContainmentUnavailable: the boot stops rather than run ComfyUI uncontained."""
    if mode not in MODES:
        raise ValueError(f"CONTAINMENT={mode}: expected one of {', '.join(MODES)}")
    if mode == "off":
        return Decision(mode, 0, None, "CONTAINMENT=off")
    abi = landlock.abi_version()
    if abi >= 1:
        return Decision(mode, abi, landlock.Applied.expected(abi))
    reason = landlock.unavailable_reason() or "Landlock ABI 0"
    if mode == "required":
        raise ContainmentUnavailable(
            f"CONTAINMENT=required, but Landlock is unavailable: {reason}. ComfyUI needs a "
            "kernel with Landlock enabled (`landlock` listed in /sys/kernel/security/lsm; "
            "Linux 6.12 or newer for every layer) and a container runtime whose seccomp "
            "profile allows the landlock_create_ruleset, landlock_add_rule and "
            "landlock_restrict_self system calls; or set CONTAINMENT=auto (run uncontained "
            "where Landlock is missing, and say so) or CONTAINMENT=off"
        )
    return Decision(mode, 0, None, f"landlock unavailable: {reason}")


def launcher_command(
    ruleset: Ruleset, command: list[str], *, python: str = sys.executable
) -> list[str]:
    """`command` behind the launcher, which applies `ruleset` and then exec's it. -I (isolated:
    implies -E and -s, and leaves worker/comfy/ off sys.path) keeps the launcher from reading
    PYTHON* variables, user site-packages or anything next to it: stdlib only, nothing
    writable needed."""
    return [python, "-I", landlock.__file__, "--ruleset", ruleset.to_json(), "--", *command]


def describe(decision: Decision, user_name: str | None) -> str:
    """The line the boot log and every job's output carry, e.g. `landlock abi 7 (fs, net,
    scope), user comfy` or `none (CONTAINMENT=off), same user as the worker`."""
    who = f"user {user_name}" if user_name else "same user as the worker"
    what = decision.layers.describe() if decision.layers else f"none ({decision.reason})"
    return f"{what}, {who}"
