"""`nodes install`: every entry at its locked commit, verified, repaired, or refused clearly."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.gitrepos import run_git

from bake.errors import GitError, LockError, UnlockedError
from bake.locks.nodes import GitPin, GitSource, NodeEntry, load_nodes_lock
from bake.nodes.install import InstallError, install_nodes
from bake.nodes.resolve import update_nodes

KJ, EASY = "ComfyUI-KJNodes", "ComfyUI-Easy-Use"
# what a models lock would name: a model under models/ and a checkpoint a node keeps in its folder
MODEL_DESTS = {"models/checkpoints/big.safetensors", f"custom_nodes/{KJ}/ckpts/rife/rife47.pth"}


def _locked(remotes, tmp_path: Path, **kwargs) -> Path:
    lock = remotes.lock(tmp_path / "nodes.lock.yaml", **kwargs)
    assert update_nodes(lock, out=lambda _: None) == 0
    return lock


def _install(lock_path: Path, comfy: Path, dests: set[str] = frozenset()) -> list[str]:
    lines: list[str] = []
    install_nodes(load_nodes_lock(lock_path), comfy, dests=set(dests), log=lines.append)
    return lines


def _head(path: Path) -> str:
    return run_git("rev-parse", "HEAD", cwd=path)


def _no_stages(comfy: Path) -> bool:
    places = [comfy.parent, comfy / "custom_nodes"]
    return not any(".bake-stage-" in p.name for d in places if d.is_dir() for p in d.iterdir())


def test_fresh_install_puts_every_entry_at_its_locked_commit(remotes, tmp_path):
    lock_path = _locked(remotes, tmp_path)
    lock = load_nodes_lock(lock_path)
    comfy = tmp_path / "ComfyUI"
    lines = _install(lock_path, comfy)

    assert _head(comfy) == lock.comfyui.locked.rev
    assert (comfy / "main.py").read_text() == "print('comfy')\n"
    for name in (KJ, EASY):
        assert _head(comfy / "custom_nodes" / name) == lock.custom_nodes[name].locked.rev
    kj = comfy / "custom_nodes" / KJ
    assert os.access(kj / "tools/run.sh", os.X_OK) and (kj / "docs").is_symlink()
    # the submodule is at the commit the node records, not at its remote's tip
    front = comfy / "custom_nodes" / EASY / "ComfyUI-Easy-Use-Frontend"
    assert _head(front) == remotes.front_pinned
    assert (front / "app.js").read_text() == "console.log(1)\n"
    assert not (comfy / ".bake").exists()  # no record inside the tree: nothing to trust
    assert f"comfyui: installed at {lock.comfyui.locked.rev[:12]}" in lines
    assert _no_stages(comfy)


def test_rerun_is_a_no_op_without_network_and_keeps_models(remotes, tmp_path):
    lock_path = _locked(remotes, tmp_path)
    comfy = tmp_path / "ComfyUI"
    _install(lock_path, comfy)
    # what the image puts there after the nodes: models and a node's checkpoints
    model = comfy / "models/checkpoints/big.safetensors"
    model.write_bytes(b"weights")
    ckpt = comfy / "custom_nodes" / KJ / "ckpts/rife/rife47.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"rife")
    for repo in (remotes.comfy, *remotes.nodes.values(), remotes.front):
        repo.remove()  # any network use would now fail

    lines = _install(lock_path, comfy, MODEL_DESTS)
    assert sorted(lines) == sorted(
        f"{e.qualified}: ok at {e.locked.rev[:12]}" for e in load_nodes_lock(lock_path).entries()
    )
    assert model.read_bytes() == b"weights" and ckpt.read_bytes() == b"rife"


def test_local_edits_are_repaired_saved_and_reported(remotes, tmp_path):
    lock_path = _locked(remotes, tmp_path)
    comfy = tmp_path / "ComfyUI"
    _install(lock_path, comfy)
    node = comfy / "custom_nodes" / KJ
    (node / "__init__.py").write_text("import os; os.system('curl evil')\n")
    (node / "requirements.txt").unlink()
    (comfy / "main.py").write_text("patched\n")
    untracked = node / "user-config.json"
    untracked.write_text("{}")

    lines = _install(lock_path, comfy)
    rev = load_nodes_lock(lock_path).custom_nodes[KJ].locked.rev
    assert (
        f"custom_nodes.{KJ}: removed what commit {rev[:12]} does not hold: "
        f"custom_nodes/{KJ}/user-config.json"
    ) in lines
    assert (
        f"custom_nodes.{KJ}: repaired: local edits to tracked files (__init__.py, "
        f"requirements.txt) were undone to match {rev[:12]}; the edits were saved to "
        f"{comfy / '.bake/repaired' / (KJ + '.patch')}"
    ) in lines
    assert any(
        line.startswith("comfyui: repaired: local edits to tracked files (main.py)")
        for line in lines
    )
    assert (node / "__init__.py").read_text() == "NODE_CLASS_MAPPINGS = {}\n"
    assert (node / "requirements.txt").exists()
    assert (comfy / "main.py").read_text() == "print('comfy')\n"
    assert not untracked.exists()  # not the commit's, not ignored by its .gitignore: gone
    assert "curl evil" in (comfy / ".bake/repaired" / f"{KJ}.patch").read_text()
    assert all(": ok at " in line for line in _install(lock_path, comfy))


def test_lock_moved_forward_moves_the_node_and_keeps_its_data(remotes, tmp_path):
    lock_path = _locked(remotes, tmp_path)
    comfy = tmp_path / "ComfyUI"
    _install(lock_path, comfy)
    ckpt = comfy / "custom_nodes" / KJ / "ckpts/rife/rife47.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"rife")
    old = _head(comfy / "custom_nodes" / KJ)
    new = remotes.nodes[KJ].commit({"nodes.py": "NEW = 1\n", "tools/run.sh": None}, "kj 2")
    assert update_nodes(lock_path, [KJ], out=lambda _: None) == 0

    lines = _install(lock_path, comfy, MODEL_DESTS)
    assert f"custom_nodes.{KJ}: repaired: it was at {old[:12]}; now at {new[:12]}" in lines
    node = comfy / "custom_nodes" / KJ
    assert _head(node) == new and (node / "nodes.py").exists()
    assert not (node / "tools/run.sh").exists()  # dropped upstream: dropped here
    assert ckpt.read_bytes() == b"rife"
    assert _no_stages(comfy)


def test_models_fetched_before_comfyui_are_kept(remotes, tmp_path):
    lock_path = _locked(remotes, tmp_path)
    comfy = tmp_path / "ComfyUI"
    model = comfy / "models/checkpoints/big.safetensors"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"vae")
    ckpt = comfy / "custom_nodes" / KJ / "ckpts/rife/rife47.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"rife")

    lines = _install(lock_path, comfy, MODEL_DESTS)
    assert any(
        line.startswith("comfyui: repaired: the folder was not a git checkout") for line in lines
    )
    assert model.read_bytes() == b"vae" and ckpt.read_bytes() == b"rife"
    assert (comfy / "models/vae/put_vae_here").exists()
    assert _head(comfy / "custom_nodes" / KJ) == remotes.nodes[KJ].head()


def test_tampered_tree_is_refused_and_nothing_is_installed(remotes, tmp_path):
    lock_path = _locked(remotes, tmp_path)
    lock = load_nodes_lock(lock_path)
    entry = lock.custom_nodes[KJ]
    forged = "tree2-blake3:" + "1" * 64
    lock = lock.with_pin(KJ, dataclasses.replace(entry.locked, tree=forged))
    comfy = tmp_path / "ComfyUI"
    with pytest.raises(InstallError) as caught:
        install_nodes(lock, comfy, log=lambda _: None)
    assert str(caught.value) == (
        f"custom_nodes.{KJ}: the tree fetched at {entry.locked.rev[:12]} is {entry.locked.tree}, "
        f"the lock says {forged}; a mirror served other content, a git filter on this machine "
        "altered the checkout, or the lock was edited by hand. Nothing was installed at its "
        f"path; run scripts/update-locks.py --check --nodes {KJ}"
    )
    assert not (comfy / "custom_nodes" / KJ).exists()
    assert (comfy / "custom_nodes" / EASY / "__init__.py").exists()  # the others went in
    assert _no_stages(comfy)


def test_checkout_altered_by_a_git_filter_is_caught(remotes, tmp_path):
    kj = remotes.nodes[KJ]
    kj.commit({".gitattributes": "*.py filter=rewrite\n"}, "attributes")
    lock_path = _locked(remotes, tmp_path)
    # This machine's git config rewrites .py files on checkout (as LFS or a stray filter can).
    remotes.world.set_config("filter.rewrite.smudge", "sed s/NODE/EVIL/")
    comfy = tmp_path / "ComfyUI"
    with pytest.raises(InstallError, match=f"custom_nodes.{KJ}: the tree fetched at "):
        _install(lock_path, comfy)
    assert not (comfy / "custom_nodes" / KJ).exists()


def test_commit_force_pushed_away_fails_naming_entry(remotes, tmp_path):
    kj = remotes.nodes[KJ]
    first = kj.head()
    doomed = kj.commit({"x.py": "1\n"}, "doomed")
    lock_path = _locked(remotes, tmp_path)
    kj.force_branch("main", first)
    kj.prune()
    comfy = tmp_path / "ComfyUI"
    with pytest.raises(InstallError) as caught:
        _install(lock_path, comfy)
    (line,) = caught.value.lines()
    assert line.startswith(
        f"custom_nodes.{KJ}: the locked commit {doomed} is not on {kj.url} "
        "any more (force-pushed away or deleted; git said: "
    )
    assert "not our ref" in line
    assert not (comfy / "custom_nodes" / KJ).exists() and _no_stages(comfy)


def test_unreachable_remote_fails_naming_entry(remotes, tmp_path):
    lock_path = _locked(remotes, tmp_path)
    remotes.comfy.remove()
    comfy = tmp_path / "ComfyUI"
    with pytest.raises(GitError) as caught:
        _install(lock_path, comfy)
    assert str(caught.value).startswith(
        f"comfyui: cannot reach the remote {remotes.comfy.url}: fatal: "
    )
    assert not comfy.exists() and _no_stages(comfy)


def test_manager_entry_is_refused_even_past_the_parser(remotes, tmp_path):
    lock = load_nodes_lock(_locked(remotes, tmp_path))
    manager = NodeEntry(
        "Tools",
        "custom_node",
        GitSource("https://github.com/Comfy-Org/ComfyUI-Manager.git", "main"),
        GitPin("a" * 40, "2026-01-01T00:00:00+00:00"),
    )
    lock = dataclasses.replace(lock, custom_nodes={**lock.custom_nodes, "Tools": manager})
    comfy = tmp_path / "ComfyUI"
    with pytest.raises(LockError) as caught:
        install_nodes(lock, comfy, log=lambda _: None)
    assert str(caught.value) == (
        "nodes.lock.yaml: custom_nodes.Tools: ComfyUI-Manager is "
        "excluded (it installs code at run time) and is never "
        "installed; remove this entry"
    )
    assert not comfy.exists()


def test_manager_folder_already_in_custom_nodes_is_refused(remotes, tmp_path):
    lock_path = _locked(remotes, tmp_path)
    comfy = tmp_path / "ComfyUI"
    (comfy / "custom_nodes" / "comfyui-manager").mkdir(parents=True)
    with pytest.raises(
        LockError,
        match=r"ComfyUI-Manager is excluded .* but is present "
        r"here; delete this folder",
    ):
        _install(lock_path, comfy)


def test_unlocked_entry_is_refused(remotes, tmp_path):
    lock_path = _locked(remotes, tmp_path)
    lock = load_nodes_lock(lock_path).with_pin(KJ, None)
    with pytest.raises(UnlockedError, match=f"custom_nodes.{KJ}: not locked"):
        install_nodes(lock, tmp_path / "ComfyUI", log=lambda _: None)


def test_entry_without_tree_is_verified_against_its_commit(remotes, tmp_path):
    lock_path = _locked(remotes, tmp_path)
    lock = load_nodes_lock(lock_path)
    entry = lock.custom_nodes[KJ]
    lock = lock.with_pin(KJ, dataclasses.replace(entry.locked, tree=None))
    comfy = tmp_path / "ComfyUI"
    lines: list[str] = []
    install_nodes(lock, comfy, log=lines.append)
    assert any(line.startswith(f"custom_nodes.{KJ}: note: the lock has no tree") for line in lines)
    # later edits are caught against the commit's own objects
    (comfy / "custom_nodes" / KJ / "__init__.py").write_text("edited\n")
    lines = []
    install_nodes(lock, comfy, log=lines.append)
    assert any(line.startswith(f"custom_nodes.{KJ}: repaired:") for line in lines)
    assert (comfy / "custom_nodes" / KJ / "__init__.py").read_text() == "NODE_CLASS_MAPPINGS = {}\n"


def test_stray_node_folder_and_file_are_removed_and_named(remotes, tmp_path):
    lock_path = _locked(remotes, tmp_path)
    comfy = tmp_path / "ComfyUI"
    _install(lock_path, comfy)
    (comfy / "custom_nodes" / "Unpinned").mkdir()
    (comfy / "custom_nodes" / "Unpinned" / "__init__.py").write_text("X = 1\n")
    (comfy / "custom_nodes" / "evil.py").write_text("import os\n")
    lines = _install(lock_path, comfy)
    rev = load_nodes_lock(lock_path).comfyui.locked.rev
    assert (
        f"comfyui: removed what commit {rev[:12]} does not hold: custom_nodes/Unpinned, "
        "custom_nodes/evil.py"
    ) in lines
    assert sorted(p.name for p in (comfy / "custom_nodes").iterdir()) == sorted(
        [EASY, KJ, "example_node.py.example"]
    )


def test_cli_installs_and_reports_failures(remotes, tmp_path):
    lock_path = _locked(remotes, tmp_path)
    comfy = tmp_path / "ComfyUI"
    cmd = [
        sys.executable,
        "-m",
        "bake",
        "nodes",
        "install",
        "--comfyui-dir",
        str(comfy),
        "--lock",
        str(lock_path),
    ]
    env = remotes.world.env()
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"3 entries installed and verified in {comfy}" in done.stdout
    verify = [*cmd[:4], "verify", *cmd[5:]]
    checked = subprocess.run(verify, env=env, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "nodes verify: 3 entries in " in checked.stdout

    remotes.nodes[KJ].commit({"x.py": "2\n"}, "next")
    assert update_nodes(lock_path, [KJ], out=lambda _: None) == 0
    remotes.nodes[KJ].remove()
    failed = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"error: custom_nodes.{KJ}: cannot reach the remote ")


def test_submodule_moved_upstream_follows_the_lock(remotes, tmp_path):
    lock_path = _locked(remotes, tmp_path)
    comfy = tmp_path / "ComfyUI"
    _install(lock_path, comfy)
    front_tip = remotes.front.head()
    easy_rev = remotes.nodes[EASY].move_submodule("ComfyUI-Easy-Use-Frontend", front_tip)
    lines: list[str] = []
    assert update_nodes(lock_path, [EASY], out=lines.append) == 0
    assert "    locked.tree: " in "\n".join(lines)  # the submodule's files are in the tree

    _install(lock_path, comfy)
    node = comfy / "custom_nodes" / EASY
    assert _head(node) == easy_rev
    assert _head(node / "ComfyUI-Easy-Use-Frontend") == front_tip
    assert (node / "ComfyUI-Easy-Use-Frontend/app.js").read_text() == "console.log(2)\n"


def test_installed_checkouts_never_store_credentials(world, tmp_path):
    from bake.nodes import git

    repo = tmp_path / "checkout"
    git.init(repo, "https://builder:t0ken@git.example.invalid/x/Node.git", entry="e")
    assert (
        run_git("config", "--get", "remote.origin.url", cwd=repo)
        == "https://git.example.invalid/x/Node.git"
    )


def test_stage_left_by_a_killed_install_is_cleared(remotes, tmp_path):
    lock_path = _locked(remotes, tmp_path)
    comfy = tmp_path / "ComfyUI"
    _install(lock_path, comfy)
    stale = comfy / "custom_nodes" / f".{KJ}.bake-stage-x1y2z3"
    (stale / "half").mkdir(parents=True)
    remotes.nodes[KJ].commit({"y.py": "1\n"}, "next")
    assert update_nodes(lock_path, [KJ], out=lambda _: None) == 0
    _install(lock_path, comfy)
    assert not stale.exists() and _no_stages(comfy)


def test_public_urls_install_through_insteadof_mirrors(world, tmp_path):
    # The lock and .gitmodules name public https URLs, as the real ones do; git's config maps
    # them to local mirrors, submodule included.
    public = "https://github.example.invalid/"
    front = world.repo("Frontend")
    pinned = front.commit({"app.js": "1\n"})
    node = world.repo("Node")
    node.commit({"__init__.py": "X = 1\n"})
    node.add_submodule("web", front, pinned, url=f"{public}o/Frontend.git")
    comfy = world.repo("ComfyUI")
    comfy.commit({"main.py": "x\n"})
    for repo in (front, node, comfy):
        world.mirror(f"{public}o/{repo.name}.git", repo)
    from bake.locks.nodes import NodesLock, write_nodes_lock

    lock_path = tmp_path / "nodes.lock.yaml"
    write_nodes_lock(
        NodesLock(
            NodeEntry("comfyui", "comfyui", GitSource(f"{public}o/ComfyUI.git", "main")),
            {"Node": NodeEntry("Node", "custom_node", GitSource(f"{public}o/Node.git", "main"))},
            {},
        ),
        lock_path,
    )
    assert update_nodes(lock_path, out=lambda _: None) == 0
    target = tmp_path / "ComfyUI"
    _install(lock_path, target)
    assert (target / "custom_nodes/Node/web/app.js").read_text() == "1\n"
    assert (
        run_git("config", "--get", "remote.origin.url", cwd=target / "custom_nodes/Node")
        == f"{public}o/Node.git"
    )


def test_a_submodule_checkout_removed_is_restored(remotes, tmp_path):
    import shutil

    lock_path = _locked(remotes, tmp_path)
    comfy = tmp_path / "ComfyUI"
    _install(lock_path, comfy)
    front = comfy / "custom_nodes" / EASY / "ComfyUI-Easy-Use-Frontend"
    shutil.rmtree(front)
    lines = _install(lock_path, comfy)
    assert any(line.startswith(f"custom_nodes.{EASY}: repaired: ") for line in lines), lines
    assert (front / "app.js").read_text() == "console.log(1)\n"
