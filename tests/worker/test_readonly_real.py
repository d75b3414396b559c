"""The locked nodes import from a tree that ComfyUI can write only where the image lets it.

In the image ComfyUI's user can write `input/`, `output/`, `temp/`, `user/` and the node files
worker/comfy/user.py lists (NODE_WRITABLE), nothing else (docs/image.md). Nodes that write into
their own folders at start would fail to import there: RES4LYF does at every start. This runs
the real ComfyUI with every locked node twice, as the image does: a first start on a writable
tree (the build-time first start), then a start with the tree mounted read-only except those
paths (a private mount namespace: needs root and `unshare`). A node update that starts writing
somewhere new fails here instead of in production.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.real_comfyui import locked_nodes, make_comfyui, source_and_interpreter

from worker.comfy.user import NODE_WRITABLE, WRITABLE

pytestmark = [pytest.mark.real_comfyui, pytest.mark.slow]

READ_ONLY_START = r"""
set -eu
D="$1"; shift
for w in "$@"; do mount --bind "$D/$w" "$D/$w"; done
mount --rbind "$D" "$D"
mount -o remount,bind,ro "$D"
if touch "$D/custom_nodes/.probe" 2>/dev/null; then echo "the tree is still writable"; exit 3; fi
cd "$D"
exec "$PYTHON" main.py --cpu --quick-test-for-ci
"""


def quick_test(python: str, comfyui: Path, *, read_only: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": python, "PYTHONDONTWRITEBYTECODE": "1"}
    if read_only:
        cmd = ["unshare", "--mount", "sh", "-c", READ_ONLY_START, "sh", str(comfyui)]
        cmd += [*WRITABLE, *NODE_WRITABLE]
    else:
        cmd = [python, "main.py", "--cpu", "--quick-test-for-ci"]
    return subprocess.run(cmd, cwd=comfyui, env=env, capture_output=True, text=True, timeout=600)


def test_every_locked_node_imports_from_the_images_read_only_tree(tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a read-only mount of the tree needs root and unshare (util-linux)")
    src, python = source_and_interpreter()
    nodes = locked_nodes()
    comfyui = make_comfyui(
        tmp_path / "comfyui", src, nodes=nodes, test_nodes=False, first_start=False
    )
    first = quick_test(python, comfyui, read_only=False)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for rel in NODE_WRITABLE:  # what the build-time first start leaves for the image to hand over
        assert (comfyui / rel).is_file(), rel

    for name in WRITABLE:  # created by the image's hand-over step (and the worker at boot)
        (comfyui / name).mkdir(exist_ok=True)
    second = quick_test(python, comfyui, read_only=True)
    log = second.stdout + second.stderr
    if second.returncode != 0 and "unshare" in log and "Operation not permitted" in log:
        pytest.skip(f"no mount namespace here: {log.strip()[:200]}")
    assert second.returncode == 0, log[-4000:]
    failed = [
        line for line in log.splitlines() if "IMPORT FAILED" in line and "custom_nodes" in line
    ]
    assert failed == [], "\n".join(failed)
    assert "Read-only file system" not in log, log[-4000:]
    for node in nodes:
        assert f"custom_nodes/{node}" in log, f"{node} was not loaded at all"
