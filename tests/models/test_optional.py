"""`optional: true`: a model only some maintainers can reach (a private bucket) does not stop a
fork from checking, building and booting while it is unlocked; once locked it is fetched and
verified like any other. Every lock here is YAML text, as a maintainer writes it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import blake3
from support.modelfiles import MB, blob

DATA = blob(MB, 7)
SHA256 = hashlib.sha256(DATA).hexdigest()
BLAKE3 = blake3.blake3(DATA).hexdigest()

PRIVATE = """\
  dasiwa_high:
    dest: models/diffusion_models/dasiwa_high.safetensors
    {optional}
    original:
      bucket: ${{DASIWA_R2_BUCKET}}
      key: ${{DASIWA_HIGH_KEY}}
      source: s3
    placement: {placement}
"""


def lock_text(url: str, optional: str = "optional: true", placement: str = "volume") -> str:
    return (
        "version: 1\nmodels:\n"
        + PRIVATE.format(optional=optional, placement=placement)
        + f"""\
  rife47:
    dest: custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife/rife47.pth
    locked:
      blake3: {BLAKE3}
      sha256: {SHA256}
      size: {len(DATA)}
    original:
      source: url
      url: {url}
    placement: image
"""
    )


def bake(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bake", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_check_strict_skips_an_unlocked_optional_entry_but_not_a_required_one(tmp_path):
    (tmp_path / "models.lock.yaml").write_text(lock_text("https://example.invalid/rife47.pth"))
    ok = bake("check", "--strict", "--lock", "models.lock.yaml", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "models.dasiwa_high: optional and not locked: skipped" in ok.stderr

    (tmp_path / "models.lock.yaml").write_text(
        lock_text("https://example.invalid/rife47.pth", optional="")
    )
    refused = bake("check", "--strict", "--lock", "models.lock.yaml", cwd=tmp_path)
    assert refused.returncode == 1
    assert "error: models.lock.yaml: models.dasiwa_high: not locked yet" in refused.stderr


def test_optional_must_be_a_boolean(tmp_path):
    (tmp_path / "models.lock.yaml").write_text(
        lock_text("https://example.invalid/rife47.pth", optional='optional: "yes"')
    )
    result = bake("check", "--lock", "models.lock.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "models.dasiwa_high.optional: expected true or false" in result.stderr


def test_fetch_skips_the_unlocked_optional_image_entry_and_fetches_the_rest(files, tmp_path):
    url = files.add("/rife47.pth", DATA)
    (tmp_path / "models.lock.yaml").write_text(lock_text(url, placement="image"))
    comfyui = tmp_path / "comfyui"
    result = bake(
        "models", "fetch", "--comfyui-dir", str(comfyui), "--placement", "image",
        "--lock", "models.lock.yaml", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "warning: dasiwa_high: optional and not locked: skipped" in result.stderr
    assert (
        comfyui / "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife/rife47.pth"
    ).read_bytes() == DATA
    assert not (comfyui / "models").exists()

    # Fetching only the skipped entry (one Dockerfile stage per model) leaves an empty root to
    # copy out, not a missing folder that would fail the stage's COPY.
    alone = tmp_path / "alone"
    result = bake(
        "models", "fetch", "--comfyui-dir", str(alone), "--placement", "image",
        "--name", "dasiwa_high", "--lock", "models.lock.yaml", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert alone.is_dir() and not any(alone.iterdir())


def test_a_locked_optional_entry_is_verified_like_any_other(tmp_path):
    text = lock_text("https://example.invalid/rife47.pth", placement="image").replace(
        "    optional: true\n",
        f"    optional: true\n    locked:\n      blake3: {BLAKE3}\n"
        f"      sha256: {SHA256}\n      size: {len(DATA)}\n",
    )
    (tmp_path / "models.lock.yaml").write_text(text)
    comfyui = tmp_path / "comfyui"
    (comfyui / "models/diffusion_models").mkdir(parents=True)
    (comfyui / "models/diffusion_models/dasiwa_high.safetensors").write_bytes(b"x" * len(DATA))
    result = bake(
        "models", "verify", "--comfyui-dir", str(comfyui), "--placement", "image",
        "--lock", "models.lock.yaml", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "dasiwa_high" in result.stderr and "error:" in result.stderr


def test_update_locks_keeps_an_unreachable_optional_entry_and_locks_the_rest(files, tmp_path):
    url = files.add("/rife47.pth", DATA)
    text = lock_text(url)
    # rife47 starts unlocked: update-locks must lock it although the private entry fails.
    start = text.index("    locked:\n      blake3")
    end = text.index("    original:\n      source: url")
    (tmp_path / "models.lock.yaml").write_text(text[:start] + text[end:])
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parents[2] / "scripts/update-locks.py"),
         "--models", "--lock", "models.lock.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning: models.dasiwa_high" in result.stdout
    assert "optional: kept as it was" in result.stdout
    locked = (tmp_path / "models.lock.yaml").read_text()
    assert f"blake3: {BLAKE3}" in locked and "optional: true" in locked
