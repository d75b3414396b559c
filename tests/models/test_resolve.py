"""`scripts/update-locks.py --models`: original -> locked, through each source's metadata and
one streamed pass through sha256 and blake3."""

from __future__ import annotations

import hashlib

import blake3
from support.modelfiles import MB, blob, entry, write_lock

from bake.locks.models import HfSource, S3Source, UrlSource, load_models_lock
from bake.models.resolve import update_models

HIGH, VAE, RIFE, DASIWA = blob(3 * MB, 1), blob(MB, 2), blob(MB, 3), blob(2 * MB, 4)
REPO = "Comfy-Org/Wan_2.2_ComfyUI_Repackaged"


def unlocked_lock(path, hub, files, s3):
    hub.add_file(REPO, "split_files/diffusion_models/high.safetensors", HIGH)
    hub.add_file(REPO, "split_files/vae/vae.safetensors", VAE, lfs=False)
    s3.put("r2-bucket", "dasiwa/high.safetensors", DASIWA)
    return write_lock(
        path,
        entry(
            "high",
            HfSource(REPO, "split_files/diffusion_models/high.safetensors"),
            "models/diffusion_models/high.safetensors",
        ),
        entry(
            "vae", HfSource(REPO, "split_files/vae/vae.safetensors"), "models/vae/vae.safetensors"
        ),
        entry(
            "rife47",
            UrlSource(files.add("/rife47.pth", RIFE)),
            "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife/rife47.pth",
        ),
        entry(
            "dasiwa_high",
            S3Source("${R2_BUCKET}", "dasiwa/high.safetensors"),
            "models/diffusion_models/dasiwa_high.safetensors",
            placement="volume",
        ),
    )


def test_resolves_every_source_and_is_idempotent(hub, files, s3, tmp_path, monkeypatch):
    monkeypatch.setenv("R2_BUCKET", "r2-bucket")
    path = unlocked_lock(tmp_path / "models.lock.yaml", hub, files, s3)
    lines: list[str] = []
    assert update_models(path, out=lines.append) == 0
    lock = load_models_lock(path)
    commit = hub.repos[REPO].branches["main"]
    for name, data in (("high", HIGH), ("vae", VAE), ("rife47", RIFE), ("dasiwa_high", DASIWA)):
        pin = lock.get(name).locked
        assert pin.size == len(data)
        assert pin.blake3 == blake3.blake3(data).hexdigest()
        assert pin.sha256 == hashlib.sha256(data).hexdigest()
    assert lock.get("high").locked.revision == commit
    assert lock.get("rife47").locked.revision is None
    assert "~ models.high" in lines and f"    locked.revision: (none) -> {commit[:12]}" in lines
    # no copy is kept: nothing the size of a model file appeared in the test's directories
    sizes = {len(HIGH), len(VAE), len(RIFE), len(DASIWA)}
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.stat().st_size in sizes]

    before = path.read_bytes()
    streamed = hub.downloads("split_files/diffusion_models/high.safetensors")
    lines.clear()
    assert update_models(path, ["high"], out=lines.append) == 0
    assert path.read_bytes() == before and lines == ["models.lock.yaml: up to date"]
    # same commit, same LFS sha256: the content is known, nothing is streamed again
    assert hub.downloads("split_files/diffusion_models/high.safetensors") == streamed


def test_a_moved_branch_shows_in_the_diff(hub, files, s3, tmp_path, monkeypatch):
    monkeypatch.setenv("R2_BUCKET", "r2-bucket")
    path = unlocked_lock(tmp_path / "models.lock.yaml", hub, files, s3)
    assert update_models(path, out=lambda line: None) == 0
    old = load_models_lock(path).get("high").locked
    new_data = blob(3 * MB, 77)
    commit = hub.add_file(REPO, "split_files/diffusion_models/high.safetensors", new_data)
    lines: list[str] = []
    assert update_models(path, ["high"], out=lines.append) == 0
    assert "~ models.high" in lines
    assert f"    locked.revision: {old.revision[:12]} -> {commit[:12]}" in lines
    assert f"    locked.blake3: {old.blake3} -> {blake3.blake3(new_data).hexdigest()}" in lines
    assert not any("vae" in line for line in lines)  # only what was asked for


def test_hub_sha256_disagreeing_with_the_stream_fails(hub, tmp_path):
    hub.add_file(REPO, "x.safetensors", HIGH)
    hub.corrupt["x.safetensors"] = blob(3 * MB, 5)
    path = write_lock(
        tmp_path / "models.lock.yaml",
        entry("x", HfSource(REPO, "x.safetensors"), "models/x/x.safetensors"),
    )
    lines: list[str] = []
    assert update_models(path, out=lines.append) == 1
    error = next(line for line in lines if line.startswith("error:"))
    assert "models.x" in error and hashlib.sha256(HIGH).hexdigest() in error
    assert hashlib.sha256(hub.corrupt["x.safetensors"]).hexdigest() in error
    assert load_models_lock(path).get("x").locked is None


def test_failures_are_reported_and_the_rest_is_still_locked(hub, files, tmp_path):
    hub.add_file(REPO, "ok.safetensors", VAE)
    files.status["/gone.pth"] = 404
    path = write_lock(
        tmp_path / "models.lock.yaml",
        entry("ok", HfSource(REPO, "ok.safetensors"), "models/x/ok.safetensors"),
        entry("gone", UrlSource(files.url("/gone.pth")), "models/x/gone.pth"),
        entry("norev", HfSource(REPO, "ok.safetensors", revision="v9"), "models/x/n.sft"),
    )
    lines: list[str] = []
    assert update_models(path, out=lines.append) == 1
    errors = [line for line in lines if line.startswith("error:")]
    assert any("models.gone" in line and "404" in line for line in errors)
    assert any("models.norev" in line and "'v9' does not exist" in line for line in errors)
    lock = load_models_lock(path)
    assert lock.get("ok").locked is not None and lock.get("gone").locked is None


def test_check_needs_no_network_and_fails_on_unlocked(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    path = write_lock(
        tmp_path / "models.lock.yaml",
        entry("done", UrlSource("https://example.invalid/a"), "models/x/a", VAE),
        entry("todo", UrlSource("https://example.invalid/b"), "models/x/b"),
    )
    lines: list[str] = []
    assert update_models(path, check=True, out=lines.append) == 1
    assert lines == [
        "error: models.todo: not locked: run `scripts/update-locks.py --models todo`"
        " with network access"
    ]
    lines.clear()
    assert update_models(path, ["done"], check=True, out=lines.append) == 0


def test_check_flags_a_pin_that_contradicts_a_commit_in_original(tmp_path):
    path = write_lock(
        tmp_path / "models.lock.yaml",
        entry("x", HfSource(REPO, "x", revision="b" * 40), "models/x/x", VAE, revision="a" * 40),
    )
    lines: list[str] = []
    assert update_models(path, check=True, out=lines.append) == 1
    assert "stale" in lines[0] and "b" * 40 in lines[0]


def test_unknown_name(tmp_path):
    path = write_lock(
        tmp_path / "models.lock.yaml",
        entry("x", UrlSource("https://example.invalid/x"), "models/x/x"),
    )
    lines: list[str] = []
    assert update_models(path, ["nope"], out=lines.append) == 1
    assert "no model named 'nope'" in lines[0]
