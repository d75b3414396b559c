"""blake3 of files, sha256+blake3 of streams, and the tree hash."""

from __future__ import annotations

import hashlib
import os
import shutil

import blake3
import pytest

from bake import hashing
from bake.hashing import (
    FileChangedError,
    NotRegularFileError,
    StreamHasher,
    UnsafeNameError,
    blake3_file,
    file_identity,
    hash_fd,
    hash_file,
    open_file,
    tree_hash,
    tree_hash_paths,
    tree_listing,
)


@pytest.mark.parametrize("size", [0, 1, 1023, 1 << 20, (3 << 20) + 7])
def test_blake3_file_matches_the_reference(tmp_path, size):
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert blake3_file(path) == blake3.blake3(data).hexdigest()
    assert blake3_file(path, threads=1) == blake3.blake3(data).hexdigest()


MB = 1 << 20


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, 2 * MB, 2 * MB + 1, 5 * MB + 4097])
def test_hash_file_gives_sha256_and_blake3_of_one_read(tmp_path, monkeypatch, size):
    """Plain reads below the mapping threshold, the mapping above it in 1 MiB chunks (sha256
    following blake3 on its own thread), and the odd tail: both hashes are the reference's."""
    monkeypatch.setattr(hashing, "_CHUNK", MB)
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    digests = hash_file(path, sha256=True)
    assert (digests.size, digests.sha256, digests.blake3) == (
        size,
        hashlib.sha256(data).hexdigest(),
        blake3.blake3(data).hexdigest(),
    )
    assert digests.identity == file_identity(path.stat())
    assert hash_file(path).sha256 is None  # sha256 only when asked


def test_the_descriptor_is_hashed_not_the_path(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"first" * 1000)
    fd = open_file(path)
    try:
        path.unlink()
        path.write_bytes(b"other" * 1000)
        digests = hash_fd(fd, sha256=True)
    finally:
        os.close(fd)
    assert digests.blake3 == blake3.blake3(b"first" * 1000).hexdigest()
    assert digests.identity != file_identity(path.stat())


@pytest.mark.parametrize("size", [4096, 3 * MB])
def test_a_write_during_the_read_is_refused(tmp_path, monkeypatch, size):
    monkeypatch.setattr(hashing, "_CHUNK", MB)
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(size))

    def append(done, total):
        if done == min(MB, total):
            with open(path, "ab") as handle:
                handle.write(b"x")

    monkeypatch.setattr(hashing, "_chunk_hashed", append)
    with pytest.raises(FileChangedError) as err:
        hash_file(path, sha256=True)
    assert err.value.after.st_size == size + 1


