"""Fixtures for the git-pin tests: a world of local bare repositories shaped like ComfyUI and
its nodes, and nodes locks pointing at them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.gitrepos import BareRepo, GitWorld

from bake.locks.nodes import GitSource, NodeEntry, NodesLock, write_nodes_lock

COMFY_FILES = {
    "main.py": "print('comfy')\n",
    # as ComfyUI's own: its data folders, models and custom nodes are not the commit's
    ".gitignore": "__pycache__/\n/output/\n/input/\n/models/\n/temp/\n/custom_nodes/\n"
    "!custom_nodes/example_node.py.example\n/user/\n",
    "requirements.txt": "torch\n# the UI\ncomfyui-frontend-package==1.0\n\nnumpy>=1.25\n",
    "custom_nodes/example_node.py.example": "# example\n",
    "models/checkpoints/put_checkpoints_here": "",
    "models/vae/put_vae_here": "",
}


@dataclass
class Remotes:
    """ComfyUI, two nodes (one with a submodule, like Easy-Use) and their remotes."""

    world: GitWorld
    comfy: BareRepo
    nodes: dict[str, BareRepo]
    front: BareRepo  # the submodule's repository
    front_pinned: str  # the submodule commit the node records (not the tip)
    revs: dict[str, str] = field(default_factory=dict)

    def lock(
        self,
        path: Path,
        *,
        refs: dict[str, str] | None = None,
        extra: dict[str, NodeEntry] | None = None,
    ) -> Path:
        """An unlocked nodes lock naming these remotes (refs default to `main`)."""
        refs = refs or {}
        comfy = NodeEntry(
            "comfyui",
            "comfyui",
            GitSource(self.comfy.url, refs.get("comfyui", "main")),
            requirements_file="requirements.txt",
        )
        nodes = {
            name: NodeEntry(
                name,
                "custom_node",
                GitSource(repo.url, refs.get(name, "main")),
                requirements_file="requirements.txt",
            )
            for name, repo in self.nodes.items()
        }
        nodes.update(extra or {})
        write_nodes_lock(NodesLock(comfy, nodes, {}), path)
        return path


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GitWorld:
    monkeypatch.setenv("BAKE_CACHE_DIR", str(tmp_path / "cache"))
    return GitWorld.create(tmp_path, monkeypatch)


@pytest.fixture
def remotes(world: GitWorld) -> Remotes:
    comfy = world.repo("ComfyUI")
    comfy.commit(COMFY_FILES, "comfy 1")

    kj = world.repo("ComfyUI-KJNodes")
    kj.commit(
        {
            "__init__.py": "NODE_CLASS_MAPPINGS = {}\n",
            "requirements.txt": "pillow>=10.3.0\nscipy\n",
            "tools/run.sh": "#!/bin/sh\necho hi\n",
        },
        "kj 1",
        executable=("tools/run.sh",),
        symlinks={"docs": "tools"},
    )

    front = world.repo("Easy-Use-Frontend")
    pinned = front.commit({"app.js": "console.log(1)\n"}, "front 1")
    front.commit({"app.js": "console.log(2)\n"}, "front 2")  # the tip moves past the pin
    easy = world.repo("ComfyUI-Easy-Use")
    easy.commit({"__init__.py": "X = 1\n", "requirements.txt": "diffusers\nlark\n"}, "easy 1")
    easy.add_submodule("ComfyUI-Easy-Use-Frontend", front, pinned)
    return Remotes(world, comfy, {"ComfyUI-KJNodes": kj, "ComfyUI-Easy-Use": easy}, front, pinned)
