"""`nodes smoke`: ComfyUI started once (`main.py --cpu --quick-test-for-ci`) must load every
locked node; ComfyUI logs a node that fails to import and carries on, so the command reads its
import summary. Run against the fake ComfyUI, which loads custom nodes as ComfyUI does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from support import fake_comfyui

from bake.locks.nodes import GitPin, GitSource, NodeEntry, NodesLock, write_nodes_lock
from bake.nodes.smoke import judge

ROOT = Path(__file__).resolve().parents[2]
PIN = GitPin("a" * 40, "2026-01-01T00:00:00+00:00")
FAKE_HOOKS = ("FakeCrash", "FakeHang", "FakeIgnoreInterrupt")


def _comfy(tmp_path: Path, nodes: dict[str, str]) -> tuple[Path, Path]:
    comfy = tmp_path / "ComfyUI"
    (comfy / "custom_nodes").mkdir(parents=True)
    shutil.copy(Path(fake_comfyui.__file__).parent / "main.py", comfy / "main.py")
    for name, init in nodes.items():
        (comfy / "custom_nodes" / name).mkdir()
        (comfy / "custom_nodes" / name / "__init__.py").write_text(init)
    lock = tmp_path / "nodes.lock.yaml"
    entries = {
        name: NodeEntry(name, "custom_node", GitSource(f"https://x.invalid/{name}", "main"), PIN)
        for name in ("Good", "Broken", "Absent")
    }
    comfy_entry = NodeEntry("comfyui", "comfyui", GitSource("https://x.invalid/C", "main"), PIN)
    write_nodes_lock(NodesLock(comfy_entry, entries, {}), lock)
    return comfy, lock


def test_a_node_that_does_not_import_fails_the_smoke_named(tmp_path):
    comfy, lock = _comfy(
        tmp_path,
        {"Good": "NODE_CLASS_MAPPINGS = {}\n", "Broken": "import no_such_module_anywhere\n"},
    )
    cmd = [sys.executable, "-m", "bake", "nodes", "smoke", "--comfyui-dir", str(comfy)]
    done = subprocess.run(
        [*cmd, "--lock", str(lock)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 1, done.stdout
    assert done.stderr.splitlines() == [
        "error: custom_nodes.Absent: ComfyUI did not load it at its first start (it is not in "
        "the import summary); is its folder there? run python -m bake nodes verify",
        "error: custom_nodes.Broken: IMPORT FAILED at ComfyUI's first start; its traceback is in "
        "the output above (a requirement missing from requirements.lock?)",
    ]
    assert "No module named 'no_such_module_anywhere'" in done.stdout  # ComfyUI's own words
    assert not list(comfy.rglob("__pycache__"))  # the start wrote no byte-code


def test_comfyuis_own_import_failures_and_exit_code_count(tmp_path):
    nodes = NodesLock(
        NodeEntry("comfyui", "comfyui", GitSource("https://x.invalid/C", "main"), PIN),
        {"Good": NodeEntry("Good", "custom_node", GitSource("https://x.invalid/G", "m"), PIN)},
        {},
    )
    output = (
        "WARNING: some comfy_extras/ nodes did not import correctly.\n\n"
        "IMPORT FAILED: nodes_audio.py\n\n"
        "Import times for custom nodes:\n"
        "   0.0 seconds: /comfyui/custom_nodes/websocket_image_save.py\n"
        "   0.4 seconds: /comfyui/custom_nodes/Good\n"
    )
    assert judge(output, 0, nodes) == [
        "comfyui: IMPORT FAILED: nodes_audio.py (one of ComfyUI's own nodes)"
    ]
    assert judge(output.replace("IMPORT FAILED: nodes_audio.py", ""), 0, nodes) == []
    assert judge("", 1, nodes)[0].startswith("comfyui: `python main.py --cpu --quick-test-for-ci` ")


def test_a_class_nobody_reviewed_fails_the_smoke_and_the_list_is_recorded(tmp_path):
    # A node update that registers a class the review table does not list
    comfy = fake_comfyui.install(tmp_path / "ComfyUI")
    (comfy / "custom_nodes" / "Good").mkdir(parents=True)
    (comfy / "custom_nodes" / "Good" / "__init__.py").write_text(
        "class Added:\n    pass\n\nNODE_CLASS_MAPPINGS = {'AddedByAnUpdate': Added}\n"
    )
    entries = {
        "Good": NodeEntry("Good", "custom_node", GitSource("https://x.invalid/Good", "main"), PIN)
    }
    comfy_entry = NodeEntry("comfyui", "comfyui", GitSource("https://x.invalid/C", "main"), PIN)
    lock = tmp_path / "nodes.lock.yaml"
    write_nodes_lock(NodesLock(comfy_entry, entries, {}), lock)
    # the repository's table, and the fake's test hooks (FakeHang, ...), which the fake serves
    table = tmp_path / "node-classes.yaml"
    hooks = "".join(f"      {c}: 'unreviewed: a test hook'\n" for c in FAKE_HOOKS)
    table.write_text(
        (ROOT / "node-classes.yaml").read_text()
        + f"  FakeHooks:\n    rev: '{'b' * 40}'\n    classes:\n{hooks}"
    )
    cmd = [sys.executable, "-m", "bake", "nodes", "smoke", "--comfyui-dir", str(comfy)]
    record = tmp_path / "installed.json"
    run = [*cmd, "--lock", str(lock), "--record", str(record)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(run, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 1, done.stdout
    assert done.stderr.splitlines() == [
        "error: Good: needs review: 1 installed class(es) not in node-classes.yaml, refused by "
        "the worker until reviewed: AddedByAnUpdate"
    ]
    assert not record.exists()
    # reviewed (here: refused, for want of a need), the smoke passes and records every class
    table.write_text(
        table.read_text()
        + "  Good:\n    rev: '"
        + "a" * 40
        + "'\n    classes:\n      AddedByAnUpdate: 'unreviewed: not needed'\n"
    )
    done = subprocess.run(run, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    installed = json.loads(record.read_text())
    assert installed["AddedByAnUpdate"] == "custom_nodes.Good"
    assert installed["KSampler"] == "nodes" and len(installed) > 1400
    assert "node classes, every one reviewed in node-classes.yaml" in done.stdout
