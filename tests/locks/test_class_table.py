"""node-classes.yaml: every class of the locked set reviewed, and a node update flagged for
review, through the commands maintainers run (`bake check`, `update-locks`) on real files."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.lockdata import REPO

from bake.errors import LockError
from bake.locks.classes import CLASSES_FILE, load_class_table, loads_class_table, review_drift
from bake.locks.nodes import loads_nodes_lock

OBJECT_INFO = REPO / "tests" / "support" / "fake_comfyui" / "object_info.json.gz"
FAKE_ONLY = {"FakeCrash", "FakeHang", "FakeIgnoreInterrupt"}  # the fake's test hooks


def pack_of(module: str, locked: set[str]) -> str:
    """A locked node's folder, else ComfyUI (whose own custom_nodes/websocket_image_save.py
    registers SaveImageWebsocket)."""
    folder = module.split(".")[1] if module.startswith("custom_nodes.") else ""
    return folder if folder in locked else "ComfyUI"


def test_every_class_of_the_locked_set_has_exactly_one_verdict_in_its_own_pack():
    info = json.loads(gzip.decompress(OBJECT_INFO.read_bytes()))
    table = load_class_table(REPO / CLASSES_FILE)
    listed = {c: p.name for p in table.packs.values() for c in p.classes}
    locked = set(loads_nodes_lock((REPO / "nodes.lock.yaml").read_text()).custom_nodes)
    installed = {
        c: pack_of(i["python_module"], locked) for c, i in info.items() if c not in FAKE_ONLY
    }
    assert sorted(set(installed) - set(listed)) == []
    assert sorted(set(listed) - set(installed)) == []
    assert {c: p for c, p in listed.items() if installed[c] != p} == {}


def test_the_shipped_workflow_runs_on_allowed_classes_only():
    table = load_class_table(REPO / CLASSES_FILE)
    workflow = json.loads((REPO / "worker" / "workflows" / "wan_flf_i2v_api.json").read_text())
    refused = {n["class_type"]: str(table.verdict(n["class_type"])) for n in workflow.values()}
    assert {c: why for c, why in refused.items() if why != "allowed"} == {}


def test_the_committed_table_matches_the_nodes_lock():
    table = load_class_table(REPO / CLASSES_FILE)
    nodes = loads_nodes_lock((REPO / "nodes.lock.yaml").read_text())
    assert review_drift(table, nodes) == []


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    for name in ("nodes.lock.yaml", "models.lock.yaml", "requirements.lock", CLASSES_FILE):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def bake_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bake", "check"],
        cwd=root,
        env={"BAKE_ROOT": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_node_update_makes_bake_check_ask_for_a_review(repo: Path):
    assert bake_check(repo).returncode == 0, bake_check(repo).stderr
    lock = repo / "nodes.lock.yaml"
    rev = loads_nodes_lock(lock.read_text()).custom_nodes["ComfyUI-KJNodes"].locked.rev
    lock.write_text(lock.read_text().replace(rev, "f" * 40))  # the update a resolve writes
    result = bake_check(repo)
    assert result.returncode == 1
    assert (
        "error: node-classes.yaml: ComfyUI-KJNodes: needs review: the nodes lock moved it "
        f"to ffffffffffff, its classes were reviewed at {rev[:12]}"
    ) in result.stderr, result.stderr


def test_update_locks_reports_the_review_in_its_diff(repo: Path, capsys):
    from bake import update_locks

    lock = repo / "nodes.lock.yaml"
    rev = loads_nodes_lock(lock.read_text()).custom_nodes["RES4LYF"].locked.rev
    lock.write_text(lock.read_text().replace(rev, "e" * 40))
    assert update_locks._class_review(lock) == 0
    out = capsys.readouterr().out
    assert "== node classes" in out and "RES4LYF: needs review" in out


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "version: 1\nreasons: {code: runs code}\npacks:\n  A:\n    rev: '"
            + "a" * 40
            + "'\n    classes: {X: allow, X: code}\n",
            "X",
        ),
        (
            "version: 1\nreasons: {code: runs code}\npacks:\n  A:\n    rev: '"
            + "a" * 40
            + "'\n    classes: {X: fine}\n",
            "'fine' is not a reason of this file",
        ),
        (
            "version: 1\nreasons: {code: runs code}\npacks:\n  A:\n    rev: '"
            + "a" * 40
            + "'\n    classes: {X: allow}\n  B:\n    rev: '"
            + "b" * 40
            + "'\n    classes: {X: allow}\n",
            "listed again (first under A)",
        ),
        (
            "version: 1\nreasons: {code: runs code}\npacks:\n  A:\n    rev: main\n"
            "    classes: {X: allow}\n",
            "expected a full 40-hex commit",
        ),
    ],
)
def test_a_malformed_table_is_one_clear_error(text: str, problem: str):
    with pytest.raises(LockError) as caught:
        loads_class_table(text, "node-classes.yaml")
    assert problem in str(caught.value) and "node-classes.yaml" in str(caught.value)
