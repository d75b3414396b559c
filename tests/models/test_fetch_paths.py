"""Where `models fetch` writes: never through a symlinked folder that leads out of the root, and
a folder standing where a model file goes is one clear error that leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.modelfiles import MB, blob, entry, pin_of, write_lock

from bake.cli import main
from bake.errors import FetchError
from bake.locks.models import UrlSource
from bake.models.store import place

DATA = blob(5 * MB, 5)
DEST = "models/vae/vae.safetensors"


@pytest.fixture
def fetch(tmp_path, files, capsys):
    """Run `models fetch` of one image file served over loopback into tmp/comfyui."""
    lock = write_lock(
        tmp_path / "models.lock.yaml", entry("vae", UrlSource(files.add("/vae", DATA)), DEST, DATA)
    )
    comfy = tmp_path / "comfyui"

    def run() -> tuple[int, list[str]]:
        capsys.readouterr()
        code = main(["models", "fetch", "--comfyui-dir", str(comfy), "--lock", str(lock)])
        err = capsys.readouterr().err.splitlines()
        return code, [line for line in err if line.startswith("error:")]

    return comfy, run


def everything_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_a_symlinked_folder_leading_out_of_the_root_is_not_written_through(tmp_path, files, fetch):
    comfy, run = fetch
    outside = tmp_path / "site-packages"
    outside.mkdir()
    (comfy / "models").mkdir(parents=True)
    os.symlink(outside, comfy / "models" / "vae")
    code, errors = run()
    assert code == 1
    assert errors == [
        f"error: vae: {comfy / 'models/vae'} is a symlink to {outside}, outside {comfy}: refusing "
        f"to write {comfy / DEST} through it; nothing was downloaded. Replace the link with a "
        "folder, or fetch with the root the files should go to"
    ]
    assert everything_under(outside) == []  # no file, no temporary file, no lock file
    assert files.gets("/vae") == 0


def test_a_symlink_higher_up_or_dangling_is_refused_too(tmp_path, fetch):
    comfy, run = fetch
    comfy.mkdir()
    os.symlink(tmp_path / "elsewhere" / "models", comfy / "models")  # dangling
    code, errors = run()
    assert code == 1 and len(errors) == 1
    assert f"{comfy / 'models'} is a symlink to {tmp_path / 'elsewhere/models'}" in errors[0]
    assert not (tmp_path / "elsewhere").exists()


def test_a_symlinked_folder_inside_the_root_is_followed(tmp_path, fetch):
    comfy, run = fetch
    shared = comfy / "models" / "shared-vae"
    shared.mkdir(parents=True)
    os.symlink("shared-vae", comfy / "models" / "vae")
    assert run() == (0, [])
    assert (shared / "vae.safetensors").read_bytes() == DATA


def test_a_folder_where_the_file_goes_is_one_error_and_leaves_nothing(tmp_path, files, fetch):
    comfy, run = fetch
    (comfy / DEST).mkdir(parents=True)
    (comfy / DEST / "keep.txt").write_text("someone's file\n")
    code, errors = run()
    assert code == 1
    assert errors == [
        f"error: vae: {comfy / DEST} is a folder, where the model file should be; nothing was "
        "downloaded. Move that folder away (its contents are not this model) and run the fetch "
        "again"
    ]
    assert everything_under(comfy / "models/vae") == ["vae.safetensors", "vae.safetensors/keep.txt"]
    assert files.gets("/vae") == 0
    # once the folder is moved away, the same command succeeds
    (comfy / DEST).rename(tmp_path / "moved")
    assert run() == (0, [])
    assert (comfy / DEST).read_bytes() == DATA


def test_a_download_that_cannot_be_renamed_into_place_leaves_no_temporary_file(tmp_path):
    """A folder appearing at the destination while the file downloads (another tool, another
    container on the volume): the verified file cannot be renamed there; it is deleted, or
    every later run would "resume" a complete file and fail the same way."""
    dest = tmp_path / DEST

    def download(sink):
        sink.write(DATA)
        dest.mkdir()

    with pytest.raises(FetchError) as info:
        place(tmp_path, DEST, pin_of(DATA), download, label="vae", origin="test")
    assert str(info.value).startswith(
        f"vae: the download is verified but cannot be moved to {dest}: "
    )
    assert [p.name for p in dest.parent.iterdir() if p.name.endswith(".incomplete")] == []
