"""One file, one identity: what `models verify` and `models fetch` record about a file is the
identity of the descriptor its bytes were read through, never a second look at the path.

Each race is real: while the file is being hashed (after its first chunk, at the hook the
hashing loop calls), its folder or the file itself is swapped with renameat2(RENAME_EXCHANGE)
for one holding other bytes of the same size, or the file is written in place. Whatever verify
then says, no stamp may bind the good hash to the bad file's identity, so a later `--mode fast`
rejects the bad bytes.
"""

from __future__ import annotations

import ctypes
import json
import os
import time
from pathlib import Path

import blake3
import pytest
from support.modelfiles import MB, blob, entry, make_lock, pin_of, write_lock

from bake import hashing
from bake.cli import main
from bake.locks.models import UrlSource
from bake.models import stamps
from bake.models.store import is_present, place
from bake.models.verify import verify_models

GOOD, EVIL = blob(4 * MB, 1), blob(4 * MB, 66)
DEST = "models/vae/vae.safetensors"
AT_FDCWD = -100
RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> None:
    """Swap two paths atomically (files or folders), as renameat2(2) RENAME_EXCHANGE does."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE):
        err = ctypes.get_errno()
        raise OSError(err, f"renameat2({a}, {b}, RENAME_EXCHANGE): {os.strerror(err)}")


@pytest.fixture
def comfy(tmp_path, monkeypatch):
    """GOOD at its dest, EVIL (same size) at the same name in a sibling folder; files hashed
    1 MiB at a time, so a 4 MiB file gives the race three more chunks to show in."""
    root = tmp_path / "comfyui"
    for folder, data in (("vae", GOOD), ("vae_swap", EVIL)):
        (root / "models" / folder).mkdir(parents=True)
        (root / "models" / folder / "vae.safetensors").write_bytes(data)
    monkeypatch.setattr(hashing, "_CHUNK", MB)
    return root


def after_first_chunk(monkeypatch, action) -> list[int]:
    """Run `action` once, on the hashing thread, right after the first chunk of a file of
    GOOD's size is hashed; returns the list the hook appends each call's `done` to."""
    calls: list[int] = []

    def hook(done: int, total: int) -> None:
        calls.append(done)
        if total == len(GOOD) and done == MB:
            action()

    monkeypatch.setattr(hashing, "_chunk_hashed", hook)
    return calls


def every_stamp(tmp_path: Path) -> list[dict]:
    return [
        json.loads(path.read_text())
        for path in tmp_path.rglob("*.json")
        if ".bake-stamps" in path.parts or "stamps" in path.parts
    ]


def assert_no_stamp_binds_good_to(tmp_path: Path, path: Path) -> None:
    bad = path.stat()
    good_b3 = blake3.blake3(GOOD).hexdigest()
    for stamp in every_stamp(tmp_path):
        if stamp["blake3"] == good_b3:
            assert (stamp["device"], stamp["inode"]) != (bad.st_dev, bad.st_ino), stamp


SWAPS = {
    # the folder holding the file is exchanged with one holding the bad file: the file read is
    # untouched, its path names another file
    "folder": lambda root: exchange(root / "models/vae", root / "models/vae_swap"),
    # the file itself is exchanged with the bad one: a rename moves the ctime of the file read
    "file": lambda root: exchange(root / DEST, root / "models/vae_swap/vae.safetensors"),
}
SAYS = {"folder": "was replaced while it was being verified", "file": "changed while it was"}


@pytest.mark.parametrize("swap", sorted(SWAPS))
def test_a_swap_during_full_verify_is_reported_and_fast_rejects_the_bad_file(
    comfy, tmp_path, monkeypatch, capsys, swap
):
    lock = make_lock(entry("vae", UrlSource("https://example.invalid/v"), DEST, GOOD))
    good_inode = (comfy / DEST).stat().st_ino
    calls = after_first_chunk(monkeypatch, lambda: SWAPS[swap](comfy))
    report = verify_models(lock, comfy, mode="full")
    assert calls == [MB, 2 * MB, 3 * MB, 4 * MB]  # the swap came mid-read, the read went on
    assert (comfy / DEST).read_bytes() == EVIL  # the swap happened
    # verify read the file it opened to the end, consistently (its bytes are GOOD's), and says
    # that the path no longer names it
    assert not report.ok and report.verified == [] and report.identities == {}
    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"vae: {comfy / DEST}: {SAYS[swap]}")
    # a stamp, if any, is the file that was read: the good inode, never the bad one
    assert_no_stamp_binds_good_to(tmp_path, comfy / DEST)
    stamped = [s["inode"] for s in every_stamp(tmp_path)]
    assert stamped in ([], [good_inode])

    monkeypatch.setattr(hashing, "_chunk_hashed", lambda done, total: None)
    fast = verify_models(lock, comfy, mode="fast")
    assert not fast.ok and fast.hashed_bytes == len(EVIL)
    assert "wrong blake3" in fast.problems[0]
    # and through the command, as a maintainer would run it
    lock_file = write_lock(
        tmp_path / "models.lock.yaml", entry("vae", UrlSource("https://e.invalid/v"), DEST, GOOD)
    )
    args = ["models", "verify", "--mode", "fast", "--comfyui-dir", str(comfy)]
    assert main([*args, "--lock", str(lock_file), "--volume-dir", str(tmp_path / "none")]) == 1
    assert "wrong blake3" in capsys.readouterr().err


def test_the_attack_of_the_issue_good_file_shown_only_while_it_is_read(
    comfy, tmp_path, monkeypatch
):
    """The bad file sits at the path; the attacker exchanges the folders just as verify opens
    the file (so the good bytes are read) and back after the first chunk. Stat by path, hash by
    a second open recorded the bad file's identity with the good blake3, and `--mode fast` then
    accepted the bad bytes. Now the identity is the descriptor's: the good file's."""
    from bake.models import verify as models_verify

    exchange(comfy / "models/vae", comfy / "models/vae_swap")  # EVIL at the dest
    evil = (comfy / DEST).stat()
    lock = make_lock(entry("vae", UrlSource("https://example.invalid/v"), DEST, GOOD))
    real_open = models_verify.open_file

    def open_during_a_swap(path):
        SWAPS["folder"](comfy)  # GOOD at the dest, just for the read
        return real_open(path)

    monkeypatch.setattr(models_verify, "open_file", open_during_a_swap)
    after_first_chunk(monkeypatch, lambda: SWAPS["folder"](comfy))  # EVIL back
    report = verify_models(lock, comfy, mode="full")
    assert (comfy / DEST).stat().st_ino == evil.st_ino
    assert not report.ok and "was replaced while it was being verified" in report.problems[0]
    assert_no_stamp_binds_good_to(tmp_path, comfy / DEST)

    monkeypatch.setattr(models_verify, "open_file", real_open)
    monkeypatch.setattr(hashing, "_chunk_hashed", lambda done, total: None)
    fast = verify_models(lock, comfy, mode="fast")
    assert not fast.ok and "wrong blake3" in fast.problems[0]


def test_swapping_the_good_file_back_in_is_what_the_stamp_vouches_for(comfy, monkeypatch):
    """The stamp written during the swapped read is true: it names the inode that was read."""
    lock = make_lock(entry("vae", UrlSource("https://example.invalid/v"), DEST, GOOD))
    after_first_chunk(monkeypatch, lambda: SWAPS["folder"](comfy))
    assert not verify_models(lock, comfy, mode="full").ok
    monkeypatch.setattr(hashing, "_chunk_hashed", lambda done, total: None)
    SWAPS["folder"](comfy)  # the good folder back: same inode, but the exchange moved ctime
    report = verify_models(lock, comfy, mode="fast")
    assert report.ok
    assert report.identities[str(comfy / DEST)] == stamps.identity((comfy / DEST).stat())


def test_a_bad_file_swapped_out_during_its_read_is_not_taken_for_the_good_one(comfy, monkeypatch):
    """The reverse race: EVIL is opened, GOOD takes its place mid-read. The bytes read are
    EVIL's and are reported as such; the GOOD file now at the path gets no stamp from it."""
    exchange(comfy / "models/vae", comfy / "models/vae_swap")  # EVIL at the dest
    lock = make_lock(entry("vae", UrlSource("https://example.invalid/v"), DEST, GOOD))
    after_first_chunk(monkeypatch, lambda: SWAPS["folder"](comfy))
    report = verify_models(lock, comfy, mode="full")
    assert (comfy / DEST).read_bytes() == GOOD
    assert not report.ok and "wrong blake3" in report.problems[0]
    assert blake3.blake3(EVIL).hexdigest() in report.problems[0]


