"""Installing from requirements.lock alone is hash-checked: the documented commands install
the whole environment from the lock, and a tampered hash stops them before anything lands.
`bake python verify` then reports drift in that environment, precisely."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.wheels import Wheel, fake_torch, find_links

from bake import cli
from bake.locks.requirements import load_requirements_lock
from bake.python.compile import find_uv
from bake.python.verify import verify_environment

LOCKED = {
    "alpha": "1.0",
    "beta": "2.0",
    "nodelib": "2.0",
    "nvidia-cuda-runtime-cu12": "12.8.90",
    "opencv-contrib-python-headless": "4.0",
    "torch": "2.0",
    "triton": "3.0",
}


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)


def uv_venv(path: Path) -> Path:
    result = run([find_uv(), "venv", "--no-config", "--python", sys.executable, str(path)])
    assert result.returncode == 0, result.stderr
    return path / "bin" / "python"


def uv_sync(lock: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    """The documented install command, run where the lock lives, for the venv in VIRTUAL_ENV."""
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    return run([find_uv(), "pip", "sync", "--require-hashes", lock.name], cwd=lock.parent, env=env)


def installed(python: Path) -> dict[str, str]:
    result = run([find_uv(), "pip", "list", "--python", str(python), "--format", "freeze"])
    return dict(line.split("==") for line in result.stdout.split())


def tamper(lock: Path, name: str) -> None:
    """Replace the first hash of `name`'s pin with another valid-looking one."""
    text = lock.read_text()
    start = text.index(f"\n{name}==")
    match = re.compile(r"sha256:([0-9a-f]{64})").search(text, start)
    assert match
    lock.write_text(text[: match.start(1)] + "0" * 64 + text[match.end(1) :])


def test_uv_sync_installs_the_whole_lock_and_verify_agrees(compiled, tmp_path):
    python = uv_venv(tmp_path / "venv")
    result = uv_sync(compiled.lock, tmp_path / "venv")
    assert result.returncode == 0, result.stderr
    assert installed(python) == LOCKED
    lock = load_requirements_lock(compiled.lock)
    assert verify_environment(lock, python=str(python)) == []


def test_uv_sync_refuses_a_tampered_hash_and_installs_nothing(compiled, tmp_path):
    python = uv_venv(tmp_path / "venv")
    tamper(compiled.lock, "beta")
    result = uv_sync(compiled.lock, tmp_path / "venv")
    assert result.returncode != 0
    assert "Hash mismatch for `beta==2.0`" in result.stderr
    assert installed(python) == {}


def test_pip_require_hashes_installs_the_lock_and_refuses_tampering(compiled, tmp_path):
    # `python -m venv` seeds pip from the interpreter's bundled wheel: no network needed.
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-deps",
        "--require-hashes",
        "-r",
    ]
    good = compiled.lock.read_text()
    tamper(compiled.lock, "torch")
    refused = run([*pip, str(compiled.lock)])
    assert refused.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in refused.stdout + refused.stderr
    assert "torch" not in installed(venv / "bin" / "python")

    compiled.lock.write_text(good)
    result = run([*pip, str(compiled.lock)])
    assert result.returncode == 0, result.stdout + result.stderr
    lock = load_requirements_lock(compiled.lock)
    # pip (and setuptools on older Pythons) come with `python -m venv`; pip is always allowed.
    extra = [n for n in installed(venv / "bin" / "python") if n not in LOCKED and n != "pip"]
    assert verify_environment(lock, python=str(venv / "bin" / "python"), allow_extra=extra) == []


@pytest.fixture
def synced(compiled, tmp_path):
    python = uv_venv(tmp_path / "venv")
    assert uv_sync(compiled.lock, tmp_path / "venv").returncode == 0
    return compiled, python


def uv_pip(python: Path, *args: str, links: Path | None = None) -> None:
    extra = ["--find-links", str(links), "--no-index"] if links else []
    result = run([find_uv(), "pip", *args, "--no-config", "--python", str(python), *extra])
    assert result.returncode == 0, result.stderr


