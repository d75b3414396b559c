"""`models verify` checks a pin's sha256 with its blake3, in the same single read of the file:
a lock whose two hashes describe different bytes fails, in `full` mode and in `fast` mode."""

from __future__ import annotations

import dataclasses
import json

import pytest
from support.modelfiles import MB, blob, entry, make_lock, pin_of

from bake import hashing
from bake.cli import main
from bake.locks.models import UrlSource, write_models_lock
from bake.models import stamps, store
from bake.models import verify as models_verify
from bake.models.store import is_present
from bake.models.verify import verify_models

DATA, OTHER = blob(3 * MB + 5, 1), blob(3 * MB + 5, 2)
DEST = "models/vae/vae.safetensors"


def lock_with(pin):
    e = entry("vae", UrlSource("https://example.invalid/v"), DEST, DATA)
    return make_lock(dataclasses.replace(e, locked=pin))


@pytest.fixture
def comfy(tmp_path):
    root = tmp_path / "comfyui"
    (root / DEST).parent.mkdir(parents=True)
    (root / DEST).write_bytes(DATA)
    return root


def crossed_pin():
    """DATA's size and blake3 with OTHER's sha256: two hashes of two different files."""
    return dataclasses.replace(pin_of(DATA), sha256=pin_of(OTHER).sha256)


def test_full_mode_reads_each_file_once_for_both_hashes(comfy, monkeypatch):
    opened, reads = [], []
    real_open, real_hash = models_verify.open_file, models_verify._hash

    def counting_open(path):
        opened.append(str(path))
        return real_open(path)

    def counting_hash(fd, sha256):
        digests = real_hash(fd, sha256)
        reads.append((sha256, digests.sha256, digests.blake3))
        return digests

    monkeypatch.setattr(models_verify, "open_file", counting_open)
    monkeypatch.setattr(models_verify, "_hash", counting_hash)
    chunks: list[int] = []
    monkeypatch.setattr(hashing, "_CHUNK", MB)
    monkeypatch.setattr(hashing, "_chunk_hashed", lambda done, total: chunks.append(done))
    report = verify_models(lock_with(pin_of(DATA)), comfy, mode="full")
    assert report.ok and report.hashed_bytes == len(DATA)
    assert opened == [str(comfy / DEST)]
    pin = pin_of(DATA)
    assert reads == [(True, pin.sha256, pin.blake3)]
    assert chunks == [MB, 2 * MB, 3 * MB, len(DATA)]  # one pass over the mapping


def test_a_lock_whose_sha256_and_blake3_describe_different_bytes_fails(comfy, tmp_path):
    report = verify_models(lock_with(crossed_pin()), comfy, mode="full")
    assert not report.ok and report.verified == []
    (line,) = report.problems
    assert line.startswith(f"vae: {comfy / DEST}: wrong sha256: expected {crossed_pin().sha256}")
    assert f"found {pin_of(DATA).sha256}" in line and "blake3 matches the lock" in line
    assert "scripts/update-locks.py --models vae" in line
    assert not list(tmp_path.rglob("*.json"))  # nothing stamped


def test_fast_mode_does_not_trust_a_stamp_that_checked_another_sha256(comfy):
    """A stamp written under a consistent lock does not vouch once the pin's sha256 is edited:
    the file is read again and fails, as in full mode."""
    assert verify_models(lock_with(pin_of(DATA)), comfy, mode="full").ok
    assert verify_models(lock_with(pin_of(DATA)), comfy, mode="fast").hashed_bytes == 0
    report = verify_models(lock_with(crossed_pin()), comfy, mode="fast")
    assert report.hashed_bytes == len(DATA)
    assert not report.ok and "wrong sha256" in report.problems[0]


def test_a_stamp_from_before_sha256_was_checked_is_read_again_once(comfy, tmp_path):
    """Stamps written before this change carry no sha256: they vouch for a pin without one,
    and a pin with one has the file read once more, after which the new stamp vouches."""
    pin = pin_of(DATA)
    stat = (comfy / DEST).stat()
    path = stamps.record(comfy, DEST, stat, pin.blake3)
    assert "sha256" not in json.loads(path.read_text())
    no_sha = dataclasses.replace(pin, sha256=None)
    assert verify_models(lock_with(no_sha), comfy, mode="fast").hashed_bytes == 0
    first = verify_models(lock_with(pin), comfy, mode="fast")
    assert first.ok and first.hashed_bytes == len(DATA)
    assert json.loads(path.read_text())["sha256"] == pin.sha256
    assert verify_models(lock_with(pin), comfy, mode="fast").hashed_bytes == 0


def test_a_pin_without_sha256_is_checked_by_blake3_alone(comfy, monkeypatch):
    seen = []
    real_hash = models_verify._hash
    monkeypatch.setattr(
        models_verify, "_hash", lambda fd, sha256: seen.append(sha256) or real_hash(fd, sha256)
    )
    pin = dataclasses.replace(pin_of(DATA), sha256=None)
    assert verify_models(lock_with(pin), comfy, mode="full").ok
    assert seen == [False]


def test_fetch_does_not_take_a_present_file_whose_sha256_differs_from_the_pin(comfy):
    assert not is_present(comfy, DEST, crossed_pin())
    assert is_present(comfy, DEST, pin_of(DATA))
    # the stamp that call wrote covers the right sha256 only
    assert not is_present(comfy, DEST, crossed_pin())


def test_fetch_stamps_the_sha256_it_checked_while_streaming(tmp_path):
    pin = pin_of(DATA)

    def download(sink):
        sink.write(DATA)

    assert store.place(tmp_path, DEST, pin, download, label="vae", origin="o")
    stamp = stamps._read(stamps._candidates(tmp_path, DEST)[0])
    assert stamp is not None and stamp.covers(pin)
    assert stamp.matches((tmp_path / DEST).stat())


def test_the_cli_fails_a_crossed_lock(comfy, tmp_path, capsys):
    lock_file = tmp_path / "models.lock.yaml"
    write_models_lock(lock_with(crossed_pin()), lock_file)
    args = ["models", "verify", "--comfyui-dir", str(comfy), "--lock", str(lock_file)]
    assert main([*args, "--volume-dir", str(tmp_path / "no-volume")]) == 1
    err = capsys.readouterr().err
    assert "error: vae: " in err and "wrong sha256" in err
