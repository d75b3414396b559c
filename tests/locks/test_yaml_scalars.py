"""A lock is read by PyYAML (YAML 1.1) here and by YAML 1.2 readers elsewhere (a reviewer's
tooling, Go's yaml.v3, ruamel, js-yaml): a plain scalar the two read differently, or a number
in another base, is refused with file, line and value, and so is an explicit tag. Nesting that
would exhaust Python's recursion is a clean error naming the file, not a RecursionError."""

from __future__ import annotations

from pathlib import Path

import pytest

from bake.cli import main
from bake.errors import LockError
from bake.locks.models import dumps_models_lock, loads_models_lock
from bake.locks.nodes import dumps_nodes_lock, loads_nodes_lock
from bake.locks.yamlio import MAX_DEPTH, load_yaml

SHA, BLAKE, REV = "d" * 64, "c" * 64, "a" * 40

MODELS = f"""\
version: 1
models:
  vae:
    dest: models/vae/wan_2.1_vae.safetensors
    locked:
      blake3: {BLAKE}
      revision: {REV}
      sha256: {SHA}
      size: 254
    optional: false
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
exclude:
  - ComfyUI-Manager
"""


def check(tmp_path: Path, name: str, text: str, capsys) -> tuple[int, list[str]]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    code = main(["check", "--strict", "--lock", str(path)])
    err = capsys.readouterr().err.splitlines()
    return code, [line for line in err if line.startswith("error: ")]


def test_the_base_locks_pass(tmp_path, capsys):
    assert check(tmp_path, "models.lock.yaml", MODELS, capsys) == (0, [])
    assert check(tmp_path, "nodes.lock.yaml", NODES, capsys) == (0, [])


# (the line as written, what a hand edit writes instead, what the message must say)
MODEL_EDITS = [
    ("size: 254", "size: 1:30", "the plain value 1:30 is a base-60 (sexagesimal) number"),
    ("size: 254", "size: 4:14", "YAML 1.1 (PyYAML) reads the number 254, YAML 1.2 the text"),
    ("size: 254", "size: 0xfe", "the plain value 0xfe is a hexadecimal number"),
    ("size: 254", "size: 0o376", "YAML 1.1 (PyYAML) reads the text '0o376', YAML 1.2 the"),
    ("size: 254", "size: 0376", "reads the number 254, YAML 1.2 the number 376"),
    ("size: 254", "size: 0b11111110", "the plain value 0b11111110 is a binary number"),
    ("size: 254", "size: 2_54", "a number with '_' separators"),
    ("size: 254", "size: 2.54e2", "a number in exponent notation"),
    ("optional: false", "optional: no", "the plain value no is a YAML 1.1 boolean word"),
    ("optional: false", "optional: off", "write true or false for a yes/no field"),
    ("optional: false", "optional: N", "the YAML 1.1 spec a boolean"),
    ("revision: main", "revision: on", "YAML 1.1 (PyYAML) reads the boolean true"),
    ("revision: main", "revision: 0777", "YAML 1.1 (PyYAML) reads the number 511"),
    ("repo: Org/Repo", "repo: yes", "quote it ('yes') for the text"),
]


@pytest.mark.parametrize(("old", "new", "said"), MODEL_EDITS, ids=[e[1] for e in MODEL_EDITS])
def test_a_yaml_1_1_only_scalar_in_the_models_lock_is_refused(tmp_path, capsys, old, new, said):
    text = MODELS.replace(old, new, 1)
    line = next(n for n, raw in enumerate(text.splitlines(), 1) if raw.strip() == new)
    code, errors = check(tmp_path, "models.lock.yaml", text, capsys)
    assert code == 1 and len(errors) == 1, errors
    value = new.split(": ", 1)[1]
    assert errors[0].startswith(
        f"error: {tmp_path / 'models.lock.yaml'}: line {line}: the plain value {value} is "
    )
    assert said in errors[0]


