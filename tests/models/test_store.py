"""bake.models.store: nothing half-written at a destination, whatever the download does."""

from __future__ import annotations

import errno

import pytest
from support.modelfiles import MB, blob, pin_of

from bake.errors import FetchError, HashMismatchError, SizeMismatchError
from bake.models import stamps, store
from bake.models.store import DownloadInterrupted, is_present, lock_path, place, temp_path

REL = "models/vae/x.safetensors"


def writer(data: bytes, chunk: int = 256 * 1024, calls: list | None = None):
    """A download that writes `data` from the sink's offset, recording the offsets it saw."""

    def download(sink):
        if calls is not None:
            calls.append(sink.offset)
        for i in range(sink.offset, len(data), chunk):
            sink.write(data[i : i + chunk])

    return download


def leftovers(root):
    return sorted(p.name for p in (root / "models/vae").iterdir() if p.name.endswith(".incomplete"))


def test_places_file_records_stamp_and_skips_a_valid_copy(tmp_path):
    data = blob(3 * MB)
    pin = pin_of(data)
    calls: list[int] = []
    assert place(tmp_path, REL, pin, writer(data, calls=calls), label="x", origin="o")
    assert (tmp_path / REL).read_bytes() == data
    assert stamps.lookup(tmp_path, REL, (tmp_path / REL).stat()) == pin.blake3
    assert not place(tmp_path, REL, pin, writer(data, calls=calls), label="x", origin="o")
    assert calls == [0]
    assert leftovers(tmp_path) == []


def test_hash_mismatch_deletes_temp_file_and_names_both_hashes(tmp_path):
    data, other = blob(MB, 1), blob(MB, 2)
    pin = pin_of(data)
    with pytest.raises(HashMismatchError) as err:
        place(tmp_path, REL, pin, writer(other), label="vae", origin="hf://org/r/x@abc")
    message = str(err.value)
    assert pin.blake3 in message and pin_of(other).blake3 in message
    assert "hf://org/r/x@abc" in message and "vae" in message
    assert "scripts/update-locks.py --models vae" in message
    assert not (tmp_path / REL).exists()
    assert leftovers(tmp_path) == []


def test_sha256_is_checked_too(tmp_path):
    data = blob(MB)
    pin = pin_of(data)
    wrong = type(pin)(size=pin.size, blake3=pin.blake3, sha256="0" * 64)
    with pytest.raises(HashMismatchError, match="sha256"):
        place(tmp_path, REL, wrong, writer(data), label="x", origin="o")
    assert not (tmp_path / REL).exists()


def test_truncated_download_is_a_size_mismatch(tmp_path):
    data = blob(2 * MB)
    with pytest.raises(SizeMismatchError) as err:
        place(tmp_path, REL, pin_of(data), writer(data[:MB]), label="x", origin="o")
    assert f"sent {MB} bytes, expected {2 * MB}" in str(err.value)
    assert not (tmp_path / REL).exists() and leftovers(tmp_path) == []


def test_oversized_download_stops_at_the_locked_size(tmp_path):
    data = blob(MB)
    with pytest.raises(SizeMismatchError, match="more than the locked"):
        place(tmp_path, REL, pin_of(data), writer(data + b"extra"), label="x", origin="o")
    assert not (tmp_path / REL).exists() and leftovers(tmp_path) == []


def test_disk_full_removes_temp_file_and_names_destination(tmp_path, monkeypatch):
    data = blob(2 * MB)
    written = {"n": 0}
    real = store._write_chunk

    def full_disk(handle, chunk):
        if written["n"] + len(chunk) > MB:
            raise OSError(errno.ENOSPC, "No space left on device")
        written["n"] += len(chunk)
        real(handle, chunk)

    monkeypatch.setattr(store, "_write_chunk", full_disk)
    with pytest.raises(FetchError) as err:
        place(tmp_path, REL, pin_of(data), writer(data), label="vae", origin="o")
    message = str(err.value)
    assert "no space left" in message and str(tmp_path / REL) in message
    assert "vae" in message
    assert not (tmp_path / REL).exists() and leftovers(tmp_path) == []


def test_resumes_a_partial_temp_file(tmp_path):
    data = blob(3 * MB)
    pin = pin_of(data)
    dest = tmp_path / REL
    dest.parent.mkdir(parents=True)
    temp_path(dest, pin).write_bytes(data[: MB + 123])
    calls: list[int] = []
    assert place(tmp_path, REL, pin, writer(data, calls=calls), label="x", origin="o")
    assert calls == [MB + 123]
    assert dest.read_bytes() == data


