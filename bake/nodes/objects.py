"""The files a pinned commit holds, read from git's object store without trusting it.

A checkout's `.git` lives inside the tree that `nodes verify` checks, so anything in it could
have been rewritten along with the files: the index, refs, a replace ref, even an object file.
So nothing there is taken on its word. Starting from the locked rev (which comes from the lock,
outside the tree), every object read here, the commit and each tree, is hashed again and must
have exactly the id it was asked for; replace refs are switched off (GIT_NO_REPLACE_OBJECTS).
What remains is SHA-1: a forged tree would need a collision with a pinned id. The blobs are not
read at all: each file on disk is hashed as a blob and compared with the id its tree records.
Submodules are followed at the commit their superproject records, from their own objects.

Git reads those objects through a scratch git folder of our own (GIT_OBJECT_DIRECTORY names the
checkout's object store): the checkout's config is never read, so nothing it names (a promisor
remote to fetch missing objects from, an include) comes into play. A submodule's objects are
found through its `.git` link only when that link leads into the superproject's `.git/modules/`.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bake.errors import GitError
from bake.nodes import git

SUBMODULE = "160000"
TREE = "40000"
FILE_MODES = ("100644", "100755", "120000")


@dataclass(frozen=True)
class TrackedFile:
    mode: str  # "100644", "100755" or "120000" (a symlink)
    blob: str  # the blob id git records


@dataclass
class CommitFiles:
    """Every file of a commit (submodules' files included), by path relative to its root."""

    rev: str
    files: dict[str, TrackedFile] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)  # every folder holding tracked files
    submodules: set[str] = field(default_factory=set)  # where a submodule's checkout goes
    gitignores: dict[str, bytes] = field(default_factory=dict)  # path -> its committed text

    def tracks(self, path: str) -> bool:
        """Whether `path` is a file or folder of the commit, or lies under one of its files."""
        if path in self.files or path in self.folders:
            return True
        parts = path.split("/")
        return any("/".join(parts[:n]) in self.files for n in range(1, len(parts)))


class _Objects:
    """One `git cat-file --batch` over an object store; every object it returns is re-hashed."""

    def __init__(self, repo: Path, objects: Path, scratch: Path, entry: str):
        self.entry = entry
        self.repo = repo
        env = {
            **git.git_env(),
            "GIT_DIR": str(scratch),
            "GIT_OBJECT_DIRECTORY": str(objects),
            "GIT_NO_REPLACE_OBJECTS": "1",
        }
        self.proc = subprocess.Popen(
            ["git", "cat-file", "--batch"],
            cwd=scratch,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def read(self, oid: str, kind: str) -> bytes:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(oid.encode() + b"\n")
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().split()
        if len(header) != 3 or header[0].decode() != oid:
            raise GitError(
                f"{self.entry}: {self.repo}: object {oid} ({kind}) is missing from its .git: "
                "the checkout is not at its locked commit; run python -m bake nodes install"
            )
        found, size = header[1], int(header[2])
        data = self.proc.stdout.read(size)
        self.proc.stdout.read(1)  # the newline after each object
        actual = hashlib.sha1(found + b" %d\0" % size + data, usedforsecurity=False).hexdigest()
        if found.decode() != kind or actual != oid:
            raise GitError(
                f"{self.entry}: {self.repo}: object {oid} in its .git is not what its id says "
                f"(a {found.decode()} hashing to {actual}): the git metadata was tampered "
                "with; reinstall this entry (delete its folder, run python -m bake nodes install)"
            )
        return data

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()


def _tree_entries(data: bytes):
    """(mode, name, id) of each entry of a raw tree object."""
    index = 0
    while index < len(data):
        space = data.index(b" ", index)
        nul = data.index(b"\0", space)
        yield (
            data[index:space].decode(),
            data[space + 1 : nul].decode("utf-8", "surrogateescape"),
            data[nul + 1 : nul + 21].hex(),
        )
        index = nul + 21


def _walk(
    repo: Path, gitdir: Path, rev: str, prefix: str, out: CommitFiles, entry: str, scratch: Path
) -> None:
    objects = _Objects(repo, gitdir / "objects", scratch, entry)
    try:
        commit = objects.read(rev, "commit")
        first = commit.split(b"\n", 1)[0].split()
        if len(first) != 2 or first[0] != b"tree":
            raise GitError(f"{entry}: commit {rev} has no tree line; reinstall this entry")
        pending = [(first[1].decode(), prefix)]
        while pending:
            oid, base = pending.pop()
            for mode, name, child in _tree_entries(objects.read(oid, "tree")):
                if name in ("", ".", "..", ".git") or "/" in name:
                    raise GitError(f"{entry}: commit {rev} holds an invalid name {name!r}")
                path = base + name
                if mode == TREE:
                    out.folders.add(path)
                    pending.append((child, path + "/"))
                elif mode == SUBMODULE:
                    out.folders.add(path)
                    out.submodules.add(path)
                    sub = repo / path[len(prefix) :]
                    found, why = git.submodule_gitdir(sub, gitdir)
                    if found is None:
                        raise GitError(
                            f"{entry}: {path}/.git {why}: the submodule is not a checkout "
                            "git made; run python -m bake nodes install"
                        )
                    _walk(sub, found, child, path + "/", out, entry, scratch)
                elif mode in FILE_MODES:
                    out.files[path] = TrackedFile(mode, child)
                    if name == ".gitignore" and mode != "120000":
                        out.gitignores[path] = objects.read(child, "blob")
                else:
                    raise GitError(f"{entry}: commit {rev} holds {path!r} of unknown mode {mode}")
    finally:
        objects.close()


def commit_files(repo: Path, rev: str, *, entry: str) -> CommitFiles:
    """The files `rev` holds, from the objects under `repo/.git`, each object re-hashed."""
    gitdir = repo / ".git"
    if gitdir.is_symlink() or not gitdir.is_dir():
        raise GitError(
            f"{entry}: its folder is not a git checkout (no .git folder): run python -m bake "
            "nodes install"
        )
    out = CommitFiles(rev)
    with git.scratch_gitdir() as scratch:
        _walk(repo, gitdir, rev, "", out, entry, scratch)
    return out
