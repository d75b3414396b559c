"""`nodes verify` and the clean-up of `nodes install`, tried as an attacker would: planted
byte-code, a shadowing package, a stray top-level node file, a symlinked folder, a doctored
record inside the tree. Each passed `nodes install` ("ok") before; each is now named by
`nodes verify` (exit 1) and removed or repaired by `nodes install`. And what real nodes need
keeps working: data they write at first start, byte-code of their own source, model files
they keep in their folder."""

from __future__ import annotations

import importlib.util
import json
import os
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

from bake.hashing import tree_hash_paths
from bake.locks.nodes import load_nodes_lock
from bake.nodes.install import InstallError, install_nodes
from bake.nodes.resolve import update_nodes

KJ = "ComfyUI-KJNodes"
ROOT = Path(__file__).resolve().parents[2]
TAG = sys.implementation.cache_tag

MODELS_LOCK = f"""\
version: 1
models:
  rife47:
    dest: custom_nodes/{KJ}/ckpts/rife/rife47.pth
    original:
      source: url
      url: https://models.example.invalid/rife47.pth
    placement: image
  vae:
    dest: models/vae/wan_2.1_vae.safetensors
    original:
      source: url
      url: https://models.example.invalid/vae.safetensors
    placement: image
"""


@pytest.fixture
def tree(remotes, tmp_path):
    """ComfyUI and the nodes installed from a lock, KJNodes with a module, a package folder
    and a .gitignore for the data it writes at first start (as Custom-Scripts and Easy-Use do)."""
    remotes.nodes[KJ].commit(
        {
            "helper.py": "def greet():\n    return 'hello'\n",
            "pkg/mod.py": "VALUE = 1\n",
            "config.json": "{}\n",
            # as Custom-Scripts has it: the node copies it to pysssss.json at first start
            "pysssss.default.json": '{\n  "name": "CustomScripts",\n  "logging": false\n}\n',
            ".gitignore": "__pycache__\npysssss.json\nstyles/**\nckpts\n",
        },
        "kj: helper, pkg, gitignore",
    )
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    assert update_nodes(lock, out=lambda _: None) == 0
    models = tmp_path / "models.lock.yaml"
    models.write_text(MODELS_LOCK)
    comfy = tmp_path / "ComfyUI"
    install(lock, models, comfy)
    return lock, models, comfy


def install(lock: Path, models: Path, comfy: Path) -> list[str]:
    from bake.nodes.verify import model_dests

    lines: list[str] = []
    install_nodes(load_nodes_lock(lock), comfy, dests=model_dests(models), log=lines.append)
    return lines


