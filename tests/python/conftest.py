"""A small world for the Python lock: a local PEP 503 index of tiny wheels shaped like the real
problem (a CUDA torch with its exact-pinned companions, three OpenCV distributions, two nodes
that disagree), a requirements.in that points at it, overrides, and a nodes lock.

uv runs offline (UV_OFFLINE) with its own cache, so nothing here can reach PyPI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from support.wheels import SimpleIndex, Wheel, fake_torch, simple_index

CV2 = {"cv2/__init__.py": "# every OpenCV distribution installs this same folder\n"}

WHEELS = [
    # torch 2.0 is the one requirements.in pins; 3.0 is newer and would win a bare `torch`.
    fake_torch("2.0", requires=["nvidia-cuda-runtime-cu12==12.8.90", "triton==3.0"]),
    fake_torch("3.0", requires=["nvidia-cuda-runtime-cu12==12.9.1", "triton==4.0"]),
    Wheel("nvidia-cuda-runtime-cu12", "12.8.90"),
    Wheel("nvidia-cuda-runtime-cu12", "12.9.1"),
    Wheel("triton", "3.0"),
    Wheel("triton", "4.0"),
    Wheel("opencv-python", "4.0", files=CV2),
    Wheel("opencv-python-headless", "4.0", files=CV2),
    Wheel("opencv-contrib-python-headless", "4.0", files=CV2),
    Wheel("nodelib", "1.0"),
    Wheel("nodelib", "2.0"),
    Wheel("alpha", "1.0", requires=["beta>=1"]),
    Wheel("beta", "1.0"),
    Wheel("beta", "2.0"),
    Wheel("stray", "1.0"),
]

REQUIREMENTS_IN = """\
# the tiny world's intents
--index-url {index}
--only-binary :all:   # carried into the lock; both installers must obey it
torch==2.0            # never moved by a node
opencv-contrib-python-headless
alpha
"""

OVERRIDES = """\
# one cv2: the contrib headless build serves both nodes
opencv-python ; sys_platform == "never"
opencv-python-headless ; sys_platform == "never"
# NodeA wants nodelib<2 but works with 2.0
nodelib==2.0
"""

NODES = {
    "comfyui": ["torch", "beta"],
    "NodeA": ["torch", "opencv-python", "nodelib<2"],
    "NodeB": ["opencv-python-headless", "nodelib>=2"],
}


def nodes_lock_text(nodes: Mapping[str, Sequence[str]]) -> str:
    """A valid nodes.lock.yaml whose entries record `nodes[name]` as their requirements."""

    def entry(name: str, lines: Sequence[str]) -> dict:
        return {
            "original": {"url": f"https://example.invalid/{name}.git", "ref": "main"},
            "requirements_file": "requirements.txt",
            "locked": {
                "rev": "a" * 40,
                "date": "2026-01-17T00:00:00+00:00",
                "requirements": list(lines),
            },
        }

    data = {
        "version": 1,
        "comfyui": entry("ComfyUI", nodes.get("comfyui", [])),
        "custom_nodes": {n: entry(n, lines) for n, lines in nodes.items() if n != "comfyui"},
    }
    return yaml.safe_dump(data, sort_keys=False)


@dataclass
class World:
    root: Path
    index: SimpleIndex
    out: list[str]

    @property
    def lock(self) -> Path:
        return self.root / "requirements.lock"

    @property
    def requirements_in(self) -> Path:
        return self.root / "requirements.in"

    @property
    def overrides(self) -> Path:
        return self.root / "requirements-overrides.txt"

    @property
    def nodes_lock(self) -> Path:
        return self.root / "nodes.lock.yaml"

    def set_nodes(self, nodes: Mapping[str, Sequence[str]]) -> None:
        self.nodes_lock.write_text(nodes_lock_text(nodes), encoding="utf-8")

    def update(self, **kwargs) -> int:
        from bake.python.compile import update_python

        self.out.clear()
        return update_python(self.lock, out=self.out.append, **kwargs)

    def check(self, **kwargs) -> int:
        return self.update(check=True, **kwargs)

    @property
    def output(self) -> str:
        return "\n".join(self.out)


def _offline(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_CACHE_DIR", str(cache))
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
    for name in (
        "UV_INDEX_URL",
        "UV_EXTRA_INDEX_URL",
        "UV_DEFAULT_INDEX",
        "UV_INDEX",
        "UV_FIND_LINKS",
        "PIP_INDEX_URL",
        "PIP_FIND_LINKS",
        "VIRTUAL_ENV",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uv-cache")


@pytest.fixture
def offline_uv(uv_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """uv (and pip) can reach nothing but the local indexes the tests write."""
    _offline(monkeypatch, uv_cache)


@pytest.fixture(scope="session")
def index(tmp_path_factory: pytest.TempPathFactory) -> SimpleIndex:
    """One read-only index for the whole run (the wheels are the same bytes every time)."""
    return simple_index(tmp_path_factory.mktemp("index"), WHEELS)


def _make_world(root: Path, index: SimpleIndex) -> World:
    root.mkdir()
    (root / "requirements.in").write_text(REQUIREMENTS_IN.format(index=index.url), encoding="utf-8")
    (root / "requirements-overrides.txt").write_text(OVERRIDES, encoding="utf-8")
    w = World(root, index, [])
    w.set_nodes(NODES)
    return w


@pytest.fixture
def world(tmp_path: Path, index: SimpleIndex, offline_uv: None) -> World:
    return _make_world(tmp_path / "repo", index)


@pytest.fixture(scope="session")
def compiled_text(
    tmp_path_factory: pytest.TempPathFactory, index: SimpleIndex, uv_cache: Path
) -> str:
    """The tiny world's lock, compiled once by `update_python` (tests that need a fresh lock
    start from a copy; tests of compiling itself use `world`)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _offline(monkeypatch, uv_cache)
        w = _make_world(tmp_path_factory.mktemp("compiled") / "repo", index)
        assert w.update() == 0, w.output
        return w.lock.read_text(encoding="utf-8")


@pytest.fixture
def compiled(world: World, compiled_text: str) -> World:
    world.lock.write_text(compiled_text, encoding="utf-8")
    return world
