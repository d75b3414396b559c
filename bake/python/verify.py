"""`python -m bake python verify`: is a virtual environment exactly what requirements.lock installs?

The environment is read from outside, as files (bake.python.record): its distributions are its
`.dist-info` folders, and every file under its prefix must be accounted for by the RECORD of a
distribution the lock pins at that version (or of an allowed extra), with the digest RECORD
gives; byte-code must be the compile of such a file; anything else is named. Nothing the
environment holds is run for that verdict, and the interpreter running this check may be
another one: the image runs `python3.12 -E -s -m bake python verify --prefix /opt/venv` with the
system's Python, so no `.pth` or `sitecustomize` of the venv is in the process that judges it.

Comparing names and versions with the lock is a pure function (`compare`), so each kind of
drift is tested without building environments.

Only after the files passed, torch is imported by the environment's own interpreter (a child,
`python -I`), to ask what cannot be read from files: `torch.version.cuda` and the compiled arch
list from `torch._C._cuda_getArchFlags()` (what `torch.cuda.get_arch_list()` reads), which a
CUDA build answers without a GPU or driver: a build container proves the image's torch carries
sm_120 kernels before any RTX 5090 sees it. That answer is torch's own, run from files that
were just verified; it decides only the CUDA and arch lines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import Marker, default_environment
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from bake.errors import PythonEnvError
from bake.locks.lockfile import REQUIREMENTS_LOCK, default_lock
from bake.locks.requirements import RequirementsLock, load_requirements_lock
from bake.python.record import (
    Dist,
    Report,
    Venv,
    account,
    read_venv,
    rewritten_records,
    scan_venv,
    venv_of_python,
)

# Allowed beside the lock without asking: our own project (installed with --no-deps), the
# SageAttention wheel built in the image, and pip, which `python -m venv` puts in every venv.
ALWAYS_ALLOWED = ("comfy-bake", "sageattention", "pip")

DEFAULT_CUDA = "12.8"
REQUIRED_ARCH = "sm_120"  # RTX 5090 (Blackwell consumer); sm_120a kernels run there too

# Runs inside the environment being checked, once its files are verified: torch's answers to
# the two questions no file holds. Prints one JSON object.
_TORCH_PROBE = r"""
import json
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
print(json.dumps(torch))
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


@dataclass
class Verdict:
    """What `check_environment` found: one line per problem, and what passed."""

    problems: list[str]
    environment: Environment
    report: Report
    venv: Venv


def venv_markers(venv: Venv) -> dict[str, str]:
    """PEP 508 marker values of the venv's interpreter without running it: its version from
    pyvenv.cfg, the platform from this machine (the venv runs here)."""
    markers = dict(default_environment())
    full = re.match(r"\d+\.\d+(\.\d+)?", venv.version)
    version = full.group(0) if full else venv.version
    markers.update(
        implementation_name="cpython",
        platform_python_implementation="CPython",
        implementation_version=venv.version,
        python_full_version=version,
        python_version=venv.minor,
    )
    return markers


