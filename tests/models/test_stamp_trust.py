"""Fast mode that a restored mtime or a planted stamp cannot fool: each attack is done to real
files on disk as someone with write access to the model folder would do it, then `models verify
--mode fast` and `models fetch` must not accept the file."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import quote

import blake3
import pytest
from support.modelfiles import MB, blob, entry, write_lock

from bake.cli import main
from bake.locks.models import UrlSource
from bake.models import stamps

GOOD, EVIL = blob(MB, 1), blob(MB, 66)
IMAGE_DEST = "models/vae/vae.safetensors"
VOLUME_DEST = "models/diffusion_models/d.safetensors"


@pytest.fixture
def setup(tmp_path, files):
    """A lock with one image and one volume file (served over loopback), both fetched."""
    comfy, volume = tmp_path / "comfyui", tmp_path / "volume"
    lock = write_lock(
        tmp_path / "models.lock.yaml",
        entry("vae", UrlSource(files.add("/vae", GOOD)), IMAGE_DEST, GOOD),
        entry("dasiwa", UrlSource(files.add("/d", GOOD)), VOLUME_DEST, GOOD, placement="volume"),
    )
    args = ["--comfyui-dir", str(comfy), "--volume-dir", str(volume), "--lock", str(lock)]
    assert main(["models", "fetch", *args]) == 0
    return comfy, volume, args


def edit_in_place_keeping_mtime(path: Path) -> None:
    """Overwrite the content, same size, same inode, and put the old mtime (and atime) back:
    what `touch -r` or os.utime does. Only ctime, which no user can set, still moves."""
    before = path.stat()
    time.sleep(0.01)  # past the file system's ctime tick, as any real edit later would be
    with open(path, "r+b") as handle:
        handle.write(EVIL)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )


def run(capsys, *argv: str) -> tuple[int, list[str], str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, [line for line in out.err.splitlines() if line.startswith("error:")], out.out


def test_an_edit_in_place_with_the_mtime_restored_fails_fast_verify(setup, capsys):
    comfy, _volume, args = setup
    capsys.readouterr()
    assert run(capsys, "models", "verify", "--mode", "fast", *args)[0] == 0  # stamps trusted
    edit_in_place_keeping_mtime(comfy / IMAGE_DEST)
    code, errors, _ = run(capsys, "models", "verify", "--mode", "fast", *args)
    assert code == 1
    assert len(errors) == 1 and errors[0].startswith("error: vae: ") and "wrong blake3" in errors[0]


def test_an_edit_in_place_with_the_mtime_restored_is_fetched_again(setup, files, capsys):
    comfy, _volume, args = setup
    capsys.readouterr()
    edit_in_place_keeping_mtime(comfy / IMAGE_DEST)
    code, errors, out = run(capsys, "models", "fetch", *args)
    assert (code, errors) == (0, [])
    assert "1 fetched, 1 already present" in out
    assert (comfy / IMAGE_DEST).read_bytes() == GOOD
    assert files.gets("/vae") == 2


def forged_stamp(path: Path, rel: str) -> str:
    """The stamp that vouches for the file now at `path` with the locked hash: every field an
    attacker can read with stat(), in the format bake writes."""
    stat = path.stat()
    fields = {
        "path": rel,
        "blake3": blake3.blake3(GOOD).hexdigest(),
        "device": stat.st_dev,
        "inode": stat.st_ino,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
    }
    return json.dumps(fields)


def plant_stamp(volume: Path, rel: str) -> None:
    """Replace a volume file and write its forged stamp beside it, on the volume."""
    path = volume / rel
    replacement = path.with_name("replacement")
    replacement.write_bytes(EVIL)
    os.replace(replacement, path)
    stamp = volume / stamps.ROOT_DIR / (quote(rel, safe="") + ".json")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(forged_stamp(path, rel))


def test_a_stamp_planted_on_the_volume_is_not_trusted_by_fast_verify(setup, capsys):
    _comfy, volume, args = setup
    plant_stamp(volume, VOLUME_DEST)
    capsys.readouterr()
    code, errors, _ = run(capsys, "models", "verify", "--mode", "fast", *args)
    assert code == 1
    assert len(errors) == 1
    assert errors[0].startswith("error: dasiwa: ") and "wrong blake3" in errors[0]


def test_a_stamp_planted_on_the_volume_is_not_trusted_by_fetch(setup, files, capsys):
    _comfy, volume, args = setup
    plant_stamp(volume, VOLUME_DEST)
    capsys.readouterr()
    code, errors, out = run(capsys, "models", "fetch", *args)
    assert (code, errors) == (0, [])
    assert "1 fetched" in out
    assert (volume / VOLUME_DEST).read_bytes() == GOOD
    assert files.gets("/d") == 2


def test_volume_files_are_stamped_on_local_disk_and_stay_fast(setup, tmp_path, capsys):
    """Nothing is written to the volume's stamp folder, and the stamps kept on local disk
    still spare a second fast run from reading anything."""
    _comfy, volume, args = setup
    assert not (volume / stamps.ROOT_DIR).exists()
    local = list((tmp_path / "xdg-cache" / "comfy-bake" / "stamps").iterdir())
    assert any(quote(str(volume), safe="") in p.name for p in local)
    capsys.readouterr()
    code, _, out = run(capsys, "models", "verify", "--mode", "fast", *args)
    assert code == 0 and "(fast: 0.0 MiB hashed" in out


def test_a_stamp_dir_on_the_volume_is_neither_read_nor_written(
    tmp_path, files, capsys, monkeypatch
):
    volume = tmp_path / "volume"
    monkeypatch.setenv("BAKE_STAMP_DIR", str(volume / "stamps"))
    lock = write_lock(
        tmp_path / "models.lock.yaml",
        entry("dasiwa", UrlSource(files.add("/d", GOOD)), VOLUME_DEST, GOOD, placement="volume"),
    )
    args = ["--comfyui-dir", str(tmp_path / "c"), "--volume-dir", str(volume), "--lock", str(lock)]
    assert main(["models", "fetch", *args]) == 0
    assert not (volume / "stamps").exists()
    # a stamp planted there, in the format bake would write, is ignored
    path = volume / VOLUME_DEST
    path.write_bytes(EVIL)
    planted = volume / "stamps" / (quote(os.path.abspath(path), safe="") + ".json")
    planted.parent.mkdir(parents=True)
    planted.write_text(forged_stamp(path, VOLUME_DEST))
    capsys.readouterr()
    code, errors, _ = run(capsys, "models", "verify", "--mode", "fast", *args)
    assert code == 1 and len(errors) == 1 and "wrong blake3" in errors[0]
