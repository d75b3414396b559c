"""A symlink of a pinned commit stays inside its entry's folder. Upstream commits a link to a
file outside the node (`helper.py -> /home/comfy/.cache/x.py`, `helper.py ->
../../input/payload.py`): installed, `import helper` would run whatever lies there, which no
lock pins. `update-locks --nodes` refuses to pin such a commit, `nodes install` refuses to
install it and `nodes verify` names it, each naming the link and its target. Links inside the
folder stay allowed."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from bake.locks.nodes import load_nodes_lock, write_nodes_lock
from bake.nodes import git
from bake.nodes.install import InstallError, install_nodes
from bake.nodes.resolve import update_nodes

KJ, EASY = "ComfyUI-KJNodes", "ComfyUI-Easy-Use"
ROOT = Path(__file__).resolve().parents[2]

ESCAPES = {
    "absolute": ("helper.py", "/home/comfy/.cache/x.py", "an absolute link"),
    "up and out": ("helper.py", "../../input/payload.py", "it resolves outside the folder"),
    # lexically `sub/up/../../payload.py` is `payload.py`, inside; but `sub/up` is a link to
    # the node's root, so git's checkout resolves it one level above the node
    "through another link": (
        "sub/helper.py",
        "up/../../payload.py",
        "it resolves outside the folder",
    ),
}


def _update(lock: Path, names=(), check: bool = False) -> tuple[int, list[str]]:
    lines: list[str] = []
    return update_nodes(lock, names, check=check, out=lines.append), lines


def _escaping_commit(remotes, form: str) -> str:
    link, target, _ = ESCAPES[form]
    links = {link: target}
    if form == "through another link":
        links["sub/up"] = ".."  # a link inside the folder, allowed on its own
    return remotes.nodes[KJ].commit({}, f"link {form}", symlinks=links)


@pytest.mark.parametrize("form", list(ESCAPES))
def test_update_locks_refuses_to_pin_a_commit_whose_link_leads_out(remotes, tmp_path, form):
    link, target, why = ESCAPES[form]
    rev = _escaping_commit(remotes, form)
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    code, lines = _update(lock)
    assert code == 1
    assert [line for line in lines if line.startswith("error: ")] == [
        f"error: custom_nodes.{KJ}: commit {rev[:12]} holds symlinks that lead outside its "
        f"folder: {link} -> {target} ({why}). A link must stay inside its entry's folder: pin "
        "another commit (original.ref) or ask upstream"
    ]
    pinned = load_nodes_lock(lock)
    assert pinned.custom_nodes[KJ].locked is None  # the entry fails alone
    assert pinned.custom_nodes[EASY].locked is not None


def test_update_locks_check_refuses_a_lock_pinned_to_such_a_commit(remotes, tmp_path):
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    assert _update(lock)[0] == 0
    rev = _escaping_commit(remotes, "absolute")
    pinned = load_nodes_lock(lock)
    entry = pinned.custom_nodes[KJ]
    forged = pinned.with_pin(KJ, dataclasses.replace(entry.locked, rev=rev))
    write_nodes_lock(forged, lock)
    code, lines = _update(lock, check=True)
    assert code == 1
    assert (
        f"nodes.lock.yaml: custom_nodes.{KJ}: commit {rev[:12]} holds symlinks that lead outside "
        "its folder: helper.py -> /home/comfy/.cache/x.py (an absolute link). A link must stay "
        "inside its entry's folder: pin another commit (original.ref) or ask upstream"
    ) in lines


def test_comfyuis_own_links_may_not_lead_into_the_folders_jobs_write(remotes, tmp_path):
    rev = remotes.comfy.commit({}, "link", symlinks={"helper.py": "input/payload.py"})
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    code, lines = _update(lock)
    assert code == 1
    assert (
        f"error: comfyui: commit {rev[:12]} holds symlinks that lead outside its folder: "
        "helper.py -> input/payload.py (it resolves into input/, which jobs write at run time). "
        "A link must stay inside its entry's folder: pin another commit (original.ref) or ask "
        "upstream"
    ) in lines


def _pinned_to(remotes, tmp_path: Path, rev: str, base: str) -> Path:
    """A lock whose KJNodes pin says `rev` though update-locks resolved `base`: written by hand,
    or by an older bake."""
    lock = remotes.lock(tmp_path / "nodes.lock.yaml", refs={KJ: base})
    assert _update(lock)[0] == 0
    pinned = load_nodes_lock(lock)
    locked = dataclasses.replace(pinned.custom_nodes[KJ].locked, rev=rev, tree=None)
    write_nodes_lock(pinned.with_pin(KJ, locked), lock)
    return lock


def test_install_refuses_such_a_commit_and_installs_nothing_at_its_path(remotes, tmp_path):
    good = remotes.nodes[KJ].head()
    rev = _escaping_commit(remotes, "up and out")
    lock = _pinned_to(remotes, tmp_path, rev, good)
    comfy = tmp_path / "ComfyUI"
    with pytest.raises(InstallError) as caught:
        install_nodes(load_nodes_lock(lock), comfy, log=lambda _: None)
    assert str(caught.value) == (
        f"custom_nodes.{KJ}: commit {rev[:12]} holds symlinks that lead outside "
        f"custom_nodes/{KJ}: helper.py -> ../../input/payload.py (it resolves outside the "
        "folder). A link must stay inside its entry's folder; nothing was installed at its path: "
        f"pin another commit (scripts/update-locks.py --nodes {KJ}) or ask upstream"
    )
    assert not (comfy / "custom_nodes" / KJ).exists()
    assert (comfy / "custom_nodes" / EASY / "__init__.py").exists()

    # an installed node is not moved to it either
    (tmp_path / "good").mkdir()
    lock_good = _pinned_to(remotes, tmp_path / "good", good, good)
    install_nodes(load_nodes_lock(lock_good), comfy, log=lambda _: None)
    with pytest.raises(InstallError, match=r"helper\.py -> \.\./\.\./input/payload\.py"):
        install_nodes(load_nodes_lock(lock), comfy, log=lambda _: None)
    assert git.head(comfy / "custom_nodes" / KJ) == good


def test_verify_names_such_a_link_in_a_tree_that_holds_it(remotes, tmp_path):
    good = remotes.nodes[KJ].head()
    rev = _escaping_commit(remotes, "absolute")
    lock = _pinned_to(remotes, tmp_path, rev, good)
    comfy = tmp_path / "ComfyUI"
    with pytest.raises(InstallError):
        install_nodes(load_nodes_lock(lock), comfy, log=lambda _: None)  # all but KJNodes
    # KJNodes as an older bake (or a plain git clone) left it: at that commit, link and all
    node = comfy / "custom_nodes" / KJ
    git.fetch_checkout(node, remotes.nodes[KJ].url, rev, entry="test")
    models = tmp_path / "models.lock.yaml"
    models.write_text("version: 1\nmodels: {}\n")
    cmd = [sys.executable, "-m", "bake", "nodes", "verify", "--comfyui-dir", str(comfy)]
    cmd += ["--lock", str(lock), "--models-lock", str(models)]
    env = {**remotes.world.env(), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        f"error: custom_nodes/{KJ}/helper.py: unsafe: a symlink of commit {rev[:12]} to "
        f"/home/comfy/.cache/x.py: an absolute link; a link must stay inside custom_nodes/{KJ} "
        "(pin a commit without it)"
    )
    with pytest.raises(InstallError, match=f"custom_nodes/{KJ}/helper.py: unsafe: "):
        install_nodes(load_nodes_lock(lock), comfy, log=lambda _: None)


def test_links_inside_the_folder_stay_allowed(remotes, tmp_path):
    remotes.nodes[KJ].commit(
        {},
        "links inside",
        symlinks={
            "sub/up": "..",  # the node's root
            "sub/run.sh": "up/tools/run.sh",  # through it, still inside
            "web/lib": "../tools",  # a folder
            "dangling.py": "generated/later.py",  # not there (yet): inside all the same
        },
    )
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    code, lines = _update(lock)
    assert code == 0, lines
    comfy = tmp_path / "ComfyUI"
    install_nodes(load_nodes_lock(lock), comfy, log=lambda _: None)
    node = comfy / "custom_nodes" / KJ
    assert (node / "sub/run.sh").read_text() == "#!/bin/sh\necho hi\n"
    assert (node / "docs").is_symlink()  # the fixture's own docs -> tools
    assert git.escaping_links(node, entry="test") == []