def probe_torch(python: str | Path) -> TorchInfo:
    """torch's CUDA version and arch list, asked of `python` in a child (`-I`)."""
    try:
        result = subprocess.run(
            [str(python), "-I", "-c", _TORCH_PROBE], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        return TorchInfo(error=f"cannot run {python}: {exc.strerror}")
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        tail = " ".join(result.stderr.strip().splitlines()[-3:])
        return TorchInfo(error=f"{python} exited {result.returncode}: {tail}")
    try:
        data = json.loads(lines[-1])
    except json.JSONDecodeError:
        return TorchInfo(error=f"{python} answered {lines[-1][:200]!r}")
    return TorchInfo(
        version=data.get("version", ""),
        cuda=data.get("cuda"),
        arch=tuple((data.get("arch") or "").split()),
        error=data.get("error"),
    )


def _resolve_prefix(python: str | None, prefix: str | Path | None) -> Path:
    if prefix is not None:
        return Path(prefix)
    return venv_of_python(python or sys.executable)


def inspect_environment(
    python: str = sys.executable, *, prefix: str | Path | None = None, torch: bool = True
) -> Environment:
    """The venv's distributions, read from its .dist-info folders (nothing is run), and, when
    torch is installed and `torch` is true, torch's answers."""
    venv = read_venv(_resolve_prefix(python, prefix))
    scan = scan_venv(venv)
    info = None
    if torch and any(d.name == "torch" for d in scan.dists):
        info = probe_torch(venv.python)
    return _environment(venv, scan.dists, info)


def _environment(venv: Venv, dists: Iterable[Dist], torch: TorchInfo | None) -> Environment:
    installed = tuple(Installed(d.name, d.version, d.folder) for d in dists)
    return Environment(venv_markers(venv), installed, torch, str(venv.prefix))


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


def wanted_pins(lock: RequirementsLock, markers: Mapping[str, str]) -> dict:
    """The pins whose marker matches the interpreter (the others are for another platform)."""
    return {
        name: pin
        for name, pin in lock.pins.items()
        if not (pin.marker and markers and not Marker(pin.marker).evaluate(dict(markers)))
    }


def compare(
    lock: RequirementsLock,
    env: Environment,
    allow_extra: Iterable[str] = (),
    lock_name: str = REQUIREMENTS_LOCK,
) -> list[str]:
    """One line per difference between `env`'s distributions and `lock` (empty when they
    match), and torch's CUDA and arch when `env` carries torch's answers."""
    problems: list[str] = []
    allowed = {canonicalize_name(n) for n in (*ALWAYS_ALLOWED, *allow_extra)}
    by_name: dict[str, list[Installed]] = {}
    for dist in env.installed:
        by_name.setdefault(dist.name, []).append(dist)

    wanted = wanted_pins(lock, env.markers)

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


def check_environment(
    lock: RequirementsLock,
    *,
    python: str | None = None,
    prefix: str | Path | None = None,
    allow_extra: Iterable[str] = (),
    lock_name: str = REQUIREMENTS_LOCK,
    jobs: int | None = None,
    torch: bool = True,
    reference: Path | None = None,
) -> Verdict:
    """The venv at `prefix` (or the one whose interpreter is `python`, else this interpreter's)
    against `lock`: distributions by name and version, then every file against the RECORDs of
    the accepted distributions, then (only when all of that passed) torch's CUDA and arch. With
    `reference` (a copy of the same environment as installed), every RECORD must be its copy's
    (see `rewritten_records`)."""
    venv = read_venv(_resolve_prefix(python, prefix))
    scan = scan_venv(venv)
    env = _environment(venv, scan.dists, None)
    wanted = wanted_pins(lock, env.markers)
    allowed = {canonicalize_name(n) for n in (*ALWAYS_ALLOWED, *allow_extra)}

    def accepted(dist: Dist) -> bool:
        if dist.name in allowed and dist.name not in wanted:
            return True
        pin = wanted.get(dist.name)
        return pin is not None and _same_version(dist.version, pin.version)

    problems = compare(lock, env, allow_extra, lock_name)
    if reference is not None:
        problems += rewritten_records(scan.dists, venv.prefix, reference)
    report = account(scan, accepted, jobs=jobs)
    problems += report.lines()
    if torch and not problems and any(d.name == "torch" and accepted(d) for d in scan.dists):
        env = _environment(venv, scan.dists, probe_torch(venv.python))
        problems += _torch_problems(env.torch, expected_cuda(lock))  # type: ignore[arg-type]
    return Verdict(problems, env, report, venv)


def verify_environment(
    lock: RequirementsLock,
    *,
    python: str | None = None,
    prefix: str | Path | None = None,
    allow_extra: Iterable[str] = (),
    jobs: int | None = None,
    reference: Path | None = None,
) -> list[str]:
    """Problem lines for the venv (see `check_environment`) against `lock` (empty: it matches)."""
    verdict = check_environment(
        lock, python=python, prefix=prefix, allow_extra=allow_extra, jobs=jobs, reference=reference
    )
    return verdict.problems


def _inside(venv: Venv) -> bool:
    """Whether this process runs from the venv it checks, with its site-packages loaded."""
    if sys.flags.no_site:
        return False
    try:
        return os.path.samefile(sys.prefix, venv.prefix)
    except OSError:
        return False


def cli(args: argparse.Namespace) -> int:
    path = default_lock(REQUIREMENTS_LOCK, args.lock)
    lock = load_requirements_lock(path)
    prefix = getattr(args, "prefix", None)
    python = getattr(args, "python", None)
    reference = getattr(args, "reference", None)
    verdict = check_environment(
        lock,
        python=python,
        prefix=prefix,
        allow_extra=args.allow_extra,
        lock_name=path.name,
        reference=reference,
    )
    if _inside(verdict.venv):
        venv = verdict.venv
        print(
            f"warning: this check runs from the environment it checks ({sys.prefix}), whose "
            "site-packages ran at this interpreter's start; for a verdict the environment "
            f"cannot influence, run a Python {venv.minor} from outside it: "
            f"python{venv.minor} -E -s -B -m bake python verify --prefix {venv.prefix}",
            file=sys.stderr,
        )
    if verdict.problems:
        raise PythonEnvError("\n".join(verdict.problems))
    env, report = verdict.environment, verdict.report
    summary = (
        f"{env.python}: {len(env.installed)} distributions match {path.name}, and every file "
        f"is theirs ({report.hashed} by their RECORDs' digests, {report.compiled} byte-code files "
        "by compiling their sources)"
    )
    if reference is not None:
        summary += f"; every RECORD is the one in {reference}"
    if env.torch is not None:
        summary += f"; torch {env.torch.version} for CUDA {env.torch.cuda} with {REQUIRED_ARCH}"
    print(summary)
    return 0
