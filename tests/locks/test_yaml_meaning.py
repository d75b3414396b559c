"""YAML that means one thing: a lock with a key given twice, an anchor, an alias or a merge key
is refused with its file, line and key, in every lock, as `bake check` reads the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bake.cli import main

SHA, BLAKE, REV = "d" * 64, "c" * 64, "a" * 40

MODELS = f"""\
version: 1
models:
  rife47:
    dest: custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife/rife47.pth
    locked:
      blake3: {BLAKE}
      sha256: {SHA}
      size: 254
    original:
      source: url
      url: https://example.invalid/rife47.pth
    placement: image
  vae:
    dest: models/vae/wan_2.1_vae.safetensors
    locked:
      blake3: {BLAKE}
      revision: {REV}
      sha256: {SHA}
      size: 254
    original:
      path: split_files/vae/wan_2.1_vae.safetensors
      repo: Org/Repo
      revision: main
      source: hf
    placement: image
"""

NODES = f"""\
version: 1
comfyui:
  locked:
    date: '2026-01-16T23:02:28-05:00'
    requirements:
      - torch
    rev: {REV}
  original:
    ref: master
    url: https://example.invalid/ComfyUI.git
  requirements_file: requirements.txt
custom_nodes:
  ComfyUI-KJNodes:
    locked:
      date: '2026-01-18T01:01:12+02:00'
      rev: {"b" * 40}
      tree: tree2-blake3:{BLAKE}
    original:
      ref: main
      url: https://example.invalid/kijai/ComfyUI-KJNodes.git
exclude:
  - ComfyUI-Manager
"""


def check(tmp_path: Path, name: str, text: str, capsys) -> tuple[int, list[str]]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    code = main(["check", "--strict", "--lock", str(path)])
    err = capsys.readouterr().err.splitlines()
    return code, [line for line in err if line.startswith("error: ")]


@pytest.mark.parametrize(
    ("name", "text"), [("models.lock.yaml", MODELS), ("nodes.lock.yaml", NODES)]
)
def test_the_base_locks_pass(tmp_path, capsys, name, text):
    assert check(tmp_path, name, text, capsys) == (0, [])


def test_a_second_entry_of_the_same_name_is_refused_not_last_wins(tmp_path, capsys):
    # appended below the real one: PyYAML alone keeps this one and drops the reviewed entry
    evil = MODELS + (
        "  vae:\n"
        "    dest: models/vae/wan_2.1_vae.safetensors\n"
        "    original:\n"
        "      source: url\n"
        "      url: https://attacker.invalid/vae.safetensors\n"
    )
    code, errors = check(tmp_path, "models.lock.yaml", evil, capsys)
    assert code == 1
    assert errors == [
        f"error: {tmp_path / 'models.lock.yaml'}: line 26: duplicate key 'vae' (first on line "
        "13): YAML would keep only the last one; remove or rename one of them"
    ]


def test_a_second_locked_key_that_drops_the_sha256_is_refused(tmp_path, capsys):
    evil = MODELS.replace(
        "    original:\n      path:",
        f"    locked:\n      blake3: {BLAKE}\n      revision: {REV}\n      size: 254\n"
        "    original:\n      path:",
    )
    code, errors = check(tmp_path, "models.lock.yaml", evil, capsys)
    assert code == 1
    assert len(errors) == 1
    assert "line 20: duplicate key 'locked' (first on line 15)" in errors[0]


def test_a_duplicate_key_in_the_nodes_lock_is_refused(tmp_path, capsys):
    # a second rev under comfyui.locked: which commit is built would depend on the parser
    evil = NODES.replace("    rev: " + REV + "\n", f"    rev: {REV}\n    rev: {'e' * 40}\n")
    code, errors = check(tmp_path, "nodes.lock.yaml", evil, capsys)
    assert code == 1
    assert errors == [
        f"error: {tmp_path / 'nodes.lock.yaml'}: line 8: duplicate key 'rev' (first on line 7): "
        "YAML would keep only the last one; remove or rename one of them"
    ]


def test_anchors_and_aliases_are_refused(tmp_path, capsys):
    # one edit of the anchored value would change both entries
    evil = MODELS.replace(
        "    original:\n      source: url", "    original: &shared\n      source: url"
    )
    code, errors = check(tmp_path, "models.lock.yaml", evil, capsys)
    assert code == 1 and len(errors) == 1
    assert "line 9: anchor &shared refused" in errors[0]
    alias_only = NODES.replace(
        "  requirements_file: requirements.txt\n", "  requirements_file: *x\n"
    )
    code, errors = check(tmp_path, "nodes.lock.yaml", alias_only, capsys)
    assert code == 1 and len(errors) == 1
    assert "line 11: alias *x refused" in errors[0]


def test_merge_keys_are_refused(tmp_path, capsys):
    # `<<` pulls fields in from elsewhere: the entry is not what its own lines say
    evil = NODES.replace(
        "    original:\n      ref: main\n",
        "    original:\n      <<: {url: https://attacker.invalid/x.git}\n      ref: main\n",
    )
    code, errors = check(tmp_path, "nodes.lock.yaml", evil, capsys)
    assert code == 1 and len(errors) == 1
    assert "nodes.lock.yaml: line 19: merge key '<<' refused" in errors[0]


def test_the_committed_locks_use_none_of_it():
    from support.lockdata import REPO

    from bake.locks.yamlio import load_yaml

    for name in ("nodes.lock.yaml", "models.lock.yaml"):
        load_yaml((REPO / name).read_text(encoding="utf-8"), name)
