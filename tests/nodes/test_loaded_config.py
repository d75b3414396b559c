"""Configuration that ComfyUI or a node reads at start is pinned or refused: being ignored by a
.gitignore is never enough for it. Each file is planted as an attacker would: a real file
pointing ComfyUI or the node at a payload outside the verified tree, where its upstream's own
.gitignore ignores it (so it used to pass as "generated data"). `nodes verify` names it,
`nodes install` removes it and says why; the commit's own file, and the copy a node writes of
its committed default at first start, still pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bake.locks.nodes import load_nodes_lock
from bake.nodes.install import install_nodes
from bake.nodes.resolve import update_nodes
from bake.nodes.verify import LOADED_CONFIG

KJ = "ComfyUI-KJNodes"
ROOT = Path(__file__).resolve().parents[2]
# ComfyUI's .gitignore ignores extra_model_paths.yaml (as the real one does, line 10)
COMFY_GITIGNORE = (
    "__pycache__/\n/output/\n/input/\n/models/\n/temp/\n/custom_nodes/\n"
    "!custom_nodes/example_node.py.example\nextra_model_paths.yaml\n/user/\n"
)
# what the nodes' own .gitignore files ignore (Easy-Use: config.yaml, rgthree:
# rgthree_config.json, Custom-Scripts: pysssss.json, RES4LYF: *.config.json), and more
NODE_GITIGNORE = "__pycache__\nconfig.yaml\npyproject.toml\nrgthree_config.json\n" + (
    "pysssss.json\n*.config.json\n"
)
PYSSSSS_DEFAULT = '{\n\t"name": "CustomScripts",\n\t"logging": false\n}'
RES4LYF_DEFAULT = '{\n  "name": "RES4LYF",\n  "topClownDog": true,\n  "enableDebugLogs": false\n}\n'


@pytest.fixture
def tree(remotes, tmp_path):
    remotes.comfy.commit({".gitignore": COMFY_GITIGNORE}, "comfy: ignore extra_model_paths")
    remotes.nodes[KJ].commit(
        {
            ".gitignore": NODE_GITIGNORE,
            "pysssss.default.json": PYSSSSS_DEFAULT,
            "web/js/res4lyf.default.json": RES4LYF_DEFAULT,
        },
        "kj: defaults",
    )
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    assert update_nodes(lock, out=lambda _: None) == 0
    (tmp_path / "models.lock.yaml").write_text("version: 1\nmodels: {}\n")
    comfy = tmp_path / "ComfyUI"
    install(lock, comfy)
    # the payload the planted configuration points at: a node, outside the verified tree
    payload = tmp_path / "payload" / "nodes" / "evil"
    payload.mkdir(parents=True)
    (payload / "__init__.py").write_text("import os\nos.system('id')\nNODE_CLASS_MAPPINGS = {}\n")
    return lock, comfy, remotes.world.env()


def install(lock: Path, comfy: Path) -> list[str]:
    lines: list[str] = []
    install_nodes(load_nodes_lock(lock), comfy, log=lines.append)
    return lines


def verify(lock: Path, comfy: Path, env) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bake", "nodes", "verify", "--comfyui-dir", str(comfy)]
    cmd += ["--lock", str(lock), "--models-lock", str(lock.parent / "models.lock.yaml")]
    return subprocess.run(
        cmd, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=False
    )


def ignored(folder: Path, name: str, env) -> bool:
    """Whether the entry's own .gitignore ignores `name`: the old rule's whole test."""
    done = subprocess.run(["git", "check-ignore", "-q", name], cwd=folder, env=env, check=False)
    return done.returncode == 0


def test_extra_model_paths_yaml_in_comfyuis_root_is_refused_though_ignored(tree, tmp_path):
    lock, comfy, env = tree
    planted = comfy / "extra_model_paths.yaml"
    planted.write_text(
        "evil:\n"
        f"  base_path: {tmp_path / 'payload'}\n"
        "  custom_nodes: nodes\n"  # ComfyUI imports every folder in there as a custom node
        "  checkpoints: nodes\n"
    )
    assert ignored(comfy, "extra_model_paths.yaml", env)

    done = verify(lock, comfy, env)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        "error: extra_model_paths.yaml: unexpected: configuration ComfyUI's main.py reads it at "
        "every start (it adds model folders and custom-node folders to import, outside the "
        "verified tree), found a file the commit does not hold; only the commit's own file may "
        "lie here, whatever .gitignore says"
    )
    lines = install(lock, comfy)
    rev = load_nodes_lock(lock).comfyui.locked.rev
    assert f"comfyui: removed what commit {rev[:12]} does not hold: extra_model_paths.yaml" in lines
    assert any(
        line.startswith("comfyui: removed extra_model_paths.yaml: configuration ComfyUI's main.py")
        for line in lines
    )
    assert not planted.exists()
    assert verify(lock, comfy, env).returncode == 0


def test_a_planted_link_in_place_of_the_config_is_refused_too(tree, tmp_path):
    lock, comfy, env = tree
    target = tmp_path / "payload" / "paths.yaml"
    target.write_text("evil:\n  custom_nodes: nodes\n")
    (comfy / "extra_model_paths.yaml").symlink_to(target)
    done = verify(lock, comfy, env)
    assert "error: extra_model_paths.yaml: unexpected: configuration ComfyUI's main.py reads" in (
        done.stderr
    )
    assert "found a symlink the commit does not hold" in done.stderr
    install(lock, comfy)
    assert not (comfy / "extra_model_paths.yaml").is_symlink() and target.exists()


def test_an_extra_model_paths_yaml_the_commit_tracks_is_pinned_like_its_code(
    remotes, tmp_path, tree
):
    lock, comfy, env = tree
    remotes.comfy.commit({"extra_model_paths.yaml": "comfyui:\n  base_path: .\n"}, "tracked")
    assert update_nodes(lock, ["comfyui"], out=lambda _: None) == 0
    install(lock, comfy)
    assert verify(lock, comfy, env).returncode == 0
    (comfy / "extra_model_paths.yaml").write_text("evil:\n  custom_nodes: /tmp/x\n")
    done = verify(lock, comfy, env)
    assert done.stderr.startswith("error: extra_model_paths.yaml: changed: its bytes differ")
    install(lock, comfy)
    assert (comfy / "extra_model_paths.yaml").read_text() == "comfyui:\n  base_path: .\n"


NODE_PLANTS = {
    # ComfyUI serves the folder [tool.comfy] web names as the node's front-end scripts
    "pyproject.toml": (
        '[project]\nname = "kj"\n[tool.comfy]\nweb = "../../input"\n',
        "ComfyUI reads it when it imports the node (its [tool.comfy] web names the folder of "
        "scripts ComfyUI serves for the node)",
    ),
    # Easy-Use serves web_version/<WEB_VERSION>, joined unchecked
    "config.yaml": (
        "WEB_VERSION: ../../../input\n",
        "ComfyUI-Easy-Use reads it at import (Frame-Interpolation tracks its own) (its "
        "WEB_VERSION names the folder of scripts served for the node)",
    ),
    # rgthree adds node classes its commit ships switched off
    "rgthree_config.json": (
        '{"unreleased": {"dynamic_context": {"enabled": true}, "models_page": {"enabled": true}}}',
        "rgthree-comfy reads it at import (its unreleased.* switches add node classes and "
        "server pages)",
    ),
}


@pytest.mark.parametrize("name", list(NODE_PLANTS))
def test_a_nodes_start_time_config_is_refused_though_its_gitignore_ignores_it(tree, name):
    lock, comfy, env = tree
    node = comfy / "custom_nodes" / KJ
    content, reader = NODE_PLANTS[name]
    (node / name).write_text(content)
    assert ignored(node, name, env)

    done = verify(lock, comfy, env)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        f"error: custom_nodes/{KJ}/{name}: unexpected: configuration {reader}, found a file the "
        "commit does not hold; only the commit's own file may lie here, whatever .gitignore says"
    )
    lines = install(lock, comfy)
    assert any(
        line.startswith(f"custom_nodes.{KJ}: removed custom_nodes/{KJ}/{name}: ") for line in lines
    )
    assert not (node / name).exists()
    assert verify(lock, comfy, env).returncode == 0


def test_the_copy_a_node_writes_of_its_committed_default_passes_and_nothing_else(tree):
    lock, comfy, env = tree
    node = comfy / "custom_nodes" / KJ
    # what Custom-Scripts (shutil.copy) and RES4LYF (json.dump, indent 4) write at first start
    (node / "pysssss.json").write_text(PYSSSSS_DEFAULT)
    with open(node / "res4lyf.config.json", "w") as handle:
        json.dump(json.loads(RES4LYF_DEFAULT), handle, indent=4)
    done = verify(lock, comfy, env)
    assert done.returncode == 0, done.stderr
    assert "2 configuration files equal to their commit's default" in done.stdout

    # Custom-Scripts rmtree()s ComfyUI/web/extensions/pysssss/<name> at every start
    (node / "pysssss.json").write_text('{"name": "../../../models", "logging": false}')
    res4lyf = json.loads(RES4LYF_DEFAULT) | {"updatedTimestepScaling": True}
    (node / "res4lyf.config.json").write_text(json.dumps(res4lyf, indent=4))
    done = verify(lock, comfy, env)
    assert done.stderr.splitlines()[:2] == [
        f"error: custom_nodes/{KJ}/pysssss.json: unexpected: configuration ComfyUI-Custom-Scripts "
        "reads it at import (its name picks a folder that every start deletes or links), found a "
        "file the commit does not hold; only the commit's file, or the node's own copy of "
        "pysssss.default.json (the same bytes), may lie here, whatever .gitignore says",
        f"error: custom_nodes/{KJ}/res4lyf.config.json: unexpected: configuration RES4LYF reads "
        "it at import (its switches replace ComfyUI's sampling code), found a file the commit "
        "does not hold; only the commit's file, or the node's own copy of "
        "web/js/res4lyf.default.json (the same values), may lie here, whatever .gitignore says",
    ]
    install(lock, comfy)
    assert not (node / "pysssss.json").exists() and not (node / "res4lyf.config.json").exists()


def test_a_copy_of_an_edited_default_does_not_pass(tree):
    lock, comfy, env = tree
    node = comfy / "custom_nodes" / KJ
    (node / "pysssss.default.json").write_text('{"name": "../../.."}')
    (node / "pysssss.json").write_text('{"name": "../../.."}')
    done = verify(lock, comfy, env)
    errors = done.stderr.splitlines()
    assert f"error: custom_nodes/{KJ}/pysssss.default.json: changed: its bytes differ " in errors[0]
    assert errors[1].startswith(f"error: custom_nodes/{KJ}/pysssss.json: unexpected: configuration")


def test_config_rules_hold_only_at_an_entrys_root_and_name_who_reads_them():
    # one place, each with who reads it and what it can point at
    assert {(c.where, c.path) for c in LOADED_CONFIG} == {
        ("comfyui", "extra_model_paths.yaml"),
        ("custom_node", "pyproject.toml"),
        ("custom_node", "config.yaml"),
        ("custom_node", "rgthree_config.json"),
        ("custom_node", "pysssss.json"),
        ("custom_node", "res4lyf.config.json"),
    }
    assert all(c.reader and c.effect and "/" not in c.path for c in LOADED_CONFIG)


def test_a_data_file_of_that_name_deeper_in_a_node_is_still_data(tree):
    lock, comfy, env = tree
    node = comfy / "custom_nodes" / KJ
    (node / "styles").mkdir()
    (node / "styles" / "config.yaml").write_text("a: 1\n")
    # KJ's .gitignore ignores config.yaml anywhere, and nothing reads this one at start: data
    done = verify(lock, comfy, env)
    assert done.returncode == 0, done.stderr
