"""`python -m bake python verify`: does an interpreter's environment match requirements.lock?

The interpreter is asked, in a child process, for its installed distributions, its PEP 508
marker values and, when torch imports, torch's CUDA version and compiled arch list. Comparing
that with the lock is a pure function (`compare`), so each kind of drift is tested without
building environments.

The arch list comes from `torch._C._cuda_getArchFlags()` (what `torch.cuda.get_arch_list()`
reads), which a CUDA build answers without a GPU or driver: a build container can prove the
image's torch carries sm_120 kernels before any RTX 5090 sees it.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from packaging.markers import Marker
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from bake.errors import PythonEnvError
from bake.locks.lockfile import REQUIREMENTS_LOCK, default_lock
from bake.locks.requirements import RequirementsLock, load_requirements_lock

# Allowed beside the lock without asking: our own project (installed with --no-deps), the
# SageAttention wheel built in the image, and pip, which `python -m venv` puts in every venv.
ALWAYS_ALLOWED = ("comfy-bake", "sageattention", "pip")

DEFAULT_CUDA = "12.8"
REQUIRED_ARCH = "sm_120"  # RTX 5090 (Blackwell consumer); sm_120a kernels run there too

# Runs inside the interpreter being checked, with nothing but the standard library (and torch
# when it is there). Prints one JSON object.
_PROBE = r"""
import json, os, platform, sys
from importlib import metadata

