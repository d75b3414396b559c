"""bake.models.verify: what the worker checks at boot, and `python -m bake models verify`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.modelfiles import MB, blob, entry, make_lock, write_lock

from bake.cli import main
from bake.locks.models import HfSource, S3Source, UrlSource
from bake.models import stamps
from bake.models import verify as models_verify
from bake.models.verify import verify_models

VAE = blob(MB, 1)
LORA = blob(2 * MB, 2)
DASIWA = blob(MB, 3)


def entries():
    return (
        entry(
            "vae",
            HfSource("org/r", "vae.safetensors"),
            "models/vae/vae.safetensors",
            VAE,
            revision="a" * 40,
        ),
        entry(
            "lora",
            UrlSource("https://example.invalid/l.safetensors"),
            "models/loras/l.safetensors",
            LORA,
        ),
        entry(
            "dasiwa",
            S3Source("${BUCKET}", "d.safetensors"),
            "models/diffusion_models/d.safetensors",
            DASIWA,
            placement="volume",
        ),
    )


def put(root: Path, rel: str, data: bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def layout(tmp_path):
    comfy, volume = tmp_path / "comfyui", tmp_path / "volume"
    put(comfy, "models/vae/vae.safetensors", VAE)
    put(comfy, "models/loras/l.safetensors", LORA)
    put(volume, "models/diffusion_models/d.safetensors", DASIWA)
    return comfy, volume


def test_all_present_and_valid(layout):
    comfy, volume = layout
    report = verify_models(make_lock(*entries()), comfy, [volume])
    assert report.ok and not report.missing
    assert sorted(report.verified) == sorted(
        [
            str(comfy / "models/vae/vae.safetensors"),
            str(comfy / "models/loras/l.safetensors"),
            str(volume / "models/diffusion_models/d.safetensors"),
        ]
    )


def test_missing_wrong_size_and_wrong_hash_each_get_one_line(layout):
    comfy, volume = layout
    (volume / "models/diffusion_models/d.safetensors").unlink()
    put(comfy, "models/loras/l.safetensors", LORA[:-1])
    bad = blob(MB, 99)
    put(comfy, "models/vae/vae.safetensors", bad)
    report = verify_models(make_lock(*entries()), comfy, [volume])
    assert not report.ok
    assert [e.name for e in report.missing] == ["dasiwa"]
    assert len(report.problems) == 2
    size_line = next(p for p in report.problems if p.startswith("lora:"))
    assert f"expected {2 * MB} bytes, found {2 * MB - 1} bytes" in size_line
    assert str(comfy / "models/loras/l.safetensors") in size_line
    hash_line = next(p for p in report.problems if p.startswith("vae:"))
    vae_pin = entries()[0].locked
    import blake3

    assert vae_pin.blake3 in hash_line and blake3.blake3(bad).hexdigest() in hash_line
    assert "models fetch" in hash_line


def test_placement_limits_what_is_checked(layout):
    comfy, _ = layout
    report = verify_models(make_lock(*entries()), comfy, [], placement="image")
    assert report.ok and not report.missing and len(report.verified) == 2


def test_every_copy_in_the_search_paths_is_checked(layout):
    comfy, volume = layout
    put(volume, "models/vae/vae.safetensors", blob(MB, 5))  # a stale copy on the volume
    report = verify_models(make_lock(*entries()), comfy, [volume])
    assert [p.split(":")[0] for p in report.problems] == ["vae"]
    assert str(volume / "models/vae/vae.safetensors") in report.problems[0]


def test_unlocked_entries_are_listed_not_failed(layout):
    comfy, volume = layout
    unlocked = entry("new", UrlSource("https://example.invalid/n"), "models/x/n.bin")
    report = verify_models(make_lock(*entries(), unlocked), comfy, [volume])
    assert report.ok and [e.name for e in report.unlocked] == ["new"]


def test_fast_mode_reads_nothing_when_files_are_unchanged(layout, monkeypatch):
    comfy, volume = layout
    lock = make_lock(*entries())
    assert verify_models(lock, comfy, [volume], mode="full").ok

    def no_reading(fd, sha256):
        raise AssertionError(f"fast mode read {os.readlink(f'/proc/self/fd/{fd}')}")

    monkeypatch.setattr(models_verify, "_hash", no_reading)
    report = verify_models(lock, comfy, [volume], mode="fast")
    assert report.ok and len(report.verified) == 3 and report.hashed_bytes == 0


def test_fast_mode_notices_a_file_replaced_after_it_was_stamped(layout):
    comfy, volume = layout
    lock = make_lock(*entries())
    assert verify_models(lock, comfy, [volume], mode="full").ok
    path = comfy / "models/vae/vae.safetensors"
    before = path.stat()
    # same size, same mtime, other bytes: only the inode tells them apart
    replacement = path.with_name("replacement")
    replacement.write_bytes(blob(MB, 42))
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(replacement, path)
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_size == before.st_size
    report = verify_models(lock, comfy, [volume], mode="fast")
    assert [p.split(":")[0] for p in report.problems] == ["vae"]


def test_fast_mode_notices_an_edit_in_place(layout):
    comfy, volume = layout
    lock = make_lock(*entries())
    verify_models(lock, comfy, [volume], mode="full")
    path = comfy / "models/loras/l.safetensors"
    with open(path, "r+b") as handle:
        handle.write(b"\0" * 16)
    report = verify_models(lock, comfy, [volume], mode="fast")
    assert [p.split(":")[0] for p in report.problems] == ["lora"]


def test_stamps_fall_back_to_the_user_cache_when_the_root_is_not_writable(
    layout, tmp_path, monkeypatch
):
    comfy, volume = layout
    # a file where the stamp directory would go: not writable even for root
    (comfy / stamps.ROOT_DIR).write_text("")
    lock = make_lock(*entries())
    assert verify_models(lock, comfy, [volume]).ok
    cached = list((tmp_path / "xdg-cache" / "comfy-bake" / "stamps").iterdir())
    assert len(cached) == 3  # the two image files, and the volume's, which never lives there
    monkeypatch.setattr(models_verify, "_hash", lambda *a, **k: pytest.fail("hashed"))
    assert verify_models(lock, comfy, [volume], mode="fast").ok


def test_the_stamp_fallback_honours_bake_cache_dir(layout, tmp_path, monkeypatch):
    """The same cache root as the rest of bake: $BAKE_CACHE_DIR/stamps when it is set."""
    comfy, volume = layout
    (comfy / stamps.ROOT_DIR).write_text("")
    monkeypatch.setenv("BAKE_CACHE_DIR", str(tmp_path / "bake-cache"))
    assert verify_models(make_lock(*entries()), comfy, [volume]).ok
    assert len(list((tmp_path / "bake-cache" / "stamps").iterdir())) == 3
    assert not (tmp_path / "xdg-cache").exists()


def test_cli_exits_1_with_one_line_per_problem(layout, tmp_path, capsys):
    comfy, volume = layout
    lock_file = write_lock(
        tmp_path / "models.lock.yaml",
        *entries(),
        entry("new", UrlSource("https://example.invalid/n"), "models/x/n"),
    )
    args = [
        "models",
        "verify",
        "--comfyui-dir",
        str(comfy),
        "--volume-dir",
        str(volume),
        "--lock",
        str(lock_file),
    ]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "3 verified" in out.out and "warning: new: not locked" in out.err
    assert f"ok vae {comfy / 'models/vae/vae.safetensors'} (hashed in" in out.err
    (volume / "models/diffusion_models/d.safetensors").unlink()
    put(comfy, "models/vae/vae.safetensors", blob(MB, 7))
    assert main([*args, "--mode", "fast"]) == 1
    err = capsys.readouterr().err.splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 2
    assert any(
        "dasiwa: missing" in line and "models fetch --placement volume" in line for line in errors
    )
    assert any("vae:" in line and "wrong blake3" in line for line in errors)
