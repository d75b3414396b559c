"""`update-locks --python --check`: offline proof that requirements.lock matches its inputs."""

from __future__ import annotations

from pathlib import Path

from bake.locks.requirements import parse_requirements_lock
from bake.python.compile import Inputs, missing_project_dependencies, unsatisfied, update_python

from .conftest import NODES

REPO = Path(__file__).resolve().parents[2]
RECOMPILE = "requirements.lock: run scripts/update-locks.py --python to recompile it"


def test_a_fresh_lock_passes(compiled):
    assert compiled.check() == 0
    assert compiled.out == ["requirements.lock: fresh (7 pins, 3 node entries)"]


def test_comments_and_blank_lines_do_not_make_it_stale(compiled):
    text = compiled.requirements_in.read_text()
    compiled.requirements_in.write_text(
        "# a new comment\n\n" + text.replace("alpha\n", "alpha        # and a comment on a line\n")
    )
    assert compiled.check() == 0, compiled.output


def test_editing_requirements_in_is_named(compiled):
    compiled.requirements_in.write_text(compiled.requirements_in.read_text() + "stray\n")
    assert compiled.check() == 1
    assert compiled.out == [
        "requirements.lock: stale: requirements.in: its requirement lines changed",
        "requirements.lock: inconsistent: stray is not pinned, but requirements.in asks for "
        "'stray'",
        RECOMPILE,
    ]


def test_a_node_whose_recorded_requirements_changed_is_named(compiled):
    compiled.set_nodes(
        {**NODES, "NodeB": ["opencv-python-headless", "nodelib>=2", "beta<2"], "NodeD": []}
    )
    assert compiled.check() == 1
    assert compiled.out == [
        "requirements.lock: stale: nodes.lock.yaml custom_nodes.NodeB: its recorded "
        "requirements changed",
        "requirements.lock: stale: nodes.lock.yaml custom_nodes.NodeD: new input, not in the "
        "lock's inputs",
        "requirements.lock: inconsistent: beta==2.0 is pinned, but nodes.lock.yaml "
        "custom_nodes.NodeB asks for 'beta<2'",
        RECOMPILE,
    ]


def test_a_removed_node_and_changed_overrides_are_named(compiled):
    compiled.set_nodes({k: v for k, v in NODES.items() if k != "NodeB"})
    compiled.overrides.write_text(
        compiled.overrides.read_text().replace("nodelib==2.0", "nodelib==1.0")
    )
    assert compiled.check() == 1
    assert compiled.out == [
        "requirements.lock: stale: requirements-overrides.txt: its requirement lines changed",
        "requirements.lock: stale: nodes.lock.yaml custom_nodes.NodeB: input removed since the "
        "lock was compiled",
        "requirements.lock: inconsistent: nodelib==2.0 is pinned, but nodes.lock.yaml "
        "custom_nodes.NodeA asks for 'nodelib<2', overridden by 'nodelib==1.0'",
        RECOMPILE,
    ]


def test_a_hand_edited_pin_is_caught(compiled):
    text = compiled.lock.read_text()
    compiled.lock.write_text(text.replace("\ntorch==2.0 ", "\ntorch==3.0 "))
    assert compiled.check() == 1
    assert compiled.out == [
        "requirements.lock: stale: its pins were edited after it was compiled",
        "requirements.lock: inconsistent: torch==3.0 is pinned, but requirements.in asks for "
        "'torch==2.0'",
        RECOMPILE,
    ]


def test_a_lock_not_written_by_update_locks_is_stale(compiled):
    text = compiled.lock.read_text()
    compiled.lock.write_text(
        "\n".join(line for line in text.splitlines() if not line.startswith("#")) + "\n"
    )
    assert compiled.check() == 1
    assert compiled.out == [
        "requirements.lock: stale: it has no inputs record (it was not written by "
        "scripts/update-locks.py)",
        RECOMPILE,
    ]


def test_a_missing_lock_is_reported(world):
    assert world.check() == 1
    assert world.out == [
        "requirements.lock: missing; run scripts/update-locks.py --python to compile it"
    ]


def test_a_dropped_distribution_must_not_be_pinned():
    lock = parse_requirements_lock(
        "opencv-python==4.0 --hash=sha256:" + "0" * 64 + "\n", "requirements.lock"
    )
    inputs = Inputs("", 'opencv-python ; sys_platform == "never"\n')
    assert unsatisfied(lock, inputs) == [
        "opencv-python==4.0 is pinned, but requirements-overrides.txt drops it "
        "('opencv-python; sys_platform == \"never\"')"
    ]


def test_markers_are_judged_for_the_image_not_this_machine():
    lock = parse_requirements_lock("", "requirements.lock")
    inputs = Inputs(
        "",
        None,
        {
            "custom_nodes.Crystools": (
                "jetson-stats; platform_machine == 'aarch64'",
                "pywin32; sys_platform == 'win32'",
            )
        },
    )
    assert unsatisfied(lock, inputs) == []


def test_pyproject_dependencies_must_be_in_requirements_in():
    pyproject = '[project]\ndependencies = ["blake3>=1.0", "PyYAML>=6.0", "boto3>=1.34"]\n'
    assert missing_project_dependencies(pyproject, "blake3>=1.0\npyyaml>=6.0\nboto3\n") == [
        "pyproject.toml depends on 'boto3>=1.34', requirements.in has 'boto3'; give "
        "requirements.in the same bounds"
    ]
    assert missing_project_dependencies(pyproject, "blake3>=1.0\nboto3>=1.34\n") == [
        "pyproject.toml depends on 'PyYAML>=6.0', which requirements.in does not name; add "
        "'PyYAML>=6.0' to requirements.in"
    ]


def test_the_committed_lock_is_fresh_against_the_repository():
    """What CI runs: the real requirements.lock, proven fresh offline."""
    out: list[str] = []
    assert update_python(REPO / "requirements.lock", check=True, out=out.append) == 0, out
    assert out[0].startswith("requirements.lock: fresh (")
