"""`python -m bake provenance`: the image's record of every input, with its hash."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bake.locks.apt import load_apt_lock
from bake.locks.models import HfSource, ModelPin, load_models_lock, write_models_lock
from bake.locks.nodes import load_nodes_lock
from bake.locks.requirements import load_requirements_lock
from bake.provenance import build, canonical

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ("nodes.lock.yaml", "models.lock.yaml", "requirements.lock", "apt.lock.yaml", "Dockerfile")
MIT = "MIT License\n\nCopyright (c) 2024 Someone\n\nPermission is hereby granted, free of charge\n"
RESTRICTED = (
    "The use of this software or any derivative work for the purpose of\n"
    "providing a commercial service, such as (but not limited to) an\n"
    "AI image generation service, is strictly prohibited without obtaining\n"
    "permission and/or a separate commercial license from the copyright holder.\n\n"
    "                        GNU AFFERO GENERAL PUBLIC\n"
    "                       Version 3, 19 November 2007\n"
)


@pytest.fixture
def repo(tmp_path):
    """The committed locks and Dockerfile, with every model locked (the committed models lock
    waits for update-locks), and an installed tree: one folder per node, each with a license."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in LOCKS:
        shutil.copy(ROOT / name, root / name)
    models = load_models_lock(root / "models.lock.yaml")
    for n, entry in enumerate(models.entries(), 1):
        pin = ModelPin(
            size=n * 1000,
            blake3=hashlib.sha256(f"b3-{n}".encode()).hexdigest(),
            sha256=hashlib.sha256(f"sha-{n}".encode()).hexdigest(),
            revision=hashlib.sha1(f"rev-{n}".encode()).hexdigest()
            if isinstance(entry.source, HfSource)
            else None,
        )
        models = models.with_pin(entry.name, pin)
    write_models_lock(models, root / "models.lock.yaml")

    comfyui = tmp_path / "comfyui"
    (comfyui / "custom_nodes").mkdir(parents=True)
    (comfyui / "LICENSE").write_text(MIT)
    for entry in load_nodes_lock(root / "nodes.lock.yaml").entries():
        if entry.kind == "custom_node":
            (comfyui / "custom_nodes" / entry.name).mkdir()
            text = RESTRICTED if entry.name == "RES4LYF" else MIT
            (comfyui / "custom_nodes" / entry.name / "LICENSE").write_text(text)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "sageattention-2.2.0-cp312-cp312-linux_x86_64.whl").write_bytes(b"built wheel")
    return root, comfyui, wheels


def _pins(value) -> set[str]:
    """Every hash-like value in a lock's entries: commits, sha256 and blake3 digests."""
    if isinstance(value, dict):
        return {p for v in value.values() for p in _pins(v)}
    if isinstance(value, list):
        return {p for v in value for p in _pins(v)}
    if isinstance(value, str) and re.fullmatch(r"(sha256:|tree2-blake3:)?[0-9a-f]{40,64}", value):
        return {value}
    return set()


def test_every_pin_of_the_locks_appears_in_the_record(repo):
    root, comfyui, wheels = repo
    document = build(root=root, comfyui_dir=comfyui, sage_wheels=wheels, commit="a" * 40)
    text = canonical(document).decode()
    nodes = load_nodes_lock(root / "nodes.lock.yaml")
    models = load_models_lock(root / "models.lock.yaml")
    requirements = load_requirements_lock(root / "requirements.lock")
    expected = set()
    for lock in (nodes, models, requirements):
        for entry in lock.entry_dicts().values():
            expected |= _pins(entry.get("locked", entry))
    assert len(expected) > len(requirements.pins)  # wheels, commits and model hashes
    missing = sorted(p for p in expected if p.split(":")[-1] not in text)
    assert missing == []

    # and by where it belongs
    wheels_by_name = {w["name"]: w for w in document["python"]["wheels"]}
    assert set(wheels_by_name) == set(requirements.pins)
    for name, pin in requirements.pins.items():
        assert wheels_by_name[name]["version"] == pin.version
        assert wheels_by_name[name]["sha256"] == sorted(pin.hashes)
    for entry in nodes.entries():
        if entry.kind == "custom_node":
            assert document["custom_nodes"][entry.name]["rev"] == entry.locked.rev
    assert document["comfyui"]["rev"] == nodes.comfyui.locked.rev
    assert document["sageattention"]["source"]["rev"] == nodes.get("sageattention").locked.rev
    for entry in models.entries():
        record = document["models"][entry.name]
        assert (record["size"], record["sha256"], record["blake3"], record["placement"]) == (
            entry.locked.size,
            entry.locked.sha256,
            entry.locked.blake3,
            entry.placement,
        )
    apt = load_apt_lock(root / "apt.lock.yaml")
    assert document["apt"] == {"snapshot": apt.snapshot, "pinned": apt.pinned}
    dockerfile = (root / "Dockerfile").read_text()
    digests = set(re.findall(r"^FROM \S+@(sha256:[0-9a-f]{64})", dockerfile, re.M))
    assert {b["digest"] for b in document["base_images"]} == digests and digests
    assert document["commit"] == "a" * 40
    wheel = wheels / "sageattention-2.2.0-cp312-cp312-linux_x86_64.whl"
    assert document["sageattention"]["wheel"] == {
        "file": wheel.name,
        "sha256": "sha256:" + hashlib.sha256(b"built wheel").hexdigest(),
    }
    # licenses as the installed tree holds them
    assert document["comfyui"]["license"]["spdx"] == "MIT"
    res4lyf = document["custom_nodes"]["RES4LYF"]["license"]
    assert res4lyf["spdx"] == "AGPL-3.0" and "commercial service" in res4lyf["restriction"]