def test_verify_names_a_missing_and_a_wrong_version_distribution(synced, tmp_path):
    world, python = synced
    links = find_links(tmp_path / "links", [Wheel("beta", "1.0"), Wheel("stray", "1.0")])
    uv_pip(python, "uninstall", "alpha")
    uv_pip(python, "install", "--no-deps", "beta==1.0", links=links)
    uv_pip(python, "install", "--no-deps", "stray==1.0", links=links)
    lock = load_requirements_lock(world.lock)
    line = lock.pins["alpha"].line
    problems = verify_environment(lock, python=str(python))
    assert problems[:3] == [
        f"alpha==1.0: not installed (requirements.lock line {line}); install the environment "
        "from requirements.lock",
        "beta: requirements.lock pins 2.0, installed is 1.0",
        "stray 1.0: installed, but not in requirements.lock; add it to requirements.in, "
        "uninstall it, or pass --allow-extra stray",
    ]
    # and every file the unlocked versions brought, named
    site = "lib/python{}.{}/site-packages".format(*sys.version_info[:2])
    assert (
        f"{site}/beta/__init__.py: unlocked: a file of beta 1.0, which the lock does not "
        "accept" in problems
    )
    assert (
        f"{site}/stray/__init__.py: unlocked: a file of stray 1.0, which the lock does not "
        "accept" in problems
    )
    allowed = verify_environment(lock, python=str(python), allow_extra=["stray"])
    assert [p for p in allowed if "stray" in p] == []
    assert len(allowed) == len(problems) - len([p for p in problems if "stray" in p])


@pytest.mark.parametrize(
    ("torch", "problem"),
    [
        (
            fake_torch("2.0", cuda=None),
            "torch 2.0: a CPU-only build (torch.version.cuda is None), expected a CUDA 12.8 build; "
            "install torch from the lock's index",
        ),
        (fake_torch("2.0", cuda="12.4"), "torch 2.0: built for CUDA 12.4, expected CUDA 12.8"),
        (
            fake_torch("2.0", arch_flags="sm_80 sm_86 sm_90"),
            "torch 2.0: compiled for sm_80 sm_86 sm_90; expected sm_120 (RTX 5090) in "
            "torch._C._cuda_getArchFlags()",
        ),
    ],
    ids=["cpu-only", "cuda-12.4", "no-sm_120"],
)
def test_verify_checks_torch_cuda_and_arch_without_a_gpu(synced, tmp_path, torch, problem):
    world, python = synced
    links = find_links(tmp_path / "links", [torch])
    uv_pip(python, "install", "--no-deps", "--reinstall", "torch==2.0", links=links)
    lock = load_requirements_lock(world.lock)
    assert verify_environment(lock, python=str(python)) == [problem]


def test_python_verify_command_prints_one_error_line_per_difference(synced, monkeypatch, capsys):
    world, python = synced
    monkeypatch.setattr(sys, "executable", str(python))
    assert cli.main(["python", "verify", "--lock", str(world.lock)]) == 0
    assert capsys.readouterr().out == (
        f"{python.parent.parent}: 7 distributions match requirements.lock, and every file is "
        "theirs (45 by their RECORDs' digests, 0 byte-code files by compiling their sources); "
        "torch 2.0 for CUDA 12.8 with sm_120\n"
    )

    uv_pip(python, "uninstall", "beta", "triton")
    assert cli.main(["python", "verify", "--lock", str(world.lock)]) == 1
    lock = load_requirements_lock(world.lock)
    assert capsys.readouterr().err.splitlines() == [
        f"error: beta==2.0: not installed (requirements.lock line {lock.pins['beta'].line}); "
        "install the environment from requirements.lock",
        f"error: triton==3.0: not installed (requirements.lock line "
        f"{lock.pins['triton'].line}); install the environment from requirements.lock",
    ]
