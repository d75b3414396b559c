"""`build sageattention`: the locked source built into exactly one wheel, with the pinned env.

The source is a tiny package in a local git repository whose build backend (in-tree, so no
setuptools is needed offline) writes the environment and interpreter it saw into the wheel;
reading that back proves the arch list, the parallelism and --no-build-isolation reached it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from bake.errors import BuildError, UnlockedError, VerificationError
from bake.locks.nodes import GitPin, GitSource, NodeEntry, NodesLock, write_nodes_lock
from bake.nodes.resolve import update_nodes
from bake.nodes.sagebuild import build_env, build_wheel, cpu_count

BACKEND = """\
import json, os, sys, zipfile

NAME, VERSION = "sageattention", "2.2.0"
KEYS = ("TORCH_CUDA_ARCH_LIST", "MAX_JOBS", "EXT_PARALLEL", "NVCC_APPEND_FLAGS")


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    if os.environ.get("FAKE_BUILD_FAIL"):
        sys.exit("nvcc fatal: Unsupported gpu architecture")
    seen = {k: os.environ.get(k) for k in KEYS}
    seen["prefix"] = sys.prefix
    seen["cwd_has_readme"] = os.path.exists("README.md")
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    info = f"{NAME}-{VERSION}.dist-info"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as whl:
        whl.writestr("sageattention/__init__.py", "")
        whl.writestr("sageattention/build_env.json", json.dumps(seen))
        whl.writestr(f"{info}/METADATA",
                     f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n")
        whl.writestr(f"{info}/WHEEL",
                     "Wheel-Version: 1.0\\nGenerator: fake\\nRoot-Is-Purelib: true\\n"
                     "Tag: py3-none-any\\n")
        whl.writestr(f"{info}/RECORD", "")
    return name
"""

PYPROJECT = """\
[build-system]
requires = []
build-backend = "fake_backend"
backend-path = ["."]
"""


@pytest.fixture
def sage(world, tmp_path):
    repo = world.repo("SageAttention")
    repo.commit(
        {"pyproject.toml": PYPROJECT, "fake_backend.py": BACKEND, "README.md": "# SageAttention\n"},
        "v2.2.0",
    )
    repo.tag("v2.2.0")
    repo.commit({"README.md": "# newer main\n"}, "main moves on")
    comfy = world.repo("ComfyUI")
    comfy.commit({"main.py": "x\n"})
    lock = tmp_path / "nodes.lock.yaml"
    entry = NodeEntry(
        "sageattention",
        "source_build",
        GitSource(repo.url, "v2.2.0"),
        env={"TORCH_CUDA_ARCH_LIST": "12.0"},
    )
    write_nodes_lock(
        NodesLock(
            NodeEntry("comfyui", "comfyui", GitSource(comfy.url, "main")),
            {},
            {"sageattention": entry},
        ),
        lock,
    )
    assert update_nodes(lock, out=lambda _: None) == 0
    return lock


def _entry(lock: Path) -> NodeEntry:
    from bake.locks.nodes import load_nodes_lock

    return load_nodes_lock(lock).source_builds["sageattention"]


def _seen(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as whl:
        return json.loads(whl.read("sageattention/build_env.json"))


def test_build_with_uv_gets_the_pinned_env_in_this_interpreter(sage, tmp_path, monkeypatch):
    monkeypatch.delenv("MAX_JOBS", raising=False)
    monkeypatch.delenv("EXT_PARALLEL", raising=False)
    out = tmp_path / "wheels"
    lines: list[str] = []
    wheel = build_wheel(_entry(sage), out, frontend="uv", log=lines.append)

    assert [p.name for p in out.iterdir()] == ["sageattention-2.2.0-py3-none-any.whl"]
    seen = _seen(wheel)
    cpus = cpu_count()
    assert seen["TORCH_CUDA_ARCH_LIST"] == "12.0"
    assert seen["MAX_JOBS"] == str(cpus) and seen["EXT_PARALLEL"] == str(min(4, cpus))
    assert seen["prefix"] == sys.prefix  # no isolated env: torch of this interpreter is seen
    assert seen["cwd_has_readme"]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert lines[-1] == f"{wheel.name} sha256={digest}"


@pytest.fixture(scope="module")
def pip_python(tmp_path_factory) -> str:
    """An interpreter with pip (the stdlib's bundled copy: no download)."""
    env_dir = tmp_path_factory.mktemp("pipenv") / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    return str(env_dir / "bin" / "python")


def test_build_with_pip_wheel_and_environment_overrides(sage, tmp_path, monkeypatch, pip_python):
    monkeypatch.setenv("MAX_JOBS", "3")  # a maintainer's own setting wins over the CPU count
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.9")  # ... but never over the lock's env
    monkeypatch.setenv("NVCC_APPEND_FLAGS", "--threads 2")
    wheel = build_wheel(
        _entry(sage), tmp_path / "wheels", python=pip_python, frontend="auto", log=lambda _: None
    )
    seen = _seen(wheel)
    assert seen["prefix"] == str(Path(pip_python).parent.parent)
    assert seen["TORCH_CUDA_ARCH_LIST"] == "12.0"
    assert seen["MAX_JOBS"] == "3" and seen["NVCC_APPEND_FLAGS"] == "--threads 2"


def test_older_wheel_is_replaced_and_foreign_wheels_refused(sage, tmp_path):
    out = tmp_path / "wheels"
    out.mkdir()
    (out / "sageattention-2.1.1-cp312-cp312-linux_x86_64.whl").write_bytes(b"old")
    build_wheel(_entry(sage), out, frontend="uv", log=lambda _: None)
    assert [p.name for p in out.iterdir()] == ["sageattention-2.2.0-py3-none-any.whl"]

    (out / "torch-2.10.0-cp312-none-any.whl").write_bytes(b"x")
    with pytest.raises(
        BuildError,
        match=r"already holds other wheels "
        r"\(torch-2.10.0-cp312-none-any.whl\); give --out",
    ):
        build_wheel(_entry(sage), out, frontend="uv", log=lambda _: None)


def test_failed_build_leaves_out_untouched(sage, tmp_path, monkeypatch):
    out = tmp_path / "wheels"
    build_wheel(_entry(sage), out, frontend="uv", log=lambda _: None)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setenv("FAKE_BUILD_FAIL", "1")
    rev = _entry(sage).locked.rev
    with pytest.raises(
        BuildError,
        match=rf"source_builds.sageattention: the wheel build of "
        rf"{rev[:12]} failed \(exit \d+\); its output is above",
    ):
        build_wheel(_entry(sage), out, frontend="uv", log=lambda _: None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_unlocked_and_tampered_sources_are_refused(sage, tmp_path):
    import dataclasses

    entry = _entry(sage)
    with pytest.raises(UnlockedError, match=r"source_builds\.sageattention: not locked"):
        build_wheel(dataclasses.replace(entry, locked=None), tmp_path / "w", log=lambda _: None)
    forged = dataclasses.replace(
        entry, locked=GitPin(entry.locked.rev, entry.locked.date, "tree2-blake3:" + "2" * 64)
    )
    with pytest.raises(VerificationError, match="refusing to build other source"):
        build_wheel(forged, tmp_path / "w", frontend="uv", log=lambda _: None)
    assert not list((tmp_path / "w").glob("*.whl"))


def test_build_env_is_pure():
    entry = NodeEntry(
        "sageattention", "source_build", GitSource("u", "r"), env={"TORCH_CUDA_ARCH_LIST": "12.0"}
    )
    env = build_env(entry, {"PATH": "/bin", "TORCH_CUDA_ARCH_LIST": "9.0"}, cpus=16)
    assert env == {
        "PATH": "/bin",
        "TORCH_CUDA_ARCH_LIST": "12.0",
        "MAX_JOBS": "16",
        "EXT_PARALLEL": "4",
    }
    assert build_env(entry, {}, cpus=1)["EXT_PARALLEL"] == "1"


def test_cli_builds_one_wheel(sage, tmp_path, world):
    out = tmp_path / "wheels"
    env = world.env()
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bake",
            "build",
            "sageattention",
            "--out",
            str(out),
            "--lock",
            str(sage),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("*.whl")
    assert f"{wheel.name} sha256={hashlib.sha256(wheel.read_bytes()).hexdigest()}" in done.stdout


def test_a_source_with_a_link_out_of_it_is_not_built(world, tmp_path):
    # update-locks refuses such a commit; a lock written by hand (its rev and tree hash right:
    # the tree hash pins the link's text, not what it reaches) must not get it built either,
    # or setup.py would read a file of the build machine (or package it) as its own.
    from bake.locks.nodes import GitPin
    from bake.nodes import git

    secret = tmp_path / "build-machine-secret.txt"
    secret.write_text("not for the wheel\n")
    repo = world.repo("SageAttention")
    rev = repo.commit(
        {"pyproject.toml": PYPROJECT, "fake_backend.py": BACKEND, "README.md": "# x\n"},
        "v2.2.0",
        symlinks={"csrc/notes.txt": str(secret)},
    )
    checkout = tmp_path / "checkout"
    git.fetch_checkout(checkout, repo.url, rev, entry="sageattention")
    tree = git.worktree_tree_hash(checkout, entry="sageattention")
    entry = NodeEntry(
        "sageattention",
        "source_build",
        GitSource(repo.url, "v2.2.0"),
        locked=GitPin(rev, "2026-01-01T00:00:00+00:00", tree),
    )
    with pytest.raises(VerificationError) as info:
        build_wheel(entry, tmp_path / "w", frontend="uv", log=lambda _: None)
    assert f"csrc/notes.txt -> {secret} (an absolute link)" in str(info.value)
    assert not list((tmp_path / "w").glob("*.whl"))