def test_the_same_inputs_give_the_same_bytes(repo, tmp_path):
    root, comfyui, wheels = repo
    first = canonical(build(root=root, comfyui_dir=comfyui, sage_wheels=wheels, commit="c"))
    # the same content, arrived another way (another folder, files written in another order)
    moved = tmp_path / "moved"
    shutil.copytree(comfyui, moved)
    again = canonical(build(root=root, comfyui_dir=moved, sage_wheels=wheels, commit="c"))
    assert first == again
    # and any input that changes changes the bytes
    (wheels / "sageattention-2.2.0-cp312-cp312-linux_x86_64.whl").write_bytes(b"rebuilt")
    assert canonical(build(root=root, comfyui_dir=comfyui, sage_wheels=wheels, commit="c")) != first


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bake", "provenance", *args],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "BAKE_ROOT": str(root), "BAKE_COMMIT": ""},
    )


def test_the_command_writes_the_record_and_prints_its_digest(repo, tmp_path):
    root, comfyui, wheels = repo
    out = tmp_path / "out" / "provenance.json"
    args = ("--out", str(out), "--comfyui-dir", str(comfyui), "--sage-wheels", str(wheels))
    result = _cli(root, *args, "--commit", "b" * 40)
    assert result.returncode == 0, result.stderr
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert result.stdout.strip().endswith(f"sha256:{digest}")
    assert json.loads(out.read_bytes())["commit"] == "b" * 40
    # the restricted license is pointed out where the image is built
    assert "custom_nodes.RES4LYF: its license restricts commercial use" in result.stderr
    # without a commit the record says so (null) and the build log warns
    result = _cli(root, *args)
    assert result.returncode == 0
    assert json.loads(out.read_bytes())["commit"] is None
    assert "warning: no repository commit given" in result.stderr


def test_a_base_image_not_pinned_by_digest_is_refused(repo, tmp_path):
    root, comfyui, _ = repo
    dockerfile = root / "Dockerfile"
    text = dockerfile.read_text()
    # someone swaps the runtime base for a tag
    text = re.sub(
        r"^FROM (nvidia/cuda:[^@\s]+-runtime[^@\s]*)@sha256:[0-9a-f]{64}",
        r"FROM \1",
        text,
        flags=re.M,
    )
    dockerfile.write_text(text)
    out = tmp_path / "provenance.json"
    result = _cli(root, "--out", str(out), "--comfyui-dir", str(comfyui))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(
        r"error: Dockerfile: line \d+: FROM nvidia/cuda:12\.8\.0-cudnn-runtime", lines[0]
    )
    assert "is not pinned by digest" in lines[0]
    assert not out.exists()


def test_a_node_missing_from_the_tree_is_refused(repo, tmp_path):
    root, comfyui, _ = repo
    shutil.rmtree(comfyui / "custom_nodes" / "RES4LYF")
    out = tmp_path / "provenance.json"
    result = _cli(root, "--out", str(out), "--comfyui-dir", str(comfyui))
    assert result.returncode == 1
    assert "custom_nodes.RES4LYF is not installed there" in result.stderr
    assert not out.exists()


def test_an_optional_model_not_locked_is_named_as_left_out(repo):
    root, comfyui, _ = repo
    models = load_models_lock(ROOT / "models.lock.yaml")  # the committed one: DaSiWa unlocked
    write_models_lock(models, root / "models.lock.yaml")
    document = build(root=root, comfyui_dir=comfyui, sage_wheels=None, commit=None)
    dasiwa = document["models"]["dasiwa_high"]
    assert dasiwa["locked"] is False and dasiwa["optional"] is True
    assert "sha256" not in dasiwa and "blake3" not in dasiwa