def test_a_write_in_place_during_the_read_is_refused_without_a_stamp(comfy, tmp_path, monkeypatch):
    """Same inode, bytes changed under the read (the mtime put back): the descriptor's ctime
    moved, so the hashes describe no one file and nothing is stamped."""
    path = comfy / DEST
    lock = make_lock(entry("vae", UrlSource("https://example.invalid/v"), DEST, GOOD))

    def overwrite() -> None:
        before = path.stat()
        time.sleep(0.02)  # past the file system's ctime tick, as any real write later would be
        with open(path, "r+b") as handle:
            handle.write(EVIL)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    after_first_chunk(monkeypatch, overwrite)
    report = verify_models(lock, comfy, mode="full")
    assert not report.ok and report.verified == []
    assert "changed while it was being hashed" in report.problems[0]
    assert every_stamp(tmp_path) == []
    monkeypatch.setattr(hashing, "_chunk_hashed", lambda done, total: None)
    assert "wrong blake3" in verify_models(lock, comfy, mode="fast").problems[0]


def test_fetch_checking_a_present_file_binds_no_stamp_to_a_swapped_in_one(
    comfy, tmp_path, monkeypatch
):
    """`models fetch` finding a valid copy hashes it through one descriptor too: a swap during
    that read leaves the file not present (so it is fetched again), and no stamp for EVIL."""
    pin = pin_of(GOOD)
    after_first_chunk(monkeypatch, lambda: SWAPS["folder"](comfy))
    identities: dict = {}
    assert not is_present(comfy, DEST, pin, identities=identities)
    assert identities == {}
    assert_no_stamp_binds_good_to(tmp_path, comfy / DEST)
    monkeypatch.setattr(hashing, "_chunk_hashed", lambda done, total: None)

    def download(sink):
        sink.write(GOOD[sink.offset :])

    assert place(comfy, DEST, pin, download, label="vae", origin="o", identities=identities)
    assert (comfy / DEST).read_bytes() == GOOD
    assert identities == {str(comfy / DEST): stamps.identity((comfy / DEST).stat())}
    assert verify_models(
        make_lock(entry("vae", UrlSource("https://example.invalid/v"), DEST, GOOD)),
        comfy,
        mode="fast",
    ).ok


