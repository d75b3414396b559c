"""`update-locks --nodes`: resolve each entry's `original` to a commit and record what is in it.

For every entry asked for, one worker of a thread pool runs `git ls-remote` on its remote (the
slow, network-bound part, so all remotes are asked at once), fetches the commit shallowly into
a cache shared across runs, checks it out there (submodules too) and records `rev`, the commit
`date`, the `tree` hash and the lines of the entry's requirements file. The new lock is printed
as a diff against the old one and written only when its bytes change.

`check=True` resolves nothing: it proves, for every entry, that the lock is complete and that
what it records (tree, requirements) is still what the locked commit holds on the remote.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

from bake.errors import BakeError
from bake.locks.diff import diff_locks, format_diff
from bake.locks.licenses import License, read_license
from bake.locks.lockfile import cache_root
from bake.locks.nodes import (
    GitPin,
    NodeEntry,
    NodesLock,
    load_nodes_lock,
    repo_name,
    requirement_lines,
    write_nodes_lock,
)
from bake.nodes import git
from bake.nodes.each import each_entry

T = TypeVar("T")
MAX_JOBS = 16


def cache_repo(url: str, root: Path | None = None) -> Path:
    """The cache checkout for one remote: readable name, unique per URL as written."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return (root or cache_root()) / "git" / f"{repo_name(url)}-{digest}"


@dataclass(frozen=True)
class Snapshot:
    """What one commit of an entry holds, as the lock records it."""

    rev: str
    date: str
    tree: str
    requirements: tuple[str, ...]
    license: License | None = None

    def pin(self) -> GitPin:
        return GitPin(
            rev=self.rev,
            date=self.date,
            tree=self.tree,
            requirements=self.requirements,
            license=self.license,
        )


def snapshot(
    entry: NodeEntry, rev: str, *, cache: Path | None = None, refetch: bool = False
) -> Snapshot:
    """Fetch `rev` of `entry` into the cache (unless cached and not `refetch`), check it out
    and read its date, tree hash and requirement lines."""
    label = entry.qualified
    repo = cache_repo(entry.original.url, cache)
    repo.parent.mkdir(parents=True, exist_ok=True)
    # One lock per cached remote: two entries (or two runs) on one URL take turns.
    with FileLock(str(repo) + ".lock"):
        if repo.is_dir():
            git.neutralise(repo, entry.original.url)  # the cache is a checkout like any other
        git.init(repo, entry.original.url, entry=label)
        if refetch or not git.has_commit(repo, rev):
            git.fetch_commit(repo, entry.original.url, rev, entry=label)
        git.checkout(repo, rev, entry=label)
        tree = git.worktree_tree_hash(repo, entry=label)
        date = git.commit_date(repo, rev, entry=label)
        requirements: tuple[str, ...] = ()
        if entry.requirements_file:
            data = git.read_file_at(repo, rev, entry.requirements_file, entry=label)
            requirements = _requirements(data, entry, rev) if data is not None else ()
        _refuse_escaping_links(entry, rev, repo)
        # Read from the checkout of rev; a source build is not installed in the image, so its
        # license is not recorded (provenance names its rev and the wheel built from it).
        license = read_license(repo) if entry.kind != "source_build" else None
    return Snapshot(rev, date, tree, requirements, license)


def _refuse_escaping_links(entry: NodeEntry, rev: str, repo: Path) -> None:
    """A commit with a symlink that leads outside its folder (`helper.py ->
    /home/comfy/.cache/x.py`, `helper.py -> ../../input/payload.py`) is not pinned: installed,
    the link would load whatever lies there, which no lock pins."""
    escaping = git.escaping_links(repo, entry=entry.qualified, comfyui=entry.kind == "comfyui")
    if escaping:
        raise BakeError(
            f"{entry.qualified}: commit {rev[:12]} holds symlinks that lead outside its "
            f"folder: {'; '.join(escaping)}. A link must stay inside its entry's folder: pin "
            "another commit (original.ref) or ask upstream"
        )


