"""A custom node's or source build's name is the folder it is installed in and the word every
message names it by: one safe path component, with no control character (a newline would
forge a line of output, a NUL cut a path), no bidirectional control or other invisible format
character (a name that displays as `ComfyUI-KJNodes` in the diff a reviewer reads but is
another folder), no separator, and nothing that reads as a path or an option."""

from __future__ import annotations

from pathlib import Path

import pytest

from bake.cli import main
from bake.locks.nodes import name_problem

BASE = """\
version: 1
comfyui:
  locked: {date: '2026-01-16T23:02:28-05:00', requirements: [], rev: REV_A}
  original: {ref: master, url: 'https://example.invalid/ComfyUI.git'}
SECTION:
  NAME:
    locked: {date: '2026-01-16T23:02:28-05:00', rev: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb}
    original: {ref: main, url: 'https://example.invalid/o/node.git'}
"""

# (id, the key as written in YAML, the reason the error gives)
REFUSED = [
    ("newline", '"Comfy\\nerror: forged line"', "the control character U+000A"),
    ("NUL", '"ComfyUI-KJNodes\\0.py"', "the control character U+0000"),
    ("tab", '"Comfy\\tUI"', "the control character U+0009"),
    ("escape", '"Comfy\\e[31mUI"', "the control character U+001B"),
    ("DEL", '"Comfy\\x7fUI"', "the control character U+007F"),
    ("C1 control", '"Comfy\\x85UI"', "the control character U+0085"),
    ("RLO escaped", '"ComfyUI-\\u202eedoNJK"', "the bidirectional control U+202E"),
    ("RLO raw", "ComfyUI-\u202eedoNJK", "the bidirectional control U+202E"),
    ("LRI", '"Comfy\\u2066UI"', "the bidirectional control U+2066"),
    ("ALM", '"Comfy\\u061cUI"', "the bidirectional control U+061C"),
    ("zero-width space", '"ComfyUI-KJ\\u200bNodes"', "the invisible format character U+200B"),
    ("zero-width joiner", '"ComfyUI\\u200d"', "the invisible format character U+200D"),
    ("BOM", '"\\ufeffComfyUI"', "the invisible format character U+FEFF"),
    ("soft hyphen", '"Comfy\\xadUI"', "the invisible format character U+00AD"),
    ("line separator", '"Comfy\\u2028UI"', "the separator U+2028"),
    ("no-break space", '"Comfy\\xa0UI"', "the separator U+00A0"),
    ("private use", '"Comfy\\ue000UI"', "private-use or unassigned"),
    ("slash", "a/b", "one folder name, not a path"),
    ("parent", '"../../worker"', "one folder name, not a path"),
    ("backslash", '"a\\\\b"', "one folder name, not a path"),
    ("dot", '"."', "it starts with '.'"),
    ("dot dot", '".."', "it starts with '.'"),
    ("hidden", ".bake", "it starts with '.'"),
    ("leading space", '" ComfyUI"', "it starts or ends with a space"),
    ("trailing space", '"ComfyUI "', "it starts or ends with a space"),
    ("option", "-rf", "it starts with '-'"),
    ("empty", '""', "it is empty"),
    ("too long", "x" * 256, "longer than a folder name may be"),
]

ACCEPTED = [
    "ComfyUI-KJNodes",
    "ComfyUI_essentials",
    "rgthree-comfy",
    "was-node-suite-comfyui",
    "ComfyUI Impact Pack",
    "comfyui-节点",
    "Ünïcödé-Nodes",
    "x" * 255,
]


def write(tmp_path: Path, key: str, section: str = "custom_nodes") -> Path:
    path = tmp_path / "nodes.lock.yaml"
    text = BASE.replace("SECTION", section).replace("NAME", key).replace("REV_A", "a" * 40)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("section", ["custom_nodes", "source_builds"])
@pytest.mark.parametrize(("key", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_an_unsafe_name_is_refused_on_one_line(tmp_path, capsys, section, key, reason):
    path = write(tmp_path, key, section)
    assert main(["check", "--strict", "--lock", str(path)]) == 1
    err = capsys.readouterr().err
    errors = err.splitlines()
    assert len(errors) == 1, err  # a newline in the name cannot forge a second line
    assert errors[0].startswith(f"error: {path}: {section}.")
    assert ": expected a plain folder name: it " in errors[0]
    assert reason in errors[0]
    assert errors[0].isprintable(), errors[0]  # shown escaped, not raw


@pytest.mark.parametrize("name", ACCEPTED)
def test_ordinary_names_pass(tmp_path, capsys, name):
    assert name_problem(name) is None
    path = write(tmp_path, name)
    assert main(["check", "--strict", "--lock", str(path)]) == 0, capsys.readouterr().err


def test_a_bidi_name_cannot_pass_for_a_locked_node(tmp_path, capsys):
    # Rendered, "ComfyUI-\u202eedoNJK" reads "ComfyUI-KJNode" in a diff; on disk it is another
    # folder, which nodes verify would then accept as a locked node.
    path = write(tmp_path, "ComfyUI-\u202eedoNJK")
    assert main(["check", "--lock", str(path)]) == 1
    err = capsys.readouterr().err
    assert "custom_nodes.'ComfyUI-\\u202eedoNJK'" in err
