"""The support of the real-ComfyUI tier, without a real ComfyUI: it must never let CI pass by
running none of the tier, never reuse a half-built or outdated venv, and never write into the
(read-only) source."""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest
from support import real_comfyui
from support.real_comfyui import venv


def make_source(root: Path) -> Path:
    """A stand-in source: ComfyUI/ and two nodes, read-only like the shared one."""
    (root / "ComfyUI" / "input").mkdir(parents=True)
    (root / "ComfyUI" / "main.py").write_text("# ComfyUI\n")
    (root / "ComfyUI" / "requirements.txt").write_text("torch\ntorchvision>=0.1\nnumpy\n")
    (root / "ComfyUI" / "tests").mkdir()
    (root / "ComfyUI" / "tests" / "big.py").write_text("")
    for name in ("NodeA", "ComfyUI-Frame-Interpolation"):
        (root / "custom_nodes" / name).mkdir(parents=True)
        (root / "custom_nodes" / name / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (root / "custom_nodes" / "NodeA" / "requirements.txt").write_text("scipy\n")
    frame = root / "custom_nodes" / "ComfyUI-Frame-Interpolation"
    (frame / "requirements-no-cupy.txt").write_text("kornia\n")
    (frame / "requirements-with-cupy.txt").write_text("cupy\n")
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            os.chmod(Path(folder) / name, 0o444)
        os.chmod(folder, 0o555)
    return root


@pytest.fixture
def source(tmp_path):
    src = make_source(tmp_path / "src")
    yield src
    for folder, _, _ in os.walk(src):
        os.chmod(folder, 0o755)  # so pytest can remove it


@pytest.fixture
def unprepared(monkeypatch):
    monkeypatch.setattr(real_comfyui, "_prepared", None)
    monkeypatch.delenv(real_comfyui.PYTHON_ENV, raising=False)


def test_without_a_source_the_tier_skips_with_the_reason(unprepared, monkeypatch):
    monkeypatch.delenv("COMFYUI_SRC", raising=False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="COMFYUI_SRC is not set"):
        real_comfyui.source_and_interpreter()


@pytest.mark.parametrize("value", ["", "/nonexistent/real-comfyui"])
def test_in_ci_a_missing_source_fails_the_tier(unprepared, monkeypatch, value):
    monkeypatch.setenv("COMFYUI_SRC", value)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and the real ComfyUI tier cannot"):
        real_comfyui.source_and_interpreter()


def test_in_ci_an_interpreter_that_cannot_be_built_fails_the_tier(unprepared, monkeypatch, source):
    monkeypatch.setenv("COMFYUI_SRC", str(source))
    monkeypatch.setenv("CI", "true")

    def broken(*args, **kwargs):
        raise RuntimeError("pip install torch==2.14.1 failed")

    monkeypatch.setattr(real_comfyui, "ensure_venv", broken)
    with pytest.raises(pytest.fail.Exception, match=r"pip install torch==2\.14\.1 failed"):
        real_comfyui.source_and_interpreter()


def test_the_copy_is_writable_holds_only_the_asked_nodes_and_leaves_the_source_alone(
    source, tmp_path
):
    dest = real_comfyui.make_comfyui(tmp_path / "copy", source, ["NodeA"], first_start=False)
    assert (dest / "main.py").read_text() == "# ComfyUI\n"
    assert not (dest / "tests").exists()  # ComfyUI's own tests are not copied
    nodes = sorted(p.name for p in (dest / "custom_nodes").iterdir())
    assert nodes == ["NodeA", real_comfyui.TEST_NODES_NAME]
    (dest / "input" / "in.png").write_bytes(b"x")  # ComfyUI writes into its own folders
    (dest / "custom_nodes" / "NodeA" / "config.json").write_text("{}")  # and nodes into theirs
    (dest / "main.py").write_text("changed")
    assert (source / "ComfyUI" / "main.py").read_text() == "# ComfyUI\n"
    assert not stat.S_IMODE((source / "ComfyUI").stat().st_mode) & 0o200


def test_a_node_the_source_lacks_is_named(source, tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="lacks custom_nodes/NodeB"):
        real_comfyui.make_comfyui(tmp_path / "copy", source, ["NodeA", "NodeB"], first_start=False)


def test_the_venv_is_built_without_torch_lines_and_with_the_no_cupy_file(source):
    files = venv.requirement_files(source / "ComfyUI", source / "custom_nodes")
    assert [label for label, _ in files] == [
        "ComfyUI/requirements.txt",
        "custom_nodes/ComfyUI-Frame-Interpolation/requirements-no-cupy.txt",
        "custom_nodes/NodeA/requirements.txt",
    ]
    lines = files[0][1].read_text().splitlines()
    assert venv._without(lines, venv.DROPPED) == ["numpy"]


def test_the_venv_key_follows_the_requirement_files(tmp_path):
    src = make_source(tmp_path / "src")
    key = venv.venv_key(src / "ComfyUI", src / "custom_nodes", sys.executable)
    assert key == venv.venv_key(src / "ComfyUI", src / "custom_nodes", sys.executable)
    reqs = src / "custom_nodes" / "NodeA" / "requirements.txt"
    os.chmod(reqs.parent, 0o755)
    os.chmod(reqs, 0o644)
    reqs.write_text("scipy>=1.14\n")
    assert key != venv.venv_key(src / "ComfyUI", src / "custom_nodes", sys.executable)
    for folder, _, _ in os.walk(src):
        os.chmod(folder, 0o755)


def fake_build(calls: list[str], *, fail: bool = False):
    def build(comfyui_dir: Path, nodes_dir: Path, python: str, dest: Path) -> None:
        calls.append(dest.name)
        (dest / "bin").mkdir(parents=True)
        time.sleep(0.2)  # long enough for a concurrent caller to arrive
        if fail:
            raise RuntimeError("pip failed")
        (dest / "bin" / "python").symlink_to(sys.executable)

    return build


def test_concurrent_callers_build_once_and_share_it(source, tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(venv, "_build", fake_build(calls))
    env = {
        "REAL_COMFYUI_VENV_ROOT": str(tmp_path / "cache"),
        "PATH": os.environ["PATH"],
        venv.BASE_PYTHON_ENV: sys.executable,
    }
    results: list[Path] = []

    def call() -> None:
        results.append(
            venv.ensure_venv(
                source / "ComfyUI", source / "custom_nodes", env=env, announce=lambda line: None
            )
        )

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(set(results)) == 1
    assert results[0].parent.parent.parent == tmp_path / "cache"


def test_a_failed_build_is_never_taken_for_a_finished_one(source, tmp_path, monkeypatch):
    env = {
        "REAL_COMFYUI_VENV_ROOT": str(tmp_path / "cache"),
        "PATH": os.environ["PATH"],
        venv.BASE_PYTHON_ENV: sys.executable,
    }
    calls: list[str] = []
    monkeypatch.setattr(venv, "_build", fake_build(calls, fail=True))
    with pytest.raises(RuntimeError, match="pip failed"):
        venv.ensure_venv(
            source / "ComfyUI", source / "custom_nodes", env=env, announce=lambda line: None
        )
    monkeypatch.setattr(venv, "_build", fake_build(calls))
    python = venv.ensure_venv(
        source / "ComfyUI", source / "custom_nodes", env=env, announce=lambda line: None
    )
    assert python.exists() and len(calls) == 2
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()] == [
        python.parent.parent.name
    ]


def test_the_cache_lives_outside_the_checkout_and_can_be_moved(tmp_path):
    assert venv.cache_root({"HOME": "/home/u"}) == Path.home() / ".cache/comfy-bake/real-comfyui"
    assert venv.cache_root({"XDG_CACHE_HOME": "/c"}) == Path("/c/comfy-bake/real-comfyui")
    assert venv.cache_root({"BAKE_CACHE_DIR": "/b"}) == Path("/b/real-comfyui")
    assert venv.cache_root({"BAKE_CACHE_DIR": "/b", "REAL_COMFYUI_VENV_ROOT": "/v"}) == Path("/v")


def test_the_import_summary_names_failed_and_loaded_nodes():
    log = """[comfyui] Import times for custom nodes:
[comfyui]    0.0 seconds: /tmp/x/comfyui/custom_nodes/websocket_image_save.py
[comfyui]    0.1 seconds: /tmp/x/comfyui/custom_nodes/ComfyUI-KJNodes
[comfyui]    1.8 seconds (IMPORT FAILED): /tmp/x/comfyui/custom_nodes/RES4LYF
[comfyui]
[comfyui] IMPORT FAILED: nodes_audio.py
"""
    assert real_comfyui.custom_node_imports(log) == {
        "websocket_image_save.py": True,
        "ComfyUI-KJNodes": True,
        "RES4LYF": False,
    }
