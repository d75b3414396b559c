"""`python -m bake models fetch`: selection, refusals, the CLI, and many processes at once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support.modelfiles import MB, blob, entry, make_lock, write_lock

from bake.cli import main
from bake.errors import BakeError, FetchError, UnlockedError
from bake.hashing import blake3_file
from bake.locks.models import HfSource, S3Source, UrlSource
from bake.models import stamps
from bake.models.fetch import fetch_models

VAE, LORA, RIFE = blob(2 * MB, 1), blob(MB, 2), blob(MB, 3)


def lock_entries(hub, files):
    commit = hub.add_file("org/wan", "split_files/vae/vae.safetensors", VAE)
    hub.add_file("org/wan", "split_files/loras/lora.safetensors", LORA)
    commit = hub.repos["org/wan"].branches["main"]
    return (
        entry(
            "vae",
            HfSource("org/wan", "split_files/vae/vae.safetensors"),
            "models/vae/vae.safetensors",
            VAE,
            revision=commit,
        ),
        entry(
            "lora",
            HfSource("org/wan", "split_files/loras/lora.safetensors"),
            "models/loras/lora.safetensors",
            LORA,
            revision=commit,
            placement="volume",
        ),
        entry(
            "rife47",
            UrlSource(files.add("/rife47.pth", RIFE)),
            "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife/rife47.pth",
            RIFE,
        ),
    )


def test_unlocked_entries_are_refused_before_anything_downloads(hub, files, tmp_path):
    unlocked = entry(
        "dasiwa_high", S3Source("b", "k"), "models/d/x.safetensors", placement="volume"
    )
    lock = make_lock(*lock_entries(hub, files), unlocked)
    with pytest.raises(UnlockedError) as err:
        fetch_models(lock, tmp_path / "c", [tmp_path / "v"])
    assert "scripts/update-locks.py --models dasiwa_high" in str(err.value)
    assert hub.downloads("split_files/vae/vae.safetensors") == 0 and files.gets("/rife47.pth") == 0
    # an image-only fetch does not need the volume entry to be locked
    assert fetch_models(lock, tmp_path / "c", placement="image").ok


def test_placement_decides_the_root(hub, files, tmp_path):
    comfy, volume = tmp_path / "comfyui", tmp_path / "volume"
    lock = make_lock(*lock_entries(hub, files))
    report = fetch_models(lock, comfy, [volume, tmp_path / "second"])
    assert report.ok
    assert sorted(report.fetched) == sorted(
        [
            str(comfy / "models/vae/vae.safetensors"),
            str(volume / "models/loras/lora.safetensors"),
            str(comfy / "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife/rife47.pth"),
        ]
    )
    assert not (tmp_path / "second").exists()


def test_volume_entries_need_a_volume_dir(hub, files, tmp_path):
    lock = make_lock(*lock_entries(hub, files))
    with pytest.raises(FetchError, match="--volume-dir"):
        fetch_models(lock, tmp_path, [], placement="volume")


def test_names_select_entries_and_unknown_names_are_refused(hub, files, tmp_path):
    lock = make_lock(*lock_entries(hub, files))
    report = fetch_models(lock, tmp_path, names=["rife47"])
    assert len(report.fetched) == 1 and files.gets("/rife47.pth") == 1
    with pytest.raises(BakeError, match="no model named 'nope'"):
        fetch_models(lock, tmp_path, names=["nope"])


def test_cli(hub, files, tmp_path, capsys):
    lock_file = write_lock(tmp_path / "models.lock.yaml", *lock_entries(hub, files))
    comfy = tmp_path / "comfyui"
    args = [
        "models",
        "fetch",
        "--comfyui-dir",
        str(comfy),
        "--lock",
        str(lock_file),
        "--placement",
        "image",
    ]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "2 fetched, 0 already present, 0 failed" in out.out
    assert "fetched vae" in out.err and "fetched rife47" in out.err
    assert main(args) == 0
    assert "0 fetched, 2 already present" in capsys.readouterr().out
    files.status["/rife47.pth"] = 404
    (comfy / "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife/rife47.pth").unlink()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "error: rife47: " in err and "404" in err


def test_cli_volume_placement_without_volume_dir(hub, files, tmp_path, capsys, monkeypatch):
    from bake.models import verify as models_verify

    monkeypatch.setattr(models_verify, "DEFAULT_VOLUME_ROOTS", (tmp_path / "absent",))
    lock_file = write_lock(tmp_path / "models.lock.yaml", *lock_entries(hub, files))
    assert (
        main(
            [
                "models",
                "fetch",
                "--comfyui-dir",
                str(tmp_path),
                "--lock",
                str(lock_file),
                "--placement",
                "volume",
            ]
        )
        == 1
    )
    assert "--volume-dir" in capsys.readouterr().err


@pytest.mark.slow
def test_eight_processes_fetch_one_lock_into_one_directory(hub, files, s3, tmp_path):
    """Workers booting on one network volume: each ends with every file present and valid,
    and each file crosses the network once."""
    big = blob(6 * MB, 4)
    hub.add_file("org/wan", "split_files/diffusion_models/big.safetensors", big)
    s3.put("shared", "dasiwa.safetensors", LORA)
    entries = (
        *lock_entries(hub, files),
        entry(
            "big",
            HfSource("org/wan", "split_files/diffusion_models/big.safetensors"),
            "models/diffusion_models/big.safetensors",
            big,
            revision=hub.repos["org/wan"].branches["main"],
        ),
        entry(
            "dasiwa",
            S3Source("shared", "dasiwa.safetensors"),
            "models/diffusion_models/dasiwa.safetensors",
            LORA,
            placement="volume",
        ),
    )
    lock_file = write_lock(tmp_path / "models.lock.yaml", *entries)
    shared = tmp_path / "volume"
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.endpoint,
        **s3.env(),
        "BAKE_STAMP_DIR": "",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "bake",
        "models",
        "fetch",
        "--comfyui-dir",
        str(shared),
        "--volume-dir",
        str(shared),
        "--lock",
        str(lock_file),
        "--jobs",
        "3",
    ]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(8)
    ]
    outputs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [p.returncode for p in procs] == [0] * 8, "\n".join(outputs)
    for e in entries:
        path = shared / e.dest
        assert blake3_file(path) == e.locked.blake3
        assert stamps.lookup(shared, e.dest, path.stat()) == e.locked.blake3
        assert not list(path.parent.glob(".*.incomplete"))
    for e in entries[:2] + entries[3:4]:
        assert hub.downloads(e.source.path) == 1, e.name
    assert files.gets("/rife47.pth") == 1
    fetched = sum(int(out.rsplit(" fetched,", 1)[0].rsplit("\n", 1)[-1]) for out in outputs)
    assert fetched == len(entries)  # the S3 object too: exactly one process downloaded each


def test_a_fetched_file_verifies_in_fast_mode_without_hashing(hub, files, tmp_path, monkeypatch):
    from bake.models import verify as models_verify
    from bake.models.verify import verify_models

    lock = make_lock(*lock_entries(hub, files))
    comfy, volume = tmp_path / "comfyui", tmp_path / "volume"
    fetch_models(lock, comfy, [volume], placement="all")
    monkeypatch.setattr(models_verify, "_hash", lambda fd, sha: pytest.fail(f"re-hashed fd {fd}"))
    report = verify_models(lock, comfy, [volume], mode="fast")
    assert report.ok and not report.missing and len(report.verified) == 3


def test_an_unexpected_error_is_a_failure_line_naming_the_entry(hub, files, tmp_path, monkeypatch):
    """A library error nobody translated fails that entry, not the run, and shows no query."""
    from bake.models import url as source_url

    def broken(source, sink, **kw):
        raise RuntimeError(f"bad state at {source.url}?X-Amz-Signature=hidden-value")

    monkeypatch.setattr(source_url, "download", broken)
    lock = make_lock(*lock_entries(hub, files))
    report = fetch_models(lock, tmp_path, [tmp_path / "volume"])
    assert len(report.fetched) == 2
    assert len(report.failed) == 1
    line = report.failed[0]
    assert line.startswith("rife47: ") and "RuntimeError" in line and "bad state at" in line
    assert "hidden-value" not in line and "X-Amz-Signature" not in line


def test_fetch_and_update_locks_select_names_alike(hub, files, tmp_path):
    """One selection: every unknown name reported at once, the same words from both commands,
    and a name given twice handled once."""
    from bake.models.resolve import update_models

    entries = lock_entries(hub, files)
    lock_file = write_lock(tmp_path / "models.lock.yaml", *entries)
    with pytest.raises(BakeError) as err:
        fetch_models(make_lock(*entries), tmp_path, names=["nope", "rife47", "zilch"])
    lines: list[str] = []
    assert update_models(lock_file, ["nope", "rife47", "zilch"], out=lines.append) == 1
    assert lines == [f"error: {err.value}"]
    assert "'nope'" in lines[0] and "'zilch'" in lines[0] and "known: lora, rife47, vae" in lines[0]
    report = fetch_models(make_lock(*entries), tmp_path, names=["rife47", "rife47"])
    assert len(report.fetched) == 1 and report.present == []
