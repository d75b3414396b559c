"""The lock's build options as installers read them: wheels only, except the named sdists.

pip applies option lines in order and `--only-binary :all:` clears an earlier `--no-binary`,
so the order uv writes them in would make pip refuse the one sdist the lock allows."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from support.wheels import sha256_of

from bake.python.compile import order_build_options

UV_ORDER = "--index-url https://example.invalid/simple\n--no-binary foo\n--only-binary :all:\n\n"

BACKEND = """\
import os, zipfile

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "foo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as whl:
        whl.writestr("foo/__init__.py", "")
        whl.writestr("foo-1.0.dist-info/METADATA",
                     "Metadata-Version: 2.1\\nName: foo\\nVersion: 1.0\\n")
        whl.writestr("foo-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\\nGenerator: t\\n"
                     "Root-Is-Purelib: true\\nTag: py3-none-any\\n")
        whl.writestr("foo-1.0.dist-info/RECORD", "")
    return name
"""
PYPROJECT = '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'


def _sdist(folder: Path) -> Path:
    """An sdist-only package whose in-tree backend needs nothing from an index."""
    path = folder / "foo-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in {
            "pyproject.toml": PYPROJECT,
            "backend.py": BACKEND,
            "PKG-INFO": "Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n",
        }.items():
            data = text.encode()
            info = tarfile.TarInfo(f"foo-1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_only_binary_comes_first_and_nothing_else_moves():
    text = UV_ORDER + "bar==1.0 \\\n    --hash=sha256:" + "1" * 64 + "\n"
    ordered = order_build_options(text)
    assert ordered.splitlines()[:3] == [
        "--index-url https://example.invalid/simple",
        "--only-binary :all:",
        "--no-binary foo",
    ]
    assert ordered.splitlines()[3:] == text.splitlines()[3:]
    assert order_build_options("a==1 --hash=sha256:" + "1" * 64 + "\n").startswith("a==1")


@pytest.fixture(scope="module")
def pip(tmp_path_factory) -> list[str]:
    venv = tmp_path_factory.mktemp("pipvenv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-index",
        "--no-deps",
        "--require-hashes",
        "--no-build-isolation",
    ]


@pytest.mark.parametrize("ordered", [True, False], ids=["lock order", "uv order"])
def test_pip_builds_the_named_sdist_only_in_the_lock_order(pip, tmp_path, ordered):
    links = tmp_path / "links"
    links.mkdir()
    sdist = _sdist(links)
    text = UV_ORDER.replace("--index-url https://example.invalid/simple\n", "")
    text += f"foo==1.0 --hash=sha256:{sha256_of(sdist)}\n"
    lock = tmp_path / "requirements.lock"
    lock.write_text(order_build_options(text) if ordered else text)
    result = subprocess.run(
        [*pip, "--find-links", str(links), "--target", str(tmp_path / "t"), "-r", str(lock)],
        capture_output=True,
        text=True,
        check=False,
    )
    if ordered:
        assert result.returncode == 0, result.stdout + result.stderr
        assert (tmp_path / "t" / "foo" / "__init__.py").exists()
    else:  # what the lock would do without the reordering: the exception is lost
        assert result.returncode != 0
        assert "foo" in result.stderr


def test_the_committed_lock_keeps_the_pixeloe_exception_for_pip():
    lines = (Path(__file__).resolve().parents[2] / "requirements.lock").read_text().splitlines()
    assert lines.index("--only-binary :all:") < lines.index("--no-binary pixeloe")


def test_a_torch_index_with_credentials_is_refused_before_anything_is_written(world):
    world.requirements_in.write_text("alpha\n")
    world.set_nodes({})
    assert world.update(torch_index="https://user:s3cret@example.invalid/whl/cu128") == 1
    assert "carries credentials" in world.output
    assert "s3cret" not in world.output
    assert not world.lock.exists()