def _requirements(data: bytes, entry: NodeEntry, rev: str) -> tuple[str, ...]:
    """The requirement lines of a requirements file's bytes; a binary file is refused."""
    try:
        if b"\0" in data:
            raise ValueError("it holds NUL bytes")
        text = data.decode("utf-8")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BakeError(
            f"{entry.qualified}: {entry.requirements_file} at {rev[:12]} is not UTF-8 text "
            f"({exc}); pip could not read it either: fix requirements_file in nodes.lock.yaml "
            "or pin another commit"
        ) from None
    return requirement_lines(text)


def resolve_entry(entry: NodeEntry, *, cache: Path | None = None) -> Snapshot:
    """`original.ref` resolved on the remote now (refused when it names both a branch and a
    tag), and what that commit holds. The commit is the ref's head: on its branch by
    construction."""
    rev = git.resolve_ref(entry.original.url, entry.original.ref, entry=entry.qualified)
    return snapshot(entry, rev, cache=cache)


def off_ref(entry: NodeEntry, rev: str, *, cache: Path | None = None) -> str | None:
    """Why `rev` is not what `original.ref` tracks on the remote now, or None when it is: the
    ref itself for a full commit, the tag's commit for a tag, the head or one of its ancestors
    for a branch. A commit only on another branch, or only in a fork (GitHub serves those
    through the upstream URL too), is refused."""
    label, url, ref = entry.qualified, entry.original.url, entry.original.ref
    target = git.remote_ref(url, ref, entry=label)
    fix = (
        f"pin a commit it holds (scripts/update-locks.py --nodes {entry.name}) or set "
        "original.ref to what really holds this commit"
    )
    if target.kind == "commit":
        if rev != target.sha:
            return f"{label}: locked.rev {rev[:12]} is not original.ref {ref}; {fix}"
        return None
    if target.kind == "tag":
        if rev != target.sha:
            return (
                f"{label}: locked.rev {rev[:12]} is not the commit tag {ref!r} names on "
                f"{git.redact(url)} ({target.sha[:12]}); {fix}"
            )
        return None
    if rev == target.sha:
        return None
    history = cache_repo(url, cache).with_name(cache_repo(url, cache).name + ".history")
    with FileLock(str(history) + ".lock"):
        if git.is_ancestor(history, url, rev, target, entry=label):
            return None
    return (
        f"{label}: locked.rev {rev[:12]} is not on {target.name} of {git.redact(url)} (not its "
        f"head {target.sha[:12]} nor an ancestor of it): the commit is only on another branch "
        f"or in a fork; {fix}"
    )


def check_entry(entry: NodeEntry, *, cache: Path | None = None) -> list[str]:
    """Why `entry`'s lock is incomplete or no longer true, one line per problem (empty: fine).
    The remote is asked for the locked commit itself, so a commit force-pushed away shows."""
    label = entry.qualified
    if entry.locked is None:
        return [f"{label}: not locked; run scripts/update-locks.py --nodes {entry.name}"]
    found = snapshot(entry, entry.locked.rev, cache=cache, refetch=True)
    problems = []
    if (off := off_ref(entry, entry.locked.rev, cache=cache)) is not None:
        problems.append(off)
    if entry.locked.tree is None:
        problems.append(
            f"{label}: locked.tree is not recorded (the tree at "
            f"{entry.locked.rev[:12]} is {found.tree}); run "
            f"scripts/update-locks.py --nodes {entry.name}"
        )
    elif entry.locked.tree != found.tree:
        problems.append(
            f"{label}: locked.tree is {entry.locked.tree} but the tree at "
            f"{entry.locked.rev[:12]} is {found.tree}; the lock was edited or the "
            f"remote serves other content: run scripts/update-locks.py --nodes "
            f"{entry.name} and review the diff"
        )
    if entry.kind != "source_build" and entry.locked.license != found.license:
        was = entry.locked.license.summary() if entry.locked.license else "not recorded"
        problems.append(
            f"{label}: locked.license is {was} but the tree at {entry.locked.rev[:12]} has "
            f"{found.license.summary() if found.license else 'none'}; run "
            f"scripts/update-locks.py --nodes {entry.name} and review the diff"
        )
    locked_reqs = entry.locked.requirements
    if entry.kind != "source_build" and locked_reqs != found.requirements:
        added = [r for r in found.requirements if r not in locked_reqs]
        dropped = [r for r in locked_reqs if r not in found.requirements]
        detail = (
            "; ".join([*(f"+ {r}" for r in added), *(f"- {r}" for r in dropped)]) or "order differs"
        )
        where = entry.requirements_file or "(no requirements_file)"
        problems.append(
            f"{label}: locked.requirements differ from {where} at "
            f"{entry.locked.rev[:12]} ({detail}); run scripts/update-locks.py "
            f"--nodes {entry.name}"
        )
    return problems


