"""scripts/apt-install, the image's only way to install system packages, run for real against a
root laid out as Ubuntu 24.04's nvidia/cuda base holds it, with an `apt-get` on PATH that
records what it was asked (no network, no root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bake.locks.apt import AptLock, load_apt_lock, write_apt_lock

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "apt-install"

# As the ubuntu:24.04 base ships it (deb822), plus NVIDIA's repository as the CUDA images add it.
UBUNTU_SOURCES = """\
Types: deb
URIs: http://archive.ubuntu.com/ubuntu/
Suites: noble noble-updates noble-backports
Components: main universe restricted multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg

Types: deb
URIs: http://security.ubuntu.com/ubuntu/
Suites: noble-security
Components: main universe restricted multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg
"""
CUDA_LIST = (
    "deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] "
    "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/ /\n"
)
FAKE_APT_GET = """#!/bin/sh
# what apt-get was asked, one call per line; `update` leaves a list behind as apt would
echo "$*" >> "$APT_LOG"
if [ "$1" = update ]; then
    mkdir -p "$APT_ROOT/var/lib/apt/lists"
    : > "$APT_ROOT/var/lib/apt/lists/snapshot.ubuntu.com_ubuntu_dists_noble_InRelease"
    mkdir -p "$APT_ROOT/var/log/apt"
    echo "Start-Date: now" > "$APT_ROOT/var/log/apt/history.log"
    echo "now install" > "$APT_ROOT/var/log/dpkg.log"
fi
"""


@pytest.fixture
def image(tmp_path):
    root = tmp_path / "root"
    (root / "etc/apt/sources.list.d").mkdir(parents=True)
    (root / "etc/apt/sources.list.d/ubuntu.sources").write_text(UBUNTU_SOURCES)
    (root / "etc/apt/sources.list.d/cuda-ubuntu2404-x86_64.list").write_text(CUDA_LIST)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(FAKE_APT_GET)
    (bin_dir / "apt-get").chmod(0o755)
    log = tmp_path / "apt.log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "APT_ROOT": str(root),
        "APT_LOG": str(log),
    }
    return root, env, log


def run(lock: Path, env: dict[str, str], *packages: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(SCRIPT), str(lock), *packages], env=env, capture_output=True, text=True
    )


def test_ubuntu_comes_from_the_snapshot_and_nvidia_at_the_pinned_version(image):
    root, env, log = image
    lock = ROOT / "apt.lock.yaml"  # the committed lock, as the Dockerfile mounts it
    pinned = load_apt_lock(lock)
    result = run(lock, env, "python3.12-dev", "gcc", "cuda-driver-dev-12-8", "ffmpeg")
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "update"
    version = pinned.pinned["cuda-driver-dev-12-8"]
    assert calls[1].split() == [
        "install",
        "-y",
        "--no-install-recommends",
        "python3.12-dev",
        "gcc",
        f"cuda-driver-dev-12-8={version}",
        "ffmpeg",
    ]
    # every Ubuntu source now names the snapshot, and no live archive is left configured
    sources = (root / "etc/apt/sources.list.d/ubuntu.sources").read_text()
    url = f"https://snapshot.ubuntu.com/ubuntu/{pinned.snapshot}/"
    assert sources.count(f"URIs: {url}\n") == 2
    assert "archive.ubuntu.com" not in sources and "security.ubuntu.com" not in sources
    # NVIDIA's repository is left as it is (it has no snapshots: its packages are pinned)
    cuda = root / "etc/apt/sources.list.d/cuda-ubuntu2404-x86_64.list"
    assert cuda.read_text() == CUDA_LIST
    # nothing of this run's time stays behind: lists, logs
    assert list((root / "var/lib/apt/lists").iterdir()) == []
    assert list((root / "var/log/apt").iterdir()) == []
    assert not (root / "var/log/dpkg.log").exists()


def test_a_second_run_in_the_same_image_keeps_the_snapshot(image):
    root, env, _ = image
    lock = ROOT / "apt.lock.yaml"
    assert run(lock, env, "git").returncode == 0
    first = (root / "etc/apt/sources.list.d/ubuntu.sources").read_text()
    result = run(lock, env, "ffmpeg")
    assert result.returncode == 0, result.stderr
    assert (root / "etc/apt/sources.list.d/ubuntu.sources").read_text() == first


def test_an_unpinned_package_from_nvidias_repository_is_refused(image, tmp_path):
    _, env, log = image
    lock = tmp_path / "apt.lock.yaml"
    write_apt_lock(AptLock("20260116T000000Z", {}), lock)
    result = run(lock, env, "gcc", "cuda-driver-dev-12-8")
    assert result.returncode == 1
    assert result.stderr.startswith("error: cuda-driver-dev-12-8 comes from NVIDIA's")
    assert "pin its exact version under 'pinned:'" in result.stderr
    assert not log.exists(), "nothing was fetched or installed"


def test_a_lock_without_a_snapshot_installs_nothing(image, tmp_path):
    _, env, log = image
    lock = tmp_path / "apt.lock.yaml"
    lock.write_text("version: 1\nsnapshot: latest\n")
    result = run(lock, env, "gcc")
    assert result.returncode == 1
    assert "no snapshot id found" in result.stderr
    assert not log.exists()


def test_a_base_without_ubuntus_sources_is_refused_rather_than_installed_live(image):
    root, env, log = image
    (root / "etc/apt/sources.list.d/ubuntu.sources").unlink()
    result = run(ROOT / "apt.lock.yaml", env, "gcc")
    assert result.returncode == 1
    assert "no Ubuntu archive source found" in result.stderr
    assert not log.exists()


def test_the_snapshot_moves_forward_with_update_locks_and_shows_in_the_diff(tmp_path):
    lock = tmp_path / "apt.lock.yaml"
    shutil.copy(ROOT / "apt.lock.yaml", lock)
    before = load_apt_lock(lock)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/update-locks.py"), "--apt", "--lock", str(lock)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    after = load_apt_lock(lock)
    assert after.snapshot > before.snapshot
    assert after.pinned == before.pinned  # NVIDIA's versions move only by hand
    assert f"    id: {before.snapshot} -> {after.snapshot}" in result.stdout.splitlines()
    # and the moved lock is one the image script reads
    assert f"snapshot: {after.snapshot}\n" in lock.read_text()
