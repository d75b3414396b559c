"""bake.nodes.git: ref resolution as git orders it, redaction, and the tree of a checkout."""

from __future__ import annotations

import pytest
from support.gitrepos import run_git

from bake.errors import GitError
from bake.hashing import tree_hash
from bake.nodes import git


def test_branch_tag_and_head_resolve_like_git(world):
    repo = world.repo("Node")
    first = repo.commit({"a.py": "1\n"})
    repo.tag("v1", annotated=True)
    repo.tag("light", first, annotated=False)
    second = repo.commit({"a.py": "2\n"})
    dev = repo.commit({"a.py": "dev\n"}, branch="dev")
    # a tag and a branch of one name: git would take the tag; we ask which is meant
    repo.tag("dev", first, annotated=True)

    assert git.resolve_ref(repo.url, "main", entry="e") == second
    assert git.resolve_ref(repo.url, "HEAD", entry="e") == second
    assert git.resolve_ref(repo.url, "v1", entry="e") == first  # peeled, not the tag object
    assert git.resolve_ref(repo.url, "light", entry="e") == first
    assert git.resolve_ref(repo.url, "refs/heads/dev", entry="e") == dev
    assert git.resolve_ref(repo.url, "refs/tags/dev", entry="e") == first
    with pytest.raises(GitError) as caught:
        git.resolve_ref(repo.url, "dev", entry="custom_nodes.Node")
    assert str(caught.value) == (
        f"custom_nodes.Node: ref 'dev' is both a branch and a tag on {repo.url} (the branch is "
        f"at {dev[:12]}, the tag at {first[:12]}); say which in nodes.lock.yaml: original.ref "
        "refs/heads/dev or refs/tags/dev"
    )


def test_branch_that_moves_resolves_to_its_new_tip(world):
    repo = world.repo("Node")
    repo.commit({"a.py": "1\n"})
    assert git.resolve_ref(repo.url, "main", entry="e") == repo.head()
    moved = repo.commit({"a.py": "2\n"})
    assert git.resolve_ref(repo.url, "main", entry="e") == moved


def test_abbreviated_commit_is_explained(world):
    repo = world.repo("Node")
    sha = repo.commit({"a.py": "1\n"})
    with pytest.raises(GitError) as caught:
        git.resolve_ref(repo.url, sha[:12], entry="custom_nodes.Node")
    assert str(caught.value) == (
        f"custom_nodes.Node: ref '{sha[:12]}' does not exist on {repo.url}: no branch or tag of "
        "that name (an abbreviated commit cannot be resolved remotely: write all 40 "
        "characters). Fix original.ref in nodes.lock.yaml (a branch, a tag or a full commit)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:tok@host/x.git", "https://***@host/x.git"),
        (
            "fatal: unable to access 'https://tok@host/x.git/': refused",
            "fatal: unable to access 'https://***@host/x.git/': refused",
        ),
        ("ssh://git@host/x.git and https://a:b@c/d", "ssh://***@host/x.git and https://***@c/d"),
        ("file:///srv/x.git", "file:///srv/x.git"),
    ],
)
def test_redact_hides_user_info(text, expected):
    assert git.redact(text) == expected


def test_strip_credentials_keeps_the_rest_of_the_url():
    assert git.strip_credentials("https://u:p@host:8443/a/b.git") == "https://host:8443/a/b.git"


def test_worktree_tree_hash_ignores_untracked_data_and_matches_a_clean_tree(world, tmp_path):
    sub = world.repo("Sub")
    pinned = sub.commit({"s.js": "1\n"})
    repo = world.repo("Node")
    repo.commit(
        {"a.py": "1\n", "bin/tool": "#!/bin/sh\n", "d/e/f.txt": "f\n"},
        executable=("bin/tool",),
        symlinks={"link": "d/e"},
    )
    rev = repo.add_submodule("web", sub, pinned)

    checkout = tmp_path / "checkout"
    git.fetch_checkout(checkout, repo.url, rev, entry="e")
    clean = tree_hash(checkout)
    assert git.worktree_tree_hash(checkout, entry="e") == clean
    (checkout / "models").mkdir()
    (checkout / "models/big.safetensors").write_bytes(b"w")
    (checkout / "web/cache.json").write_text("{}")
    assert git.worktree_tree_hash(checkout, entry="e") == clean
    (checkout / "web/s.js").write_text("2\n")  # a tracked file inside the submodule
    assert git.worktree_tree_hash(checkout, entry="e") != clean


def test_a_broken_transfer_is_reported_in_gits_words_not_as_a_vanished_commit(world, tmp_path):
    repo = world.repo("Node")
    rev = repo.commit({"a.py": "print('a')\n"})
    blob = run_git("rev-parse", f"{rev}:a.py", cwd=repo.path)
    # the remote's copy of one object is damaged: upload-pack dies mid-pack
    damaged = repo.path / "objects" / blob[:2] / blob[2:]
    damaged.chmod(0o644)
    damaged.write_bytes(b"garbage")
    with pytest.raises(GitError) as caught:
        git.fetch_checkout(tmp_path / "checkout", repo.url, rev, entry="custom_nodes.Node")
    message = str(caught.value)
    assert message.startswith(f"custom_nodes.Node: git fetch of {rev} from {repo.url} failed: ")
    assert "bad pack header" in message or "early EOF" in message
    assert "force-pushed" not in message
