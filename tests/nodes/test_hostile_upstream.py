"""A hostile or careless upstream cannot take a whole run down or smuggle text into the lock:
each entry fails alone and named, the others are still resolved, written and installed."""

from __future__ import annotations

from pathlib import Path

from bake.locks.nodes import load_nodes_lock
from bake.nodes.install import install_nodes
from bake.nodes.resolve import update_nodes
from bake.nodes.verify import verify_nodes

KJ, EASY = "ComfyUI-KJNodes", "ComfyUI-Easy-Use"
NON_UTF8 = b"caf\xe9.py".decode("utf-8", "surrogateescape")  # Latin-1 bytes, not UTF-8


def _update(lock: Path, check: bool = False) -> tuple[int, list[str]]:
    lines: list[str] = []
    return update_nodes(lock, check=check, out=lines.append), lines


def test_a_non_utf8_file_name_resolves_installs_and_verifies(remotes, tmp_path):
    remotes.nodes[KJ].commit({NON_UTF8: "X = 1\n"}, "a Latin-1 file name")
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    code, lines = _update(lock)
    assert code == 0, lines
    pinned = load_nodes_lock(lock)
    assert all(e.locked is not None for e in pinned.entries())
    comfy = tmp_path / "ComfyUI"
    install_nodes(pinned, comfy, log=lambda _: None)
    assert (comfy / "custom_nodes" / KJ / NON_UTF8).read_text() == "X = 1\n"
    assert not [f for r in verify_nodes(pinned, comfy, dests=set()) for f in r.findings]
    assert _update(lock, check=True)[0] == 0


def test_a_binary_requirements_file_fails_its_entry_alone(remotes, tmp_path):
    remotes.nodes[KJ].commit({"requirements.txt": b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe"}, "oops")
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    code, lines = _update(lock)
    assert code == 1
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith(
        f"error: custom_nodes.{KJ}: requirements.txt at {remotes.nodes[KJ].head()[:12]} is not "
        "UTF-8 text ("
    )
    pinned = load_nodes_lock(lock)  # the others were resolved and written
    assert pinned.custom_nodes[KJ].locked is None
    assert pinned.custom_nodes[EASY].locked is not None and pinned.comfyui.locked is not None


def test_a_symlinked_requirements_file_is_refused(remotes, tmp_path):
    remotes.nodes[KJ].commit(
        {"requirements.txt": None},
        "link it",
        symlinks={"requirements.txt": "../../../../etc/passwd"},
    )
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    code, lines = _update(lock)
    assert code == 1
    assert (
        f"error: custom_nodes.{KJ}: requirements.txt at {remotes.nodes[KJ].head()[:12]} is a "
        "symlink, not a regular file of the commit; a requirements file must be one (fix "
        "requirements_file in nodes.lock.yaml, or ask upstream)"
    ) in lines
    assert not any("root:" in line for line in lines)
    assert load_nodes_lock(lock).custom_nodes[KJ].locked is None
    assert load_nodes_lock(lock).custom_nodes[EASY].locked is not None
