"""The development environment is pinned too: the build backend `uv sync` builds this project
with, and the uv that scripts/bootstrap runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from bake.locks.requirements import load_requirements_lock

ROOT = Path(__file__).resolve().parents[1]
PINNED_UV = "0.13.9"  # scripts/uv-bootstrap.txt

# A uv that says which version it is and records what it was asked to do.
FAKE_UV = """#!/bin/sh
if [ "$1" = --version ]; then echo "uv {version} (x86_64-unknown-linux-gnu)"; exit 0; fi
echo "{name} $*" >> "$UV_LOG"
"""


def test_the_build_backend_is_one_exact_version_in_the_dev_env_and_the_image():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [requires] = project["build-system"]["requires"]
    name, _, version = requires.partition("==")
    assert name == "setuptools" and version, f"not an exact pin: {requires}"
    # the image builds this project with --no-build-isolation: with requirements.lock's setuptools
    image = load_requirements_lock(ROOT / "requirements.lock").pins["setuptools"]
    assert image.version == version
    # uv resolves build dependencies outside uv.lock's packages: the constraint holds it there,
    # and uv.lock records the constraint, so `uv sync --locked` refuses a pyproject that moved
    assert project["tool"]["uv"]["build-constraint-dependencies"] == [f"setuptools=={version}"]
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    assert lock["manifest"]["build-constraints"] == [
        {"name": "setuptools", "specifier": f"=={version}"}
    ]


def test_the_uv_bootstrap_pins_is_the_one_the_test_knows():
    text = (ROOT / "scripts" / "uv-bootstrap.txt").read_text()
    assert f"uv=={PINNED_UV} \\" in text


@pytest.fixture
def checkout(tmp_path):
    """scripts/bootstrap in a copy of the repository's scripts, with the pinned uv already in
    .cache/uv-bootstrap (as a first run leaves it) and a PATH of our own."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("bootstrap", "uv-bootstrap.txt"):
        shutil.copy(ROOT / "scripts" / name, repo / "scripts" / name)
    cached = repo / ".cache" / "uv-bootstrap" / "bin"
    cached.mkdir(parents=True)
    (cached / "uv").write_text(FAKE_UV.format(version=PINNED_UV, name="pinned"))
    (cached / "uv").chmod(0o755)
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    log = tmp_path / "uv.log"
    return repo, path_dir, log


def _bootstrap(repo: Path, path_dir: Path, log: Path) -> subprocess.CompletedProcess:
    system = ":".join(p for p in ("/usr/bin", "/bin") if Path(p).is_dir())
    env = {**os.environ, "PATH": f"{path_dir}:{system}", "UV_LOG": str(log)}
    return subprocess.run(
        ["bash", str(repo / "scripts" / "bootstrap")], env=env, capture_output=True, text=True
    )


def test_a_uv_on_path_of_another_version_is_not_used(checkout):
    repo, path_dir, log = checkout
    (path_dir / "uv").write_text(FAKE_UV.format(version="0.4.0", name="path"))
    (path_dir / "uv").chmod(0o755)
    result = _bootstrap(repo, path_dir, log)
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == ["pinned sync --locked --quiet"]
    assert f"uv on PATH is 0.4.0, the project pins {PINNED_UV}" in result.stderr


def test_a_uv_on_path_of_the_pinned_version_is_used(checkout):
    repo, path_dir, log = checkout
    (path_dir / "uv").write_text(FAKE_UV.format(version=PINNED_UV, name="path"))
    (path_dir / "uv").chmod(0o755)
    result = _bootstrap(repo, path_dir, log)
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == ["path sync --locked --quiet"]
    assert result.stderr == ""
