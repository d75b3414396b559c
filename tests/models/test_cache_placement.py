"""`placement: cache` in bake's own commands: `models fetch` never downloads such an entry
(RunPod's model cache provides it), and `models verify` finds it in a Hub cache laid out by
huggingface_hub (HF_CACHE_ROOTS) and hashes it like any model."""

from __future__ import annotations

from huggingface_hub import hf_hub_download
from support.modelfiles import MB, blob, entry, write_lock

from bake.cli import main
from bake.locks.models import HfSource

REPO_ID, FILE = "org/cached", "split_files/vae/vae.safetensors"
DATA = blob(MB, 5)


def cache_lock(hub, tmp_path):
    commit = hub.add_file(REPO_ID, FILE, DATA)
    return write_lock(
        tmp_path / "models.lock.yaml",
        entry(
            "vae",
            HfSource(REPO_ID, FILE),
            "models/vae/vae.safetensors",
            DATA,
            placement="cache",
            revision=commit,
        ),
    )


def test_fetch_leaves_cache_entries_to_runpods_model_cache(hub, tmp_path, capsys):
    lock = cache_lock(hub, tmp_path)
    comfy, volume = tmp_path / "comfyui", tmp_path / "volume"
    volume.mkdir()
    args = ["models", "fetch", "--comfyui-dir", str(comfy), "--volume-dir", str(volume)]
    assert main([*args, "--lock", str(lock)]) == 0
    out = capsys.readouterr()
    assert "0 fetched, 0 already present, 0 failed" in out.out
    assert "note: vae: placement cache: not fetched (RunPod's model cache provides it" in out.err
    assert hub.downloads(FILE) == 0
    assert not any(p.is_file() for p in tmp_path.rglob("vae.safetensors"))


def test_verify_finds_the_file_in_the_hub_cache_and_hashes_it(hub, tmp_path, capsys, monkeypatch):
    lock = cache_lock(hub, tmp_path)
    root = tmp_path / "hub-cache"
    hf_hub_download(REPO_ID, FILE, cache_dir=root, endpoint=hub.endpoint)
    monkeypatch.setenv("HF_CACHE_ROOTS", str(root))
    args = ["models", "verify", "--comfyui-dir", str(tmp_path / "c"), "--lock", str(lock)]
    assert main([*args, "--volume-dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "1 verified, 0 missing, 0 wrong" in out.out
    assert f"ok vae {root}/models--org--cached/snapshots/" in out.err

    monkeypatch.setenv("HF_CACHE_ROOTS", str(tmp_path / "elsewhere"))
    assert main([*args, "--volume-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"error: vae: not in RunPod's model cache: looked for {FILE} of {REPO_ID}" in err