def _select(lock: NodesLock, names: Sequence[str]) -> list[NodeEntry]:
    if not names:
        return list(lock.entries())
    selected, unknown = [], []
    for name in names:
        try:
            selected.append(lock.get(name))
        except KeyError:
            unknown.append(name)
    if unknown:
        known = ", ".join(e.name for e in lock.entries())
        raise BakeError(
            f"nodes lock has no entry named {', '.join(map(repr, unknown))} (known: {known})"
        )
    unique = {e.qualified: e for e in selected}  # the same entry named twice runs once
    return list(unique.values())


def _run_all(
    entries: list[NodeEntry], work: Callable[[NodeEntry], T], jobs: int | None
) -> dict[str, T | BakeError]:
    """`work` on every entry at once; each result or the BakeError it raised, by entry."""
    results = each_entry(entries, work, jobs=jobs or MAX_JOBS, name="resolve")
    return {e.qualified: r for e, r in zip(entries, results, strict=True)}


def update_nodes(
    lock_path: Path,
    names: Sequence[str] = (),
    *,
    check: bool = False,
    out: Callable[[str], None] = print,
    jobs: int | None = None,
    cache: Path | None = None,
) -> int:
    """Resolve (or with `check`, verify) the entries `names` (default: all) of the nodes lock
    at `lock_path`; print the diff or the problems; 0 when all is well, 1 otherwise."""
    lock_path = Path(lock_path)
    try:
        lock = load_nodes_lock(lock_path)
        entries = _select(lock, names)
    except BakeError as exc:
        for line in exc.lines():
            out(f"error: {line}")
        return 1

    if check:
        results = _run_all(entries, lambda e: check_entry(e, cache=cache), jobs)
        problems: list[str] = []
        for entry in entries:
            result = results[entry.qualified]
            problems += result.lines() if isinstance(result, BakeError) else result
        for line in problems:
            out(f"{lock_path.name}: {line}")
        if not problems:
            out(f"{lock_path.name}: {len(entries)} entries locked and consistent")
        return 1 if problems else 0

    results = _run_all(entries, lambda e: resolve_entry(e, cache=cache), jobs)
    new, failures = lock, []
    for entry in entries:
        result = results[entry.qualified]
        if isinstance(result, BakeError):
            failures += result.lines()
        else:
            new = new.with_pin(entry.qualified, result.pin())
    lines = format_diff(diff_locks(lock, new))
    for line in lines:
        out(line)
    # Entries that resolved are written even when others failed: each pin stands on its own.
    written = write_nodes_lock(new, lock_path)
    if written:
        out(f"{lock_path.name}: updated")
    elif not failures:
        out(f"{lock_path.name}: up to date ({len(entries)} entries)")
    for line in failures:
        out(f"error: {line}")
    return 1 if failures else 0
