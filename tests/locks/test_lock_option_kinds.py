"""`scripts/update-locks.py --lock FILE` never falls back to the repository's lock: a file whose
name and content say two kinds, whose kind the kinds asked for do not read, or a second file of
one kind is an error naming the file and both kinds, and nothing is resolved or written.

The careless run this stops: `--nodes --lock my.lock` with a nodes lock in my.lock. Its name
reads as a requirements lock, so the nodes resolver took the repository's nodes.lock.yaml,
fetched every remote and rewrote it, and my.lock was never read."""

from __future__ import annotations

import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from support.lockdata import REPO

from bake import update_locks

LOCKS = ("nodes.lock.yaml", "models.lock.yaml", "requirements.lock", "apt.lock.yaml")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A copy of the repository's locks as BAKE_ROOT, and stand-in resolvers that record
    which lock each kind was given (nothing reaches the network)."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in LOCKS:
        shutil.copy(REPO / name, root / name)
    monkeypatch.setenv("BAKE_ROOT", str(root))
    calls: list[tuple[str, Path]] = []
    for module, func in (
        ("bake.nodes.resolve", "update_nodes"),
        ("bake.models.resolve", "update_models"),
        ("bake.python.compile", "update_python"),
        ("bake.locks.apt", "update_apt"),
    ):
        fake = types.ModuleType(module)

        def run(path, *args, _func=func, **kwargs):
            calls.append((_func, Path(path)))
            return 0

        setattr(fake, func, run)
        monkeypatch.setitem(sys.modules, module, fake)
    monkeypatch.setattr(update_locks, "_class_review", lambda path: 0)
    monkeypatch.chdir(tmp_path)
    return root, calls


def nodes_text() -> str:
    return (REPO / "nodes.lock.yaml").read_text(encoding="utf-8")


def test_a_nodes_lock_named_like_a_requirements_lock_is_refused(repo, tmp_path, capsys):
    root, calls = repo
    mine = tmp_path / "my.lock"
    mine.write_text(nodes_text(), encoding="utf-8")
    before = (root / "nodes.lock.yaml").stat()
    assert update_locks.main(["--nodes", "--lock", str(mine)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --lock {mine}: its name reads as a Python requirements lock but it holds a "
        "nodes lock; name it for what it is (e.g. my.nodes.lock.yaml) so that every command "
        "reads it as one kind"
    ]
    assert calls == []  # the repository's nodes lock was neither resolved nor rewritten
    after = (root / "nodes.lock.yaml").stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)


def test_a_lock_of_another_kind_than_the_one_asked_for_is_refused(repo, tmp_path, capsys):
    _, calls = repo
    requirements = tmp_path / "requirements.lock"
    shutil.copy(REPO / "requirements.lock", requirements)
    assert update_locks.main(["--nodes", "--lock", str(requirements)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --lock {requirements} is a Python requirements lock (its name reads so), but "
        "--nodes reads a nodes lock: pass the lock of the kind asked for, or add --python to "
        "resolve this one (nothing was resolved)"
    ]
    assert calls == []


@pytest.mark.parametrize(
    ("flags", "name", "source", "is_kind", "reads"),
    [
        (["--models"], "other.nodes.lock.yaml", "nodes.lock.yaml", "a nodes lock", "a models lock"),
        (["--nodes"], "models.lock.yaml", "models.lock.yaml", "a models lock", "a nodes lock"),
        (["--apt"], "x.lock", "requirements.lock", "a Python requirements lock", "an apt lock"),
        ([], "apt.lock.yaml", "apt.lock.yaml", "an apt lock", "a models lock or a nodes lock"),
        (["--python"], "m.models.lock.yaml", "models.lock.yaml", "a models lock", "a nodes lock"),
    ],
)
def test_every_kind_mismatch_names_the_file_and_both_kinds(
    repo, tmp_path, capsys, flags, name, source, is_kind, reads
):
    _, calls = repo
    given = tmp_path / name
    shutil.copy(REPO / source, given)
    assert update_locks.main([*flags, "--lock", str(given)]) == 2
    err = capsys.readouterr().err
    assert f"error: --lock {given} is {is_kind}" in err
    assert f"reads {reads}" in err or f"reads a Python requirements lock or {reads}" in err
    assert calls == []


def test_a_lock_found_by_content_must_fit_too(repo, tmp_path, capsys):
    _, calls = repo
    unnamed = tmp_path / "pins.yaml"  # the name says nothing; the content is a models lock
    shutil.copy(REPO / "models.lock.yaml", unnamed)
    assert update_locks.main(["--nodes", "--lock", str(unnamed)]) == 2
    assert f"--lock {unnamed} is a models lock (by its content)" in capsys.readouterr().err
    assert calls == []


def test_a_file_of_no_kind_at_all_is_refused(repo, tmp_path, capsys):
    _, calls = repo
    notes = tmp_path / "notes.yaml"
    notes.write_text("hello: world\n", encoding="utf-8")
    assert update_locks.main(["--nodes", "--lock", str(notes)]) == 2
    assert "neither its name nor its content tells which lock it is" in capsys.readouterr().err
    assert calls == []


def test_two_locks_of_one_kind_are_refused(repo, tmp_path, capsys):
    _, calls = repo
    first, second = tmp_path / "a.nodes.lock.yaml", tmp_path / "b.nodes.lock.yaml"
    for path in (first, second):
        path.write_text(nodes_text(), encoding="utf-8")
    assert update_locks.main(["--nodes", "--lock", str(first), "--lock", str(second)]) == 2
    assert (
        f"error: --lock {second} is a nodes lock, and so is --lock {first}: give one --lock "
        "per kind"
    ) in capsys.readouterr().err
    assert calls == []


def test_fitting_locks_are_used_and_a_nodes_lock_may_feed_the_python_lock(repo, tmp_path):
    root, calls = repo
    nodes = tmp_path / "my.nodes.lock.yaml"
    nodes.write_text(nodes_text(), encoding="utf-8")
    assert update_locks.main(["--nodes", "--lock", str(nodes)]) == 0
    assert calls == [("update_nodes", nodes)]
    calls.clear()
    # --python reads a nodes lock (it compiles from its requirement lines): not a mismatch
    assert update_locks.main(["--python", "--lock", str(nodes)]) == 0
    assert calls == [("update_python", root / "requirements.lock")]


def test_plan_prints_the_kinds_and_names_and_resolves_nothing(repo, capsys):
    _, calls = repo
    assert update_locks.main(["--plan", "ComfyUI-KJNodes", "rife47"]) == 0
    assert capsys.readouterr().out.splitlines() == ["nodes ComfyUI-KJNodes", "models rife47"]
    assert update_locks.main(["--plan", "--nodes", "--python", "--models", "--apt"]) == 0
    assert capsys.readouterr().out.splitlines() == ["nodes", "python", "models", "apt"]
    assert calls == []


def test_the_script_reports_the_mismatch_as_a_usage_error(tmp_path):
    mine = tmp_path / "my.lock"
    mine.write_text(nodes_text(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "update-locks.py"), "--nodes", "--lock", str(mine)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "holds a nodes lock" in done.stderr and done.stdout == ""