def test_only_regular_files_are_opened_and_a_fifo_does_not_block(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    for name in ("fifo", "dir"):
        with pytest.raises(NotRegularFileError):
            open_file(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        open_file(tmp_path / "absent")


def test_a_failing_sha256_thread_fails_the_hash_and_releases_the_mapping(tmp_path, monkeypatch):
    monkeypatch.setattr(hashing, "_CHUNK", MB)
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(3 * MB))

    class Broken:
        def update(self, data):
            raise RuntimeError("sha256 broke")

    monkeypatch.setattr(hashing.hashlib, "sha256", Broken)
    with pytest.raises(RuntimeError, match="sha256 broke"):
        hash_file(path, sha256=True)

    def interrupted(done, total):
        raise KeyboardInterrupt

    monkeypatch.undo()
    monkeypatch.setattr(hashing, "_CHUNK", MB)
    monkeypatch.setattr(hashing, "_chunk_hashed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        hash_file(path, sha256=True)


def test_stream_hasher_gives_both_hashes_in_one_pass():
    data = os.urandom(300_000)
    hasher = StreamHasher()
    for start in range(0, len(data), 65_536):
        hasher.update(data[start : start + 65_536])
    digests = hasher.finish()
    assert digests.size == len(data)
    assert digests.sha256 == hashlib.sha256(data).hexdigest()
    assert digests.blake3 == blake3.blake3(data).hexdigest()


def test_stream_hasher_of_nothing_is_the_empty_hashes():
    digests = StreamHasher().finish()
    assert (digests.size, digests.sha256, digests.blake3) == (
        0,
        hashlib.sha256(b"").hexdigest(),
        blake3.blake3(b"").hexdigest(),
    )


def _make_tree(root):
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("print('a')\n")
    (root / "pkg" / "sub" / "b.txt").write_text("b\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "link").symlink_to("pkg/a.py")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "pkg" / "sub" / ".git").write_text("gitdir: ../../.git/modules/sub\n")
    (root / "empty").mkdir()


def test_tree_listing_is_canonical(tmp_path):
    _make_tree(tmp_path)
    lines = tree_listing(tmp_path).decode().split("\0")[:-1]
    assert [line.split(" ", 2)[2] for line in lines] == [
        "link",
        "pkg/a.py",
        "pkg/sub/b.txt",
        "run.sh",
    ]
    modes = {line.split(" ", 2)[2]: line.split(" ")[0] for line in lines}
    assert modes == {
        "link": "120000",
        "pkg/a.py": "100644",
        "pkg/sub/b.txt": "100644",
        "run.sh": "100755",
    }
    assert f"120000 {blake3.blake3(b'pkg/a.py').hexdigest()} link" in lines


def test_tree_hash_ignores_git_metadata_umask_and_creation_order(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    _make_tree(first)
    _make_tree(second)
    shutil.rmtree(second / ".git")
    (second / "pkg" / "a.py").chmod(0o664)  # another umask: still an ordinary file
    os.utime(second / "pkg" / "sub" / "b.txt", (0, 0))
    assert tree_hash(first) == tree_hash(second)
    assert tree_hash(first).startswith("tree2-blake3:") and len(tree_hash(first)) == 13 + 64


@pytest.mark.parametrize("change", ["content", "mode", "rename", "link target", "new file"])
def test_tree_hash_changes_with_any_real_change(tmp_path, change):
    _make_tree(tmp_path)
    before = tree_hash(tmp_path)
    if change == "content":
        (tmp_path / "pkg" / "a.py").write_text("print('b')\n")
    elif change == "mode":
        (tmp_path / "pkg" / "a.py").chmod(0o755)
    elif change == "rename":
        (tmp_path / "pkg" / "a.py").rename(tmp_path / "pkg" / "c.py")
    elif change == "link target":
        (tmp_path / "link").unlink()
        (tmp_path / "link").symlink_to("run.sh")
    else:
        (tmp_path / "empty" / "new").write_text("")
    assert tree_hash(tmp_path) != before


def test_tree_hash_of_tracked_paths_ignores_untracked_data(tmp_path):
    _make_tree(tmp_path)
    clean = tree_hash(tmp_path)
    tracked = [line.split(" ", 2)[2] for line in tree_listing(tmp_path).decode().split("\0")[:-1]]
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "big.safetensors").write_bytes(b"weights")
    assert tree_hash(tmp_path) != clean
    assert tree_hash_paths(tmp_path, tracked) == clean


def test_a_file_name_cannot_forge_the_listing_of_two_files(tmp_path):
    # Under the old newline-terminated listing, one file named "x\n100644 <blake3 of y> y"
    # (holding x's bytes) read exactly like the two files x and y.
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir()
    one.mkdir()
    (two / "x").write_text("x\n")
    (two / "y").write_text("y\n")
    forged = f"x\n100644 {blake3.blake3(b'y' + bytes([10])).hexdigest()} y"
    (one / forged).write_text("x\n")
    (one / "y").write_text("y\n")
    with pytest.raises(UnsafeNameError, match="newline"):
        tree_hash(one)
    (one / forged).rename(one / "x")
    (one / "x").write_text("x\n")
    (one / "z").write_text("y\n")
    assert tree_hash(one) != tree_hash(two)


def test_records_are_nul_terminated(tmp_path):
    (tmp_path / "a").write_text("")
    assert tree_listing(tmp_path) == (
        b"100644 " + blake3.blake3(b"").hexdigest().encode() + b" a" + bytes([0])
    )


def test_a_symlinked_folder_is_a_link_and_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "helper.py").write_text("EVIL = 1\n")
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "helper.py").write_text("EVIL = 1\n")
    clean = tree_hash(tree)
    tracked = ["pkg/helper.py"]
    assert tree_hash_paths(tree, tracked) == clean
    # the tracked folder becomes a symlink to a folder with the same bytes outside the tree
    (tree / "pkg" / "helper.py").unlink()
    (tree / "pkg").rmdir()
    (tree / "pkg").symlink_to(outside)
    assert tree_hash(tree) != clean
    assert tree_hash_paths(tree, tracked) != clean
    assert b"120000 " in tree_listing(tree) and b"helper.py" not in tree_listing(tree)
