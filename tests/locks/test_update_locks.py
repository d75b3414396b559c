"""scripts/update-locks.py picks the kinds and names asked for and reports each kind's result."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
from support.lockdata import REPO

from bake import update_locks


@pytest.fixture
def recorded(monkeypatch):
    """Stand-ins for the three resolvers that record how they were called."""
    calls: list[tuple] = []

    def module(name: str, func: str, status: int = 0):
        fake = types.ModuleType(name)

        def run(path, *args, **kwargs):
            calls.append((func, path.name, tuple(args[0]) if args else (), kwargs))
            return status

        setattr(fake, func, run)
        monkeypatch.setitem(sys.modules, name, fake)

    module("bake.nodes.resolve", "update_nodes")
    module("bake.models.resolve", "update_models", status=1)
    module("bake.python.compile", "update_python")
    monkeypatch.chdir(REPO)
    return calls


def test_no_flag_runs_every_kind_nodes_first(recorded):
    status = update_locks.main([])
    assert [c[0] for c in recorded] == ["update_nodes", "update_python", "update_models"]
    assert status == 1  # the models resolver reported a problem; the others still ran


def test_names_pick_the_locks_that_hold_them(recorded):
    update_locks.main(["ComfyUI-KJNodes", "rife47"])
    assert [(c[0], c[2]) for c in recorded] == [
        ("update_nodes", ("ComfyUI-KJNodes",)),
        ("update_models", ("rife47",)),
    ]


def test_check_and_torch_index_reach_the_resolvers(recorded):
    update_locks.main(["--python", "--check", "--torch-index", "https://example.invalid/cu128"])
    ((func, path, _, kwargs),) = recorded
    assert (func, path) == ("update_python", "requirements.lock")
    assert kwargs["check"] is True and kwargs["torch_index"] == "https://example.invalid/cu128"
    assert kwargs["nodes_lock"].name == "nodes.lock.yaml"


def test_lock_option_redirects_by_kind(recorded, tmp_path):
    other = tmp_path / "other-models.lock.yaml"
    other.write_text("version: 1\nmodels: {}\n")
    update_locks.main(["--models", "--lock", str(other)])
    assert recorded[0][1] == "other-models.lock.yaml"


def test_unknown_name_is_one_clear_error():
    result = subprocess.run(
        [sys.executable, "scripts/update-locks.py", "no-such-node"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "no entry named no-such-node" in result.stderr


def test_names_do_not_apply_to_the_python_lock():
    result = subprocess.run(
        [sys.executable, "scripts/update-locks.py", "--python", "x"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "NAME filters apply to --nodes and --models only" in result.stderr


def test_names_are_routed_per_kind_even_with_kind_flags(recorded):
    update_locks.main(["--nodes", "--models", "ComfyUI-KJNodes", "rife47"])
    assert [(c[0], c[2]) for c in recorded] == [
        ("update_nodes", ("ComfyUI-KJNodes",)),
        ("update_models", ("rife47",)),
    ]


def test_a_name_outside_the_flagged_kinds_is_refused(recorded, capsys):
    assert update_locks.main(["--nodes", "rife47"]) == 1
    assert recorded == []
    assert "no entry named rife47 in nodes.lock.yaml" in capsys.readouterr().err


def test_a_kind_flag_reads_only_its_own_lock(recorded, tmp_path, capsys, monkeypatch):
    models = tmp_path / "models.lock.yaml"
    models.write_text((REPO / "models.lock.yaml").read_text())
    broken_nodes = tmp_path / "nodes.lock.yaml"
    broken_nodes.write_text("version: [\n")  # mid-edit: must not block a models update
    monkeypatch.setenv("BAKE_ROOT", str(tmp_path))  # the nodes lock the repository has
    update_locks.main(["--models", "--lock", str(models), "rife47"])
    assert "error" not in capsys.readouterr().err
    assert [(c[0], c[2]) for c in recorded] == [("update_models", ("rife47",))]


def test_an_unexpected_failure_in_one_kind_is_one_line_and_the_others_run(
    recorded, monkeypatch, capsys
):
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sys.modules["bake.nodes.resolve"], "update_nodes", boom)
    assert update_locks.main([]) == 1
    assert [c[0] for c in recorded] == ["update_python", "update_models"]
    err = capsys.readouterr().err
    assert "error: nodes: unexpected RuntimeError: disk on fire" in err
    assert "Traceback" not in err