NODE_EDITS = [
    ("ref: master", "ref: on", "the plain value on is a YAML 1.1 boolean word"),
    ("ref: master", "ref: 1e3", "a number in exponent notation"),
    ("ref: master", "ref: 08", "YAML 1.1 (PyYAML) reads the text '08', YAML 1.2 the number 8"),
    ("  - ComfyUI-Manager", "  - y", "the plain value y is a YAML 1.1 boolean word"),
    ("  - torch", "  - 1:5", "the plain value 1:5 is a base-60"),
    ("version: 1", "version: 0x1", "the plain value 0x1 is a hexadecimal number"),
]


@pytest.mark.parametrize(("old", "new", "said"), NODE_EDITS, ids=[e[1] for e in NODE_EDITS])
def test_a_yaml_1_1_only_scalar_in_the_nodes_lock_is_refused(tmp_path, capsys, old, new, said):
    code, errors = check(tmp_path, "nodes.lock.yaml", NODES.replace(old, new, 1), capsys)
    assert code == 1 and len(errors) == 1, errors
    assert said in errors[0]


def test_quoted_the_same_text_is_fine(tmp_path, capsys):
    text = NODES.replace("ref: master", "ref: 'on'").replace("  - torch", "  - '1:5'")
    assert check(tmp_path, "nodes.lock.yaml", text, capsys) == (0, [])
    assert loads_nodes_lock(text).comfyui.original.ref == "on"


@pytest.mark.parametrize(
    ("old", "new"),
    [("size: 254", "size: !!int '254'"), ("ref: master", "ref: !!str master")],
)
def test_explicit_tags_are_refused(tmp_path, capsys, old, new):
    name = "models.lock.yaml" if old.startswith("size") else "nodes.lock.yaml"
    text = (MODELS if name.startswith("models") else NODES).replace(old, new)
    code, errors = check(tmp_path, name, text, capsys)
    assert code == 1 and len(errors) == 1
    assert "explicit tag !!" in errors[0] and "refused" in errors[0]


@pytest.mark.parametrize(
    "deep",
    [
        "deep: " + "[" * 5000 + "]" * 5000 + "\n",
        "deep: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
        "deep:\n  " + "- " * 5000 + "x\n",
        "deep:\n" + "".join("  " * (d + 1) + f"k{d}:\n" for d in range(5000)) + " " * 10002 + "x\n",
    ],
    ids=["flow sequences", "flow mappings", "block sequences", "block mappings"],
)
def test_5000_deep_nesting_is_a_clean_lock_error_naming_the_file(tmp_path, capsys, deep):
    code, errors = check(tmp_path, "nodes.lock.yaml", NODES + deep, capsys)
    assert code == 1 and len(errors) == 1, errors
    assert errors[0].startswith(f"error: {tmp_path / 'nodes.lock.yaml'}: line ")
    assert f"nesting deeper than {MAX_DEPTH} levels refused" in errors[0]


def test_deep_nesting_is_refused_by_the_loader_itself():
    with pytest.raises(LockError) as raised:
        load_yaml("a: " + "[" * 5000 + "]" * 5000, "deep.yaml")
    assert str(raised.value).startswith("deep.yaml: line 1: nesting deeper than")


def test_what_a_lock_needs_is_well_within_the_depth():
    load_yaml("a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1), "ok.yaml")


def test_the_writer_quotes_strings_that_would_be_refused():
    # A ref or a requirement line that happens to read as a 1.1-only scalar must survive a
    # rewrite by update-locks: the canonical writer quotes it, and the text loads back as is.
    text = NODES.replace("ref: master", "ref: '0o17'").replace("  - torch", "  - 'yes'")
    lock = loads_nodes_lock(text)
    written = dumps_nodes_lock(lock)
    assert "ref: '0o17'" in written and "- 'yes'" in written
    assert loads_nodes_lock(written) == lock
    models = loads_models_lock(MODELS.replace("repo: Org/Repo", "repo: '1:30'"))
    assert loads_models_lock(dumps_models_lock(models)) == models


def test_the_committed_locks_read_the_same_under_both_versions():
    from support.lockdata import REPO

    for name in ("nodes.lock.yaml", "models.lock.yaml", "apt.lock.yaml", "node-classes.yaml"):
        load_yaml((REPO / name).read_text(encoding="utf-8"), name)
