"""ComfyUI-Manager is refused however its URL is spelled, and custom_nodes/ folder names are
compared as Linux compares them: exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LOCK = """\
version: 1
comfyui:
  original: {{ref: master, url: https://github.com/comfyanonymous/ComfyUI.git}}
  requirements_file: requirements.txt
custom_nodes:
  Helpers:
    original: {{ref: main, url: '{url}'}}
    requirements_file: requirements.txt
"""


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/Comfy-Org/ComfyUI-Manager.GIT",
        "https://github.com/Comfy-Org/ComfyUI-Manager/.git",
        "https://github.com/Comfy-Org/ComfyUI-Manager.git#x",
        "https://github.com/Comfy-Org/ComfyUI-Manager?tab=readme",
        "https://github.com/Comfy-Org/ComfyUI%2DManager",
        "git@github.com:Comfy-Org/ComfyUI-Manager.Git",
    ],
)
def test_manager_is_refused_however_its_url_is_spelled(tmp_path, url):
    lock = tmp_path / "nodes.lock.yaml"
    lock.write_text(LOCK.format(url=url))
    done = subprocess.run(
        [sys.executable, "-m", "bake", "check", "--lock", str(lock)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 1
    assert (
        f"error: {lock}: custom_nodes.Helpers: ComfyUI-Manager is excluded (it installs code at "
        "run time); remove this entry"
    ) in done.stderr.splitlines()


def test_an_ordinary_node_url_is_not_mistaken_for_the_manager(tmp_path):
    lock = tmp_path / "nodes.lock.yaml"
    lock.write_text(LOCK.format(url="https://github.com/o/ComfyUI-Manager-Helpers.git"))
    done = subprocess.run(
        [sys.executable, "-m", "bake", "check", "--lock", str(lock)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert "ComfyUI-Manager is excluded" not in done.stderr


def test_a_folder_differing_from_a_locked_node_only_in_case_is_foreign(remotes, tmp_path):
    from bake.locks.nodes import load_nodes_lock
    from bake.nodes.install import install_nodes
    from bake.nodes.resolve import update_nodes
    from bake.nodes.verify import verify_nodes

    lock_path = remotes.lock(tmp_path / "nodes.lock.yaml")
    assert update_nodes(lock_path, out=lambda _: None) == 0
    lock = load_nodes_lock(lock_path)
    comfy = tmp_path / "ComfyUI"
    install_nodes(lock, comfy, log=lambda _: None)
    # ComfyUI on Linux loads this as a second node beside ComfyUI-KJNodes
    twin = comfy / "custom_nodes" / "comfyui-kjnodes"
    twin.mkdir()
    (twin / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    findings = [f.line() for r in verify_nodes(lock, comfy, dests=set()) for f in r.findings]
    assert findings == [
        "custom_nodes/comfyui-kjnodes: unexpected: a folder custom_nodes/ may not hold: not a "
        "locked custom node, with __init__.py: custom_nodes/ holds only ComfyUI's own files and "
        "the locked custom nodes"
    ]
    lines: list[str] = []
    install_nodes(lock, comfy, log=lines.append)
    assert not twin.exists() and (comfy / "custom_nodes" / "ComfyUI-KJNodes").is_dir()
    assert any(line.endswith("does not hold: custom_nodes/comfyui-kjnodes") for line in lines)
