"""`original.ref` names only what the repository's owner controls: a branch, a tag (by name or
as refs/heads/NAME, refs/tags/NAME), HEAD (the remote's default branch) or a full commit.
Everything else is refused with the reason, before git is asked: anyone can open a pull request
on a public repository and so create `refs/pull/N/head` with any code, a Gerrit change or a
GitLab merge request likewise, a remote-tracking ref is another repository's branch, and
revision syntax (`HEAD~1`, `main^`, `@{1}`, `a..b`) names no ref at all."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from support.lockdata import REPO, valid_nodes

from bake.cli import main
from bake.locks.nodes import ref_problem

ALLOWED = [
    "main",
    "master",
    "v2.2.0",
    "release/1.x",
    "feature/new-sampler",
    "pull/7/head",  # a branch so named: update-locks looks only under refs/heads and refs/tags
    "refs/heads/dev",
    "refs/tags/v1.0",
    "refs/heads/refs/pull/1/head",  # a branch literally named so
    "HEAD",
    "0123456789abcdef0123456789abcdef01234567",
    "20240101",  # a date-named tag, not an abbreviated commit
]

REFUSED = [
    ("refs/pull/7/head", "refs/pull/* is a pull request's head"),
    ("refs/pull/7/merge", "anyone can open a pull request on a public repository"),
    ("refs/merge-requests/3/head", "refs/merge-requests/* is a GitLab merge request"),
    ("refs/changes/34/1234/2", "refs/changes/* is a Gerrit review change"),
    ("refs/remotes/origin/main", "refs/remotes/* is a remote-tracking ref"),
    ("refs/notes/commits", "refs/notes/* is not a branch or tag namespace"),
    ("refs/keep-around/abc", "refs/keep-around/* is not a branch or tag namespace"),
    ("refs/stash", "refs/stash/* is not a branch or tag namespace"),
    ("refs/heads/", "refs/heads/ names no branch or tag"),
    ("HEAD~1", "revision syntax (`~N` names an ancestor of a commit)"),
    ("main~3", "revision syntax"),
    ("main^", "revision syntax (`^` names a parent"),
    ("v1.0^{commit}", "revision syntax"),
    ("main@{1}", "reflog syntax"),
    ("@{-1}", "reflog syntax"),
    ("v1.0..main", "range syntax"),
    ("main:README.md", "refspec or path syntax"),
    ("release/*", "a glob pattern"),
    ("@", "shorthand for the local HEAD"),
    ("FETCH_HEAD", "a pseudo-ref of a local repository"),
    ("--upload-pack=touch /tmp/x", "starts with '-'"),
    ("main\n", "the control character U+000A"),
    ("ma\u202ein", "the bidirectional control U+202E"),
    ("v1.0\u200b", "the invisible format character U+200B"),
    ("feature//x", "no empty component"),
    ("feature/", "no empty component"),
    ("feature.", "cannot end with '.'"),
    ("feature/.hidden", "starts with '.'"),
    ("feature.lock", "ends with '.lock'"),
    ("0123456789ABCDEF0123456789ABCDEF01234567", "written in lower case"),
]


def check(tmp_path: Path, capsys, ref: str) -> tuple[int, list[str]]:
    data = valid_nodes()
    data["custom_nodes"]["ComfyUI-KJNodes"]["original"]["ref"] = ref
    path = tmp_path / "nodes.lock.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code = main(["check", "--strict", "--lock", str(path)])
    err = capsys.readouterr().err.splitlines()
    return code, [line for line in err if line.startswith("error: ")]


@pytest.mark.parametrize("ref", ALLOWED)
def test_branches_tags_head_and_full_commits_are_accepted(tmp_path, capsys, ref):
    assert ref_problem(ref) is None
    _, errors = check(tmp_path, capsys, ref)
    assert [e for e in errors if "original.ref" in e] == []


@pytest.mark.parametrize(("ref", "reason"), REFUSED, ids=[r for r, _ in REFUSED])
def test_other_refs_are_refused_with_the_reason(tmp_path, capsys, ref, reason):
    code, errors = check(tmp_path, capsys, ref)
    assert code == 1
    assert len(errors) == 1, errors  # one line, even for a ref holding a newline
    prefix = (
        f"error: {tmp_path / 'nodes.lock.yaml'}: custom_nodes.ComfyUI-KJNodes.original.ref: "
        "expected a branch, a tag, refs/heads/NAME, refs/tags/NAME, HEAD or a full commit "
        f"(40 hex), found {ref!r}: "
    )
    assert errors[0].startswith(prefix), errors[0]
    assert reason in errors[0]


def test_a_pull_request_ref_is_refused_before_git_resolves_it(tmp_path):
    """The attack: a contributor pushes a commit to a pull request of the node's public
    repository, and a lock change names that pull request's ref. git serves it like any other
    ref (here from a local remote, as GitHub does), so update-locks would pin the stranger's
    commit and `--check` would find it at the head of its ref."""
    upstream = tmp_path / "ComfyUI-KJNodes"

    def git(*args: str, cwd: Path = upstream) -> str:
        ident = ["-c", "user.name=x", "-c", "user.email=x@x"]
        done = subprocess.run(["git", *ident, *args], cwd=cwd, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    upstream.mkdir()
    git("init", "--quiet", "--initial-branch=main")
    git("commit", "--quiet", "--allow-empty", "-m", "upstream")
    git("commit", "--quiet", "--allow-empty", "-m", "a stranger's pull request")
    stranger = git("rev-parse", "HEAD").strip()
    git("update-ref", "refs/pull/7/head", stranger)
    git("reset", "--quiet", "--hard", "HEAD~1")
    advertised = git("ls-remote", upstream.as_uri(), "refs/pull/7/head", cwd=tmp_path)
    assert advertised.startswith(stranger)  # the remote really serves it

    data = valid_nodes()
    data["custom_nodes"]["ComfyUI-KJNodes"]["original"] = {
        "url": upstream.as_uri(),
        "ref": "refs/pull/7/head",
    }
    lock = tmp_path / "nodes.lock.yaml"
    lock.write_text(yaml.safe_dump(data), encoding="utf-8")
    before = lock.read_bytes()
    done = subprocess.run(
        [str(REPO / "scripts" / "update-locks.py"), "--nodes", "--lock", str(lock)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "BAKE_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "refs/pull/* is a pull request's head" in done.stdout + done.stderr
    assert stranger not in lock.read_text()
    assert lock.read_bytes() == before