def markers():
    impl = sys.implementation
    v = impl.version
    iver = "{0.major}.{0.minor}.{0.micro}".format(v)
    if v.releaselevel != "final":
        iver += v.releaselevel[0] + str(v.serial)
    return {
        "implementation_name": impl.name,
        "implementation_version": iver,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_python_implementation": platform.python_implementation(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }

def name_version(dist):
    # A .dist-info folder's name carries the name and version (PEP 427), which spares parsing
    # every METADATA file; anything else (.egg-info, odd layouts) is read the long way.
    path = getattr(dist, "_path", None)
    folder = getattr(path, "name", "")
    if folder.endswith(".dist-info") and folder.count("-") == 1:
        name, version = folder[: -len(".dist-info")].split("-")
        return name, version.replace("_", "-"), str(path)
    return dist.metadata["Name"], dist.version, str(path or "")

dists = []
for dist in metadata.distributions():
    name, version, where = name_version(dist)
    if name:
        dists.append([name, version, where])

torch = None
if any(d[0].lower() == "torch" for d in dists):
    try:
        import torch as t
        flags = None
        getter = getattr(t._C, "_cuda_getArchFlags", None)
        if getter is not None:
            flags = getter()
        if not flags and hasattr(t, "cuda"):
            flags = " ".join(t.cuda.get_arch_list())
        torch = {"version": str(t.__version__), "cuda": t.version.cuda, "arch": flags or ""}
    except Exception as exc:
        torch = {"error": "{}: {}".format(type(exc).__name__, exc)}

print(json.dumps({"python": sys.executable, "markers": markers(), "dists": dists,
                  "torch": torch}))
"""


@dataclass(frozen=True)
class Installed:
    name: str  # canonical
    version: str
    path: str = ""


@dataclass(frozen=True)
class TorchInfo:
    version: str = ""
    cuda: str | None = None
    arch: tuple[str, ...] = ()
    error: str | None = None  # torch is installed but does not import


@dataclass(frozen=True)
class Environment:
    markers: Mapping[str, str] = field(default_factory=dict)
    installed: tuple[Installed, ...] = ()
    torch: TorchInfo | None = None
    python: str = ""


def inspect_environment(python: str = sys.executable) -> Environment:
    """Ask `python` what it has installed (a child process: `python` may be another venv)."""
    try:
        result = subprocess.run(
            [python, "-I", "-c", _PROBE], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise PythonEnvError(f"cannot run {python}: {exc.strerror}") from None
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise PythonEnvError(
            f"{python} failed to list its distributions (exit {result.returncode}):\n{tail}"
        )
    data = json.loads(result.stdout.strip().splitlines()[-1])
    torch = data.get("torch")
    info = None
    if torch is not None:
        info = TorchInfo(
            version=torch.get("version", ""),
            cuda=torch.get("cuda"),
            arch=tuple((torch.get("arch") or "").split()),
            error=torch.get("error"),
        )
    installed = tuple(Installed(canonicalize_name(n), v, p) for n, v, p in data["dists"])
    return Environment(data["markers"], installed, info, data.get("python", python))


def expected_cuda(lock: RequirementsLock) -> str:
    """The CUDA release the lock's torch is built for: a `+cuXYZ` local version on torch
    (PyTorch's index), else the nvidia CUDA runtime wheel torch depends on (PyPI), else 12.8."""
    torch = lock.pins.get("torch")
    if torch is not None and (match := re.search(r"\+cu(\d+)(\d)$", torch.version)):
        return f"{match.group(1)}.{match.group(2)}"
    for name in ("nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu13", "nvidia-cuda-runtime"):
        pin = lock.pins.get(name)
        if pin is not None:
            parts = pin.version.split(".")
            if len(parts) >= 2:
                return f"{parts[0]}.{parts[1]}"
    return DEFAULT_CUDA


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def compare(
    lock: RequirementsLock,
    env: Environment,
    allow_extra: Iterable[str] = (),
    lock_name: str = REQUIREMENTS_LOCK,
) -> list[str]:
    """One line per difference between `env` and `lock` (empty when they match)."""
    problems: list[str] = []
    allowed = {canonicalize_name(n) for n in (*ALWAYS_ALLOWED, *allow_extra)}
    by_name: dict[str, list[Installed]] = {}
    for dist in env.installed:
        by_name.setdefault(dist.name, []).append(dist)

    wanted = {}
    for name, pin in lock.pins.items():
        if pin.marker and env.markers and not Marker(pin.marker).evaluate(dict(env.markers)):
            continue  # pinned for another platform or Python
        wanted[name] = pin

    for name, pin in sorted(wanted.items()):
        found = by_name.get(name)
        if not found:
            problems.append(
                f"{pin}: not installed ({lock_name} line {pin.line}); install the "
                f"environment from {lock_name}"
            )
            continue
        versions = sorted({d.version for d in found})
        if len(found) > 1:
            where = ", ".join(f"{d.version} at {d.path}" for d in found)
            problems.append(
                f"{name}: installed {len(found)} times ({where}); {lock_name} pins {pin.version}"
            )
        elif not _same_version(versions[0], pin.version):
            problems.append(f"{name}: {lock_name} pins {pin.version}, installed is {versions[0]}")

    for name in sorted(set(by_name) - set(wanted)):
        if name in allowed:
            continue
        version = by_name[name][0].version
        problems.append(
            f"{name} {version}: installed, but not in {lock_name}; add it to "
            f"requirements.in, uninstall it, or pass --allow-extra {name}"
        )

    if env.torch is not None:
        problems += _torch_problems(env.torch, expected_cuda(lock))
    return problems


def _torch_problems(torch: TorchInfo, cuda: str) -> list[str]:
    if torch.error:
        return [f"torch is installed but does not import: {torch.error}"]
    label = f"torch {torch.version}"
    if not torch.cuda:
        return [
            f"{label}: a CPU-only build (torch.version.cuda is None), expected a CUDA {cuda} "
            "build; install torch from the lock's index"
        ]
    problems = []
    if torch.cuda != cuda and not torch.cuda.startswith(cuda + "."):
        problems.append(f"{label}: built for CUDA {torch.cuda}, expected CUDA {cuda}")
    if not any(a in (REQUIRED_ARCH, REQUIRED_ARCH + "a") for a in torch.arch):
        found = " ".join(torch.arch) or "nothing"
        problems.append(
            f"{label}: compiled for {found}; expected {REQUIRED_ARCH} (RTX 5090) in "
            "torch._C._cuda_getArchFlags()"
        )
    return problems


def verify_environment(
    lock: RequirementsLock,
    *,
    python: str = sys.executable,
    allow_extra: Iterable[str] = (),
) -> list[str]:
    """Problem lines for `python`'s environment against `lock` (empty: it matches)."""
    return compare(lock, inspect_environment(python), allow_extra)


def cli(args: argparse.Namespace) -> int:
    path = default_lock(REQUIREMENTS_LOCK, args.lock)
    lock = load_requirements_lock(path)
    env = inspect_environment(sys.executable)
    problems = compare(lock, env, args.allow_extra, path.name)
    if problems:
        raise PythonEnvError("\n".join(problems))
    summary = f"{env.python}: {len(lock.pins)} distributions match {path.name}"
    if env.torch is not None:
        summary += f"; torch {env.torch.version} for CUDA {env.torch.cuda} with {REQUIRED_ARCH}"
    print(summary)
    return 0