def test_a_swap_while_the_download_is_put_in_place_fails_the_fetch(comfy, tmp_path, monkeypatch):
    """The stamp of a fresh download is its own descriptor's fstat, after the rename; a file
    that the destination names instead by then is no success and gets no stamp."""
    from bake.models import store

    pin = pin_of(GOOD)
    (comfy / DEST).unlink()
    real_replace = os.replace

    def replace_then_swap(src, dst):
        real_replace(src, dst)
        if Path(dst) == comfy / DEST:
            exchange(comfy / "models/vae", comfy / "models/vae_swap")

    monkeypatch.setattr(store.os, "replace", replace_then_swap)

    def download(sink):
        sink.write(GOOD)

    with pytest.raises(store.FetchError, match="was changed or replaced while"):
        place(comfy, DEST, pin, download, label="vae", origin="o")
    assert (comfy / DEST).read_bytes() == EVIL
    assert_no_stamp_binds_good_to(tmp_path, comfy / DEST)


def test_a_link_planted_at_the_temporary_name_is_not_written_through(comfy, tmp_path):
    from bake.errors import FetchError
    from bake.models.store import temp_path

    pin = pin_of(GOOD)
    (comfy / DEST).unlink()
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    temp_path(comfy / DEST, pin).symlink_to(victim)

    def download(sink):
        sink.write(GOOD[sink.offset :])

    with pytest.raises(FetchError, match="cannot write"):
        place(comfy, DEST, pin, download, label="vae", origin="o")
    assert victim.read_bytes() == b"not yours"
    assert not temp_path(comfy / DEST, pin).is_symlink()  # the link is gone: the next run works
    assert place(comfy, DEST, pin, download, label="vae", origin="o")
    assert (comfy / DEST).read_bytes() == GOOD


def test_fetch_reports_the_identity_of_each_file_it_verified(tmp_path, files):
    """What the worker needs to tell later whether a path still names the verified file."""
    from bake.models.fetch import fetch_models

    lock = make_lock(entry("vae", UrlSource(files.add("/vae", GOOD)), DEST, GOOD))
    comfy = tmp_path / "comfyui"
    first = fetch_models(lock, comfy)
    again = fetch_models(lock, comfy)
    path = str(comfy / DEST)
    assert first.fetched == [path] and again.present == [path]
    assert first.identities == again.identities == {path: stamps.identity(Path(path).stat())}
