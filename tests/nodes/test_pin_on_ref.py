"""A pin must be on the branch it claims to track: `update-locks --nodes --check` proves that
`locked.rev` is the ref's head or an ancestor of it (the ref itself for a tag or a full commit),
with real bare repositories and lock files edited as a pull request would edit them."""

from __future__ import annotations

from pathlib import Path

from support.gitrepos import run_git

from bake.locks.nodes import load_nodes_lock
from bake.nodes.resolve import update_nodes

KJ = "ComfyUI-KJNodes"


def _run(lock: Path, *, check: bool = False) -> tuple[int, list[str]]:
    lines: list[str] = []
    return update_nodes(lock, check=check, out=lines.append), lines


def _pin_then_claim(remotes, tmp_path: Path, pinned_ref: str, claimed_ref: str) -> Path:
    """A lock whose KJNodes entry was resolved at `pinned_ref`, then hand-edited to claim
    `claimed_ref` (a PR that bumps rev, tree and date to a commit of its choice)."""
    lock = remotes.lock(tmp_path / "nodes.lock.yaml", refs={KJ: pinned_ref})
    code, lines = _run(lock)
    assert code == 0, lines
    text = lock.read_text()
    assert text.count(f"ref: {pinned_ref}\n") == 1
    lock.write_text(text.replace(f"ref: {pinned_ref}\n", f"ref: {claimed_ref}\n"))
    return lock


def test_a_commit_only_on_another_branch_fails_check(remotes, tmp_path):
    kj = remotes.nodes[KJ]
    other = kj.commit({"evil.py": "X = 1\n"}, "only on dev", branch="dev")
    lock = _pin_then_claim(remotes, tmp_path, "dev", "main")
    code, lines = _run(lock, check=True)
    assert code == 1
    assert lines == [
        f"nodes.lock.yaml: custom_nodes.{KJ}: locked.rev {other[:12]} is not on refs/heads/main "
        f"of {kj.url} (not its head {kj.head()[:12]} nor an ancestor of it): the commit is "
        f"only on another branch or in a fork; pin a commit it holds (scripts/update-locks.py "
        f"--nodes {KJ}) or set original.ref to what really holds this commit"
    ]


def test_a_fork_only_commit_served_through_the_upstream_url_fails_check(remotes, tmp_path):
    kj = remotes.nodes[KJ]
    # GitHub serves a fork's commits through the upstream URL (as refs/pull/N/head)
    fork = kj.commit({"evil.py": "X = 1\n"}, "from a fork", branch="fork")
    run_git("push", "--quiet", "origin", f"{fork}:refs/pull/7/head", cwd=kj.work)
    kj.delete_branch("fork")
    lock = _pin_then_claim(remotes, tmp_path, fork, "main")
    assert load_nodes_lock(lock).custom_nodes[KJ].locked.rev == fork
    code, lines = _run(lock, check=True)
    assert code == 1
    assert lines[0].startswith(
        f"nodes.lock.yaml: custom_nodes.{KJ}: locked.rev {fork[:12]} is not on refs/heads/main "
    )


def test_an_older_commit_of_the_branch_still_checks(remotes, tmp_path):
    kj = remotes.nodes[KJ]
    # a server that filters (as GitHub does): the history is fetched without trees
    run_git("config", "uploadpack.allowFilter", "true", cwd=kj.path)
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    assert _run(lock)[0] == 0
    kj.commit({"later.py": "1\n"}, "main moves on")
    kj.commit({"later.py": "2\n"}, "and on")
    code, lines = _run(lock, check=True)
    assert code == 0, lines


def test_a_moved_tag_fails_check(remotes, tmp_path):
    kj = remotes.nodes[KJ]
    kj.tag("v1.0")
    lock = remotes.lock(tmp_path / "nodes.lock.yaml", refs={KJ: "v1.0"})
    assert _run(lock)[0] == 0
    pinned = kj.head()
    moved = kj.commit({"x.py": "1\n"}, "retagged")
    kj.tag("v1.0", moved)
    code, lines = _run(lock, check=True)
    assert code == 1
    assert lines[0].startswith(
        f"nodes.lock.yaml: custom_nodes.{KJ}: locked.rev {pinned[:12]} is not the commit tag "
        f"'v1.0' names on {kj.url} ({moved[:12]}); "
    )


def test_a_name_that_is_both_a_branch_and_a_tag_is_refused_unless_qualified(remotes, tmp_path):
    kj = remotes.nodes[KJ]
    tagged = kj.head()
    kj.tag("stable", annotated=False)
    branch = kj.commit({"x.py": "1\n"}, "the branch", branch="stable")
    lock = remotes.lock(tmp_path / "nodes.lock.yaml", refs={KJ: "stable"})
    code, lines = _run(lock)
    assert code == 1
    assert (
        f"error: custom_nodes.{KJ}: ref 'stable' is both a branch and a tag on {kj.url}"
        in (lines[-1])
    )
    assert load_nodes_lock(lock).comfyui.locked is not None  # the others were written

    for ref, expected in (("refs/heads/stable", branch), ("refs/tags/stable", tagged)):
        lock = remotes.lock(tmp_path / f"{ref.replace('/', '-')}.yaml", refs={KJ: ref})
        code, lines = _run(lock)
        assert code == 0, lines
        assert load_nodes_lock(lock).custom_nodes[KJ].locked.rev == expected
        assert _run(lock, check=True)[0] == 0
