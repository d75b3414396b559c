"""`update-locks --nodes`: resolving refs to commits, recording them, and `--check`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.gitrepos import run_git

from bake.hashing import tree_hash
from bake.locks.lockfile import cache_root
from bake.locks.nodes import load_nodes_lock
from bake.nodes.resolve import cache_repo, update_nodes


def _update(lock: Path, *names: str, check: bool = False) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = update_nodes(lock, names, check=check, out=lines.append)
    return code, lines


def _clean_clone_tree(url: str, rev: str, dest: Path) -> str:
    """The tree hash of a plain clone at `rev` with submodules: what a maintainer would see."""
    run_git("clone", "--quiet", "--recurse-submodules", url, str(dest))
    run_git("checkout", "--quiet", "--recurse-submodules", rev, cwd=dest)
    return tree_hash(dest)


def test_update_records_rev_date_tree_and_requirements(remotes, tmp_path):
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    code, lines = _update(lock)
    assert code == 0, lines

    pinned = load_nodes_lock(lock)
    comfy = pinned.comfyui.locked
    assert comfy.rev == remotes.comfy.head()
    assert comfy.date == remotes.comfy.date(comfy.rev)
    # comments and blank lines dropped, order kept
    assert comfy.requirements == ("torch", "comfyui-frontend-package==1.0", "numpy>=1.25")
    assert comfy.tree == _clean_clone_tree(remotes.comfy.url, comfy.rev, tmp_path / "c1")

    easy = pinned.custom_nodes["ComfyUI-Easy-Use"].locked
    # the tree covers the submodule's files at the commit the node records
    assert easy.tree == _clean_clone_tree(
        remotes.nodes["ComfyUI-Easy-Use"].url, easy.rev, tmp_path / "c2"
    )
    kj = pinned.custom_nodes["ComfyUI-KJNodes"].locked
    assert kj.tree == _clean_clone_tree(
        remotes.nodes["ComfyUI-KJNodes"].url, kj.rev, tmp_path / "c3"
    )
    assert "+ comfyui (new)" not in lines  # entries existed: the diff is per field
    assert any(line.startswith("~ custom_nodes.ComfyUI-KJNodes") for line in lines)
    assert "    locked.requirements: + scipy" in lines


def test_second_run_with_nothing_new_writes_nothing(remotes, tmp_path):
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    assert _update(lock)[0] == 0
    before = lock.read_bytes()
    stamp = lock.stat().st_mtime_ns
    code, lines = _update(lock)
    assert code == 0
    assert lock.read_bytes() == before and lock.stat().st_mtime_ns == stamp
    assert lines == ["nodes.lock.yaml: up to date (3 entries)"]


def test_moved_branch_shows_revs_and_requirement_lines(remotes, tmp_path):
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    _update(lock)
    old = load_nodes_lock(lock).custom_nodes["ComfyUI-KJNodes"].locked
    kj = remotes.nodes["ComfyUI-KJNodes"]
    new_rev = kj.commit({"requirements.txt": "pillow>=10.3.0\nmss\n"}, "kj 2")

    code, lines = _update(lock, "ComfyUI-KJNodes")
    assert code == 0
    assert "~ custom_nodes.ComfyUI-KJNodes" in lines
    assert f"    locked.rev: {old.rev[:12]} -> {new_rev[:12]}" in lines
    assert f"    locked.date: {old.date} -> {kj.date(new_rev)}" in lines
    assert "    locked.requirements: + mss" in lines
    assert "    locked.requirements: - scipy" in lines
    assert "nodes.lock.yaml: updated" in lines
    assert load_nodes_lock(lock).custom_nodes["ComfyUI-KJNodes"].locked.rev == new_rev


def test_only_named_entries_move(remotes, tmp_path):
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    _update(lock)
    comfy_before = load_nodes_lock(lock).comfyui.locked
    remotes.comfy.commit({"main.py": "print(2)\n"}, "comfy 2")
    kj_new = remotes.nodes["ComfyUI-KJNodes"].commit({"x.py": "1\n"}, "kj 2")
    assert _update(lock, "ComfyUI-KJNodes")[0] == 0
    after = load_nodes_lock(lock)
    assert after.comfyui.locked == comfy_before
    assert after.custom_nodes["ComfyUI-KJNodes"].locked.rev == kj_new


def test_tag_ref_resolves_to_the_tagged_commit(remotes, tmp_path):
    kj = remotes.nodes["ComfyUI-KJNodes"]
    tagged = kj.head()
    kj.tag("v1.0")  # annotated: ls-remote lists the tag object and the peeled commit
    kj.commit({"x.py": "2\n"}, "after the tag")
    lock = remotes.lock(tmp_path / "nodes.lock.yaml", refs={"ComfyUI-KJNodes": "v1.0"})
    assert _update(lock)[0] == 0
    assert load_nodes_lock(lock).custom_nodes["ComfyUI-KJNodes"].locked.rev == tagged


def test_full_commit_ref_is_pinned_as_given(remotes, tmp_path):
    kj = remotes.nodes["ComfyUI-KJNodes"]
    first = kj.head()
    kj.commit({"x.py": "2\n"}, "newer")
    lock = remotes.lock(tmp_path / "nodes.lock.yaml", refs={"ComfyUI-KJNodes": first})
    assert _update(lock)[0] == 0
    assert load_nodes_lock(lock).custom_nodes["ComfyUI-KJNodes"].locked.rev == first


def test_missing_ref_fails_naming_entry_and_ref(remotes, tmp_path):
    lock = remotes.lock(tmp_path / "nodes.lock.yaml", refs={"ComfyUI-KJNodes": "no-such-branch"})
    code, lines = _update(lock)
    assert code == 1
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [
        f"error: custom_nodes.ComfyUI-KJNodes: ref 'no-such-branch' does not exist on "
        f"{remotes.nodes['ComfyUI-KJNodes'].url}: no branch or tag of that name. Fix "
        "original.ref in nodes.lock.yaml (a branch, a tag or a full commit)"
    ]
    # the entries that did resolve are recorded; the failed one stays unlocked
    after = load_nodes_lock(lock)
    assert after.comfyui.locked is not None
    assert after.custom_nodes["ComfyUI-KJNodes"].locked is None


def test_unreachable_remote_fails_with_one_clear_line(remotes, tmp_path):
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    remotes.nodes["ComfyUI-Easy-Use"].remove()
    code, lines = _update(lock, "ComfyUI-Easy-Use")
    assert code == 1
    (error,) = [line for line in lines if line.startswith("error:")]
    assert error.startswith(
        "error: custom_nodes.ComfyUI-Easy-Use: cannot reach the remote "
        f"{remotes.nodes['ComfyUI-Easy-Use'].url}: "
    )
    assert "does not appear to be a git repository" in error
    assert "insteadOf" in error


def test_credentials_in_urls_never_reach_messages(world, tmp_path, monkeypatch):
    # A closed port on loopback: refused at once, no network beyond this machine.
    for proxy in (
        "https_proxy",
        "HTTPS_PROXY",
        "http_proxy",
        "HTTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(proxy, raising=False)
    url = "https://maintainer:s3cr3t-t0ken@127.0.0.1:9/private/Node.git"
    remotes_lock = tmp_path / "nodes.lock.yaml"
    comfy = world.repo("ComfyUI")
    comfy.commit({"main.py": "x\n"})
    from bake.locks.nodes import GitSource, NodeEntry, NodesLock, write_nodes_lock

    write_nodes_lock(
        NodesLock(
            NodeEntry("comfyui", "comfyui", GitSource(comfy.url, "main")),
            {"Node": NodeEntry("Node", "custom_node", GitSource(url, "main"))},
            {},
        ),
        remotes_lock,
    )
    code, lines = _update(remotes_lock, "Node")
    assert code == 1
    text = "\n".join(lines)
    assert "s3cr3t" not in text and "maintainer:" not in text
    assert "https://***@127.0.0.1:9/private/Node.git" in text


def test_mirror_via_insteadof_is_honoured(remotes, tmp_path):
    # The lock names a public URL; git's own config sends it to the local mirror.
    public = "https://github.example.invalid/kijai/ComfyUI-KJNodes.git"
    remotes.world.mirror(public, remotes.nodes["ComfyUI-KJNodes"])
    lock = tmp_path / "nodes.lock.yaml"
    text = remotes.lock(lock).read_text().replace(remotes.nodes["ComfyUI-KJNodes"].url, public)
    lock.write_text(text)
    assert _update(lock)[0] == 0
    entry = load_nodes_lock(lock).custom_nodes["ComfyUI-KJNodes"]
    assert entry.original.url == public
    assert entry.locked.rev == remotes.nodes["ComfyUI-KJNodes"].head()


def test_cache_location_follows_environment(tmp_path):
    assert cache_root({"BAKE_CACHE_DIR": str(tmp_path / "c")}) == tmp_path / "c"
    assert cache_root({"XDG_CACHE_HOME": str(tmp_path / "x")}) == tmp_path / "x" / "comfy-bake"
    one = cache_repo("https://example.invalid/a/Node.git", tmp_path)
    two = cache_repo("https://mirror.invalid/a/Node.git", tmp_path)
    assert one.name.startswith("Node-") and one != two


# -- --check ------------------------------------------------------------------------------


def test_check_passes_on_a_fresh_lock_and_resolves_nothing(remotes, tmp_path):
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    _update(lock)
    before = lock.read_bytes()
    remotes.nodes["ComfyUI-KJNodes"].commit({"x.py": "new\n"}, "upstream moved on")
    code, lines = _update(lock, check=True)
    assert code == 0, lines
    assert lines == ["nodes.lock.yaml: 3 entries locked and consistent"]
    assert lock.read_bytes() == before


def test_check_fails_on_unlocked_entry(remotes, tmp_path):
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    _update(lock, "comfyui", "ComfyUI-Easy-Use")
    code, lines = _update(lock, check=True)
    assert code == 1
    assert lines == [
        "nodes.lock.yaml: custom_nodes.ComfyUI-KJNodes: not locked; run "
        "scripts/update-locks.py --nodes ComfyUI-KJNodes"
    ]


def test_check_fails_when_tree_or_requirements_no_longer_match(remotes, tmp_path):
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    _update(lock)
    real = load_nodes_lock(lock).custom_nodes["ComfyUI-KJNodes"].locked
    forged = "tree2-blake3:" + "0" * 64
    text = lock.read_text().replace(real.tree, forged).replace("- scipy", "- scipy<1")
    lock.write_text(text)
    code, lines = _update(lock, check=True)
    assert code == 1
    assert lines == [
        f"nodes.lock.yaml: custom_nodes.ComfyUI-KJNodes: locked.tree is {forged} but the tree at "
        f"{real.rev[:12]} is {real.tree}; the lock was edited or the remote serves other "
        "content: run scripts/update-locks.py --nodes ComfyUI-KJNodes and review the diff",
        f"nodes.lock.yaml: custom_nodes.ComfyUI-KJNodes: locked.requirements differ from "
        f"requirements.txt at {real.rev[:12]} (+ scipy; - scipy<1); run "
        "scripts/update-locks.py --nodes ComfyUI-KJNodes",
    ]


def test_check_fails_when_tree_is_not_recorded(remotes, tmp_path):
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    _update(lock)
    real = load_nodes_lock(lock).comfyui.locked
    lock.write_text(lock.read_text().replace(f"    tree: {real.tree}\n", "", 1))
    assert load_nodes_lock(lock).comfyui.locked.tree is None
    code, lines = _update(lock, check=True)
    assert code == 1
    assert lines == [
        f"nodes.lock.yaml: comfyui: locked.tree is not recorded (the tree at "
        f"{real.rev[:12]} is {real.tree}); run scripts/update-locks.py --nodes "
        "comfyui"
    ]


def test_check_fails_when_locked_commit_was_force_pushed_away(remotes, tmp_path):
    kj = remotes.nodes["ComfyUI-KJNodes"]
    first = kj.head()
    doomed = kj.commit({"x.py": "doomed\n"}, "to be rewritten")
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    _update(lock)
    assert load_nodes_lock(lock).custom_nodes["ComfyUI-KJNodes"].locked.rev == doomed
    kj.force_branch("main", first)
    kj.prune()
    # the cache still holds the commit: --check must ask the remote, not the cache
    assert subprocess.run(["git", "cat-file", "-e", doomed], cwd=cache_repo(kj.url)).returncode == 0
    code, lines = _update(lock, check=True)
    assert code == 1
    (line,) = lines
    assert line.startswith(
        f"nodes.lock.yaml: custom_nodes.ComfyUI-KJNodes: the locked commit "
        f"{doomed} is not on {kj.url} any more (force-pushed away or "
        "deleted; git said: "
    )
    assert line.endswith(
        "Run scripts/update-locks.py --nodes ComfyUI-KJNodes to pin a commit "
        "the remote has, or point a url.<base>.insteadOf mirror that still "
        "has it at this URL"
    )


def test_unknown_name_is_an_error(remotes, tmp_path):
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    code, lines = _update(lock, "Nope")
    assert code == 1
    assert lines == [
        "error: nodes lock has no entry named 'Nope' (known: comfyui, "
        "ComfyUI-Easy-Use, ComfyUI-KJNodes)"
    ]


BARRIER = """#!/bin/sh
# Every connection waits here until PARTIES connections have arrived (or 20 s passed):
# resolved one after another, the first would wait alone.
here=$(dirname "$0")
mkdir -p "$here/arrivals" && : > "$here/arrivals/$$"
tries=0
while [ "$(ls "$here/arrivals" | wc -l)" -lt PARTIES ] && [ $tries -lt 400 ]; do
    sleep 0.05; tries=$((tries + 1))
done
if [ "$(ls "$here/arrivals" | wc -l)" -ge PARTIES ]; then echo met >> "$here/log"
else echo alone >> "$here/log"; fi
exec git "$1" "$2"
"""


def test_remotes_are_resolved_at_the_same_time(remotes, tmp_path):
    # git's ext:: transport runs a command per connection: here, a barrier before upload-pack.
    remotes.world.set_config("protocol.ext.allow", "always")
    script = tmp_path / "barrier" / "connect.sh"
    script.parent.mkdir()
    script.write_text(BARRIER.replace("PARTIES", "3"))
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    text = lock.read_text()
    for repo in (remotes.comfy, *remotes.nodes.values()):
        text = text.replace(repo.url, f"ext::sh {script} %s {repo.path}")
    lock.write_text(text)

    code, lines = _update(lock)
    assert code == 0, lines
    log = (script.parent / "log").read_text().split()
    assert log and set(log) == {"met"}  # no connection ever waited alone
    assert load_nodes_lock(lock).comfyui.locked.rev == remotes.comfy.head()