def test_a_partial_file_of_another_version_is_not_resumed(tmp_path):
    old, new = blob(MB, 1), blob(MB, 2)
    dest = tmp_path / REL
    dest.parent.mkdir(parents=True)
    temp_path(dest, pin_of(old)).write_bytes(old[:1000])
    calls: list[int] = []
    place(tmp_path, REL, pin_of(new), writer(new, calls=calls), label="x", origin="o")
    assert calls == [0] and dest.read_bytes() == new


def test_interrupted_download_keeps_partial_file_for_the_next_run(tmp_path):
    data = blob(2 * MB)
    pin = pin_of(data)

    def dies(sink):
        sink.write(data[:MB])
        raise DownloadInterrupted("the connection to host kept failing")

    with pytest.raises(DownloadInterrupted) as err:
        place(tmp_path, REL, pin, dies, label="x", origin="o")
    assert "run the fetch again to resume" in str(err.value)
    assert not (tmp_path / REL).exists()
    assert temp_path(tmp_path / REL, pin).stat().st_size == MB
    calls: list[int] = []
    place(tmp_path, REL, pin, writer(data, calls=calls), label="x", origin="o")
    assert calls == [MB] and (tmp_path / REL).read_bytes() == data


def test_a_wrong_file_at_the_destination_is_replaced(tmp_path):
    data = blob(MB)
    dest = tmp_path / REL
    dest.parent.mkdir(parents=True)
    dest.write_bytes(blob(MB, 9))
    assert not is_present(tmp_path, REL, pin_of(data))
    assert place(tmp_path, REL, pin_of(data), writer(data), label="x", origin="o")
    assert dest.read_bytes() == data


def test_rewind_after_an_ignored_range_rehashes(tmp_path):
    data = blob(MB)
    pin = pin_of(data)
    dest = tmp_path / REL
    dest.parent.mkdir(parents=True)
    temp_path(dest, pin).write_bytes(b"garbage that is not the start")

    def server_ignores_range(sink):
        assert sink.offset > 0
        sink.seek(0)
        sink.truncate()
        sink.write(data)

    place(tmp_path, REL, pin, server_ignores_range, label="x", origin="o")
    assert dest.read_bytes() == data


def test_lock_and_temp_files_are_hidden_beside_the_destination(tmp_path):
    pin = pin_of(b"x")
    dest = tmp_path / REL
    assert temp_path(dest, pin).parent == dest.parent == lock_path(dest).parent
    assert temp_path(dest, pin).name.startswith(".") and lock_path(dest).name.startswith(".")


def test_a_complete_partial_file_is_renamed_without_a_request(tmp_path):
    data = blob(MB)
    pin = pin_of(data)
    dest = tmp_path / REL
    dest.parent.mkdir(parents=True)
    temp_path(dest, pin).write_bytes(data)  # a run killed between the last byte and the rename

    def no_request(sink):
        raise AssertionError("asked the server for bytes past the end")

    assert place(tmp_path, REL, pin, no_request, label="x", origin="o")
    assert dest.read_bytes() == data


def test_ctrl_c_keeps_the_partial_file_for_a_resume(tmp_path):
    data = blob(2 * MB)
    pin = pin_of(data)

    def interrupted(sink):
        sink.write(data[:MB])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        place(tmp_path, REL, pin, interrupted, label="x", origin="o")
    assert not (tmp_path / REL).exists()
    assert temp_path(tmp_path / REL, pin).stat().st_size == MB


def test_partial_files_of_other_versions_are_removed_when_the_file_is_fetched(tmp_path):
    """A lock that moved on would otherwise leave an old partial (up to a model's size) on a
    shared volume forever."""
    old, new = blob(MB, 1), blob(MB, 2)
    dest = tmp_path / REL
    dest.parent.mkdir(parents=True)
    stale = temp_path(dest, pin_of(old))
    stale.write_bytes(old[:1000])
    neighbour = temp_path(dest.with_name("y.safetensors"), pin_of(old))  # another file's
    neighbour.write_bytes(old[:1000])
    lock_path(dest).write_text("")
    place(tmp_path, REL, pin_of(new), writer(new), label="x", origin="o")
    assert dest.read_bytes() == new
    assert leftovers(tmp_path) == [neighbour.name]
    assert lock_path(dest).exists()  # another process may hold it: never deleted