def verify(lock: Path, models: Path, comfy: Path, env=None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bake", "nodes", "verify", "--comfyui-dir", str(comfy)]
    cmd += ["--lock", str(lock), "--models-lock", str(models)]
    env = {**(env or os.environ), "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)


def errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error: ")]


def test_a_clean_install_verifies(tree):
    lock, models, comfy = tree
    done = verify(lock, models, comfy)
    assert done.returncode == 0, done.stderr
    assert (
        "nodes verify: 3 entries in " in done.stdout and "hold exactly their commits" in done.stdout
    )


def test_planted_pyc_compiled_from_other_source_is_named_and_removed(tree, tmp_path):
    lock, models, comfy = tree
    node = comfy / "custom_nodes" / KJ
    helper = node / "helper.py"
    # evil source of the same size, compiled to a timestamp pyc whose header matches
    # helper.py's mtime and size: Python would load it instead of helper.py
    evil = tmp_path / "evil" / "helper.py"
    evil.parent.mkdir()
    evil.write_text("def greet():\n    return 'pwnd!'\n")
    assert evil.stat().st_size == helper.stat().st_size
    stat = helper.stat()
    os.utime(evil, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    planted = node / "__pycache__" / f"helper.{TAG}.pyc"
    planted.parent.mkdir()
    py_compile.compile(str(evil), cfile=str(planted), dfile=str(helper), doraise=True)
    os.utime(helper, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    # the planted byte-code really is what Python would run
    probe = subprocess.run(
        [sys.executable, "-c", "import helper; print(helper.greet())"],
        cwd=node,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "pwnd!"

    done = verify(lock, models, comfy)
    assert done.returncode == 1
    assert errors(done)[0] == (
        f"error: custom_nodes/{KJ}/__pycache__: unexpected: a folder the commit does not hold, "
        f"with helper.{TAG}.pyc: byte-code that is not the compile of the committed helper.py"
    )
    lines = install(lock, models, comfy)
    assert any(
        line.startswith(f"custom_nodes.{KJ}: removed what commit ")
        and line.endswith(f": custom_nodes/{KJ}/__pycache__")
        for line in lines
    ), lines
    assert not planted.exists()
    assert verify(lock, models, comfy).returncode == 0


@pytest.mark.parametrize("mode", ["timestamp", "checked-hash", "unchecked-hash"])
def test_byte_code_of_the_committed_source_is_accepted(tree, mode):
    lock, models, comfy = tree
    node = comfy / "custom_nodes" / KJ
    invalidation = {
        "timestamp": py_compile.PycInvalidationMode.TIMESTAMP,
        "checked-hash": py_compile.PycInvalidationMode.CHECKED_HASH,
        "unchecked-hash": py_compile.PycInvalidationMode.UNCHECKED_HASH,
    }[mode]
    for source in (node / "helper.py", node / "pkg" / "mod.py", comfy / "main.py"):
        py_compile.compile(
            str(source),
            cfile=importlib.util.cache_from_source(str(source)),
            invalidation_mode=invalidation,
            doraise=True,
        )
        py_compile.compile(
            str(source),
            cfile=importlib.util.cache_from_source(str(source), optimization=2),
            optimize=2,
            doraise=True,
        )
    done = verify(lock, models, comfy)
    assert done.returncode == 0, done.stderr
    assert "6 compiled files" in done.stdout
    assert sorted(install(lock, models, comfy)) == sorted(
        f"{e.qualified}: ok at {e.locked.rev[:12]}" for e in load_nodes_lock(lock).entries()
    )


def test_untracked_package_shadowing_a_tracked_module_is_named_and_removed(tree):
    lock, models, comfy = tree
    node = comfy / "custom_nodes" / KJ
    (node / "helper").mkdir()
    (node / "helper" / "__init__.py").write_text("def greet():\n    return 'pwned'\n")
    done = verify(lock, models, comfy)
    assert done.returncode == 1
    assert errors(done)[0] == (
        f"error: custom_nodes/{KJ}/helper: unexpected: a folder the commit does not hold, "
        "with __init__.py: code the commit does not hold"
    )
    lines = install(lock, models, comfy)
    assert any(line.endswith(f"does not hold: custom_nodes/{KJ}/helper") for line in lines)
    assert not (node / "helper").exists() and (node / "helper.py").is_file()


def test_a_top_level_file_in_custom_nodes_is_named_and_removed(tree):
    lock, models, comfy = tree
    evil = comfy / "custom_nodes" / "evil.py"
    evil.write_text("import os\nos.system('id')\n")
    done = verify(lock, models, comfy)
    assert done.returncode == 1
    assert errors(done)[0] == (
        "error: custom_nodes/evil.py: unexpected: custom_nodes/ holds only ComfyUI's own files "
        "and the locked custom nodes"
    )
    install(lock, models, comfy)
    assert not evil.exists()
    assert (comfy / "custom_nodes" / "example_node.py.example").exists()  # ComfyUI tracks it


def test_a_tracked_folder_replaced_by_a_symlink_is_named_and_restored(tree, tmp_path):
    lock, models, comfy = tree
    node = comfy / "custom_nodes" / KJ
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "mod.py").write_text("VALUE = 1\n")  # the same bytes, outside the tree
    (node / "pkg" / "mod.py").unlink()
    (node / "pkg").rmdir()
    (node / "pkg").symlink_to(outside)
    done = verify(lock, models, comfy)
    assert done.returncode == 1
    assert f"error: custom_nodes/{KJ}/pkg: changed: a folder of the commit, found a symlink" in (
        errors(done)
    )
    install(lock, models, comfy)
    assert not (node / "pkg").is_symlink() and (node / "pkg" / "mod.py").is_file()
    assert (outside / "mod.py").read_text() == "VALUE = 1\n"  # the link's target is untouched
    assert verify(lock, models, comfy).returncode == 0


def test_a_record_inside_the_tree_is_never_trusted(tree):
    lock, models, comfy = tree
    node = comfy / "custom_nodes" / KJ
    helper = node / "helper.py"
    stat = helper.stat()
    helper.write_text("def greet():\n    return 'pwnd!'\n")  # same size
    os.utime(helper, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    # the attacker also writes the edited tree into the record an older install kept
    files = load_nodes_lock(lock).custom_nodes[KJ]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=node, capture_output=True, text=True, check=True
    ).stdout.split()
    record = {
        "version": 1,
        "entries": [
            {
                "kind": "custom_node",
                "name": KJ,
                "path": f"custom_nodes/{KJ}",
                "rev": files.locked.rev,
                "tree": tree_hash_paths(node, tracked),
            }
        ],
    }
    (comfy / ".bake").mkdir(exist_ok=True)
    (comfy / ".bake" / "nodes-manifest.json").write_text(json.dumps(record))
    done = verify(lock, models, comfy)
    assert done.returncode == 1
    assert errors(done)[0].startswith(
        f"error: custom_nodes/{KJ}/helper.py: changed: its bytes differ from commit "
    )
    lines = install(lock, models, comfy)
    assert any(line.startswith(f"custom_nodes.{KJ}: repaired: ") for line in lines)
    assert "hello" in helper.read_text()


def test_first_start_data_and_model_files_are_kept_but_code_among_them_is_not(tree):
    lock, models, comfy = tree
    node = comfy / "custom_nodes" / KJ
    (node / "pysssss.json").write_bytes((node / "pysssss.default.json").read_bytes())
    (node / "styles").mkdir()
    (node / "styles" / "default.json").write_text("[]")
    rife = node / "ckpts" / "rife" / "rife47.pth"
    rife.parent.mkdir(parents=True)
    rife.write_bytes(b"weights")
    vae = comfy / "models" / "vae" / "wan_2.1_vae.safetensors"
    vae.write_bytes(b"vae")
    for data in ("input", "output", "user/default"):
        (comfy / data).mkdir(parents=True)
    (comfy / "output" / "frame.png").write_bytes(b"png")
    done = verify(lock, models, comfy)
    assert done.returncode == 0, done.stderr
    assert "2 generated data files" in done.stdout and "2 model files" in done.stdout
    assert "1 configuration files equal to their commit's default" in done.stdout

    # ignored by the node's .gitignore, but code: foreign all the same
    (node / "styles" / "loader.py").write_text("import os\n")
    # ... and so is a pickled checkpoint in the folder the node ignores for its weights: a
    # torch.load of it runs whatever its pickle says
    (node / "ckpts").mkdir(exist_ok=True)
    (node / "ckpts" / "flownet.pkl").write_bytes(b"\x80\x04cos\nsystem\n.")
    # a model file the models lock does not name, in ComfyUI's models/
    (comfy / "models" / "vae" / "other.safetensors").write_bytes(b"x")
    done = verify(lock, models, comfy)
    assert set(errors(done)[:3]) == {
        f"error: custom_nodes/{KJ}/styles/loader.py: unexpected: code the commit does not hold",
        f"error: custom_nodes/{KJ}/ckpts/flownet.pkl: unexpected: pickled data the commit does "
        "not hold (loading it runs code); a model a node keeps in its folder belongs in "
        "models.lock.yaml",
        "error: models/vae/other.safetensors: unexpected: models/ holds only ComfyUI's own "
        "files and the models-lock files",
    }
    install(lock, models, comfy)
    assert rife.read_bytes() == b"weights" and vae.read_bytes() == b"vae"
    assert (node / "pysssss.json").exists() and (comfy / "output" / "frame.png").exists()
    assert not (node / "styles" / "loader.py").exists()
    assert not (node / "ckpts" / "flownet.pkl").exists()
    assert verify(lock, models, comfy).returncode == 0


def test_a_gitignore_planted_in_the_tree_does_not_count(tree):
    lock, models, comfy = tree
    node = comfy / "custom_nodes" / KJ
    (node / "extra").mkdir()
    (node / "extra" / ".gitignore").write_text("*\n")
    (node / "extra" / "notes.txt").write_text("hidden\n")
    done = verify(lock, models, comfy)
    assert errors(done)[0] == (
        f"error: custom_nodes/{KJ}/extra: unexpected: a folder the commit does not hold, "
        "with 2 files"
    )


def test_a_model_dest_on_a_tracked_path_is_refused(tree):
    lock, models, comfy = tree
    # the node's commit tracks config.json: a model there would replace the node's own file
    # (a dest the models lock refuses outright, code or hidden names, never gets this far)
    models.write_text(MODELS_LOCK.replace("ckpts/rife/rife47.pth", "config.json"))
    done = verify(lock, models, comfy)
    assert done.returncode == 1
    assert errors(done)[0].startswith(
        f"error: custom_nodes/{KJ}/config.json: conflict: a models-lock dest on a path that commit "
    )
    assert f"of custom_nodes.{KJ} tracks" in errors(done)[0]
    # install refuses it too, and the node's own file stays what its commit says
    with pytest.raises(InstallError, match=r"config\.json: conflict: a models-lock dest"):
        install(lock, models, comfy)
    assert (comfy / "custom_nodes" / KJ / "config.json").read_text() == "{}\n"


def test_a_missing_tracked_file_and_a_file_name_with_a_newline_are_named_safely(tree):
    lock, models, comfy = tree
    node = comfy / "custom_nodes" / KJ
    (node / "requirements.txt").unlink()
    (node / "x\nerror: all good").write_text("")
    done = verify(lock, models, comfy)
    assert done.returncode == 1
    assert errors(done)[:2] == [
        f"error: custom_nodes/{KJ}/requirements.txt: missing: a file of commit "
        + load_nodes_lock(lock).custom_nodes[KJ].locked.rev[:12],
        f"error: 'custom_nodes/{KJ}/x\\nerror: all good': unexpected: a file the commit does "
        "not hold (and its .gitignore does not ignore)",
    ]
    assert "error: all good" not in done.stderr.splitlines()


def test_a_hook_planted_in_a_checkouts_git_never_runs_during_a_repair(tree, tmp_path):
    lock, models, comfy = tree
    node = comfy / "custom_nodes" / KJ
    marker = tmp_path / "hook-ran"
    hook = node / ".git" / "hooks" / "post-checkout"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    (node / "helper.py").write_text("edited\n")  # the repair checks the commit out again
    lines = install(lock, models, comfy)
    assert any(line.startswith(f"custom_nodes.{KJ}: repaired: ") for line in lines)
    assert not marker.exists()


def test_a_node_folder_replaced_by_a_symlink_is_named_and_reinstalled(tree, tmp_path):
    import shutil

    lock, models, comfy = tree
    node = comfy / "custom_nodes" / KJ
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(node, elsewhere, symlinks=True)  # the same commit, outside the tree
    shutil.rmtree(node)
    node.symlink_to(elsewhere)
    done = verify(lock, models, comfy)
    assert done.returncode == 1
    assert errors(done)[0] == (
        f"error: custom_nodes/{KJ}: missing: the folder of custom_nodes.{KJ}, found a symlink"
    )
    lines = install(lock, models, comfy)
    assert f"custom_nodes.{KJ}: removed a symlink that stood in place of its folder" in lines
    assert node.is_dir() and not node.is_symlink() and (elsewhere / "helper.py").exists()
    assert verify(lock, models, comfy).returncode == 0


def test_a_replace_ref_in_the_checkouts_git_does_not_change_the_commit(tree):
    lock, models, comfy = tree
    node = comfy / "custom_nodes" / KJ
    rev = load_nodes_lock(lock).custom_nodes[KJ].locked.rev

    def git(*args: str) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@x.invalid"}
        env |= {"GIT_COMMITTER_NAME": "x", "GIT_COMMITTER_EMAIL": "x@x.invalid"}
        return subprocess.run(
            ["git", *args], cwd=node, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    # an edited helper.py committed, and the locked commit "replaced" by that commit
    (node / "helper.py").write_text("def greet():\n    return 'pwnd!'\n")
    git("add", "helper.py")
    git("commit", "--quiet", "-m", "edit")
    git("replace", rev, git("rev-parse", "HEAD"))
    git("checkout", "--quiet", "--detach", rev)  # git now shows the edit at the locked rev
    assert "pwnd" in git("show", f"{rev}:helper.py")
    done = verify(lock, models, comfy)
    assert done.returncode == 1
    assert errors(done)[0].startswith(
        f"error: custom_nodes/{KJ}/helper.py: changed: its bytes differ from commit {rev[:12]}"
    )


def test_a_lock_tree_that_does_not_match_the_commit_is_reported(tree):
    lock, models, comfy = tree
    text = lock.read_text()
    tree_hash = load_nodes_lock(lock).custom_nodes[KJ].locked.tree
    lock.write_text(text.replace(tree_hash, "tree2-blake3:" + "5" * 64))
    done = verify(lock, models, comfy)
    assert done.returncode == 1
    assert errors(done)[0] == (
        f"error: custom_nodes/{KJ}: changed: its tree is {tree_hash}, the lock says "
        f"tree2-blake3:{'5' * 64}; run scripts/update-locks.py --check --nodes {KJ}"
    )
