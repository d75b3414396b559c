"""`python -m bake nodes install`: ComfyUI and every custom node at its locked commit, verified.

ComfyUI goes at DIR itself, each custom node at DIR/custom_nodes/<name>. What install owns is
git's tracked files of each checkout; untracked files are data and are never deleted: model
files fetched into DIR/models, checkpoints under a node, configs nodes write at run time, and
each node folder, which is untracked from ComfyUI's point of view. So the tree of an entry is
checked over git's tracked files only (content read from disk), and a repair rewrites tracked
files only. The Dockerfile installs nodes first and fetches models after; running install again
on a DIR that already holds models is safe.

Per entry:
- HEAD is the locked rev and the tracked tree matches: nothing to do (no network).
- HEAD is right but tracked files were edited: the edits are saved as a patch under DIR/.bake/
  and undone from the local objects, then the tree is checked again.
- Anything else (missing, another rev, not a checkout): the commit is fetched shallowly into a
  temporary sibling of the final path and verified there. A missing entry then appears by one
  rename; an existing folder is moved to the commit from that verified copy. A failure before
  that point leaves the final path as it was.

The expected tree is `locked.tree`; while the lock has none yet, the tree recorded in the
manifest at the same rev stands in (so later local edits are still caught).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from bake.errors import BakeError, GitError, LockError, Problem, UnlockedError, VerificationError
from bake.locks.lockfile import NODES_LOCK, default_lock, write_text_atomic
from bake.locks.nodes import NodeEntry, NodesLock, excluded_by, load_nodes_lock
from bake.nodes import git

MANIFEST = Path(".bake") / "nodes-manifest.json"
REPAIRS = Path(".bake") / "repaired"
_STAGE_MARK = ".bake-stage-"
MAX_JOBS = 8

Log = Callable[[str], None]


class TreeMismatchError(VerificationError):
    """A checkout's tree hash is not the one the lock records."""


class InstallError(BakeError):
    """One or more entries could not be installed; one line per entry."""


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    kind: str
    path: str  # relative to DIR, posix ("." for ComfyUI)
    rev: str
    tree: str


@dataclass(frozen=True)
class Manifest:
    """What DIR holds, written by install: name, rev and tree of every entry."""

    entries: tuple[ManifestEntry, ...]

    def get(self, name: str) -> ManifestEntry | None:
        return next((e for e in self.entries if e.name == name), None)

    def to_json(self) -> str:
        data = {"version": 1, "entries": [asdict(e) for e in self.entries]}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, comfyui_dir: Path) -> Manifest | None:
        """The manifest in DIR, or None when there is none or it cannot be read (it is only a
        record: install then works from the lock alone)."""
        try:
            data = json.loads((Path(comfyui_dir) / MANIFEST).read_text(encoding="utf-8"))
            return cls(tuple(ManifestEntry(**e) for e in data["entries"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def target_path(entry: NodeEntry, comfyui_dir: Path) -> Path:
    return comfyui_dir if entry.kind == "comfyui" else comfyui_dir / "custom_nodes" / entry.name


def _rel(entry: NodeEntry) -> str:
    return "." if entry.kind == "comfyui" else f"custom_nodes/{entry.name}"


def _preflight(lock: NodesLock, comfyui_dir: Path) -> list[NodeEntry]:
    """The entries to install, after refusing excluded and unlocked ones (all reported)."""
    entries = [e for e in lock.entries() if e.kind != "source_build"]
    refused = []
    for entry in entries:
        if hit := excluded_by(entry.name, entry.original.url, lock.exclude):
            refused.append(
                Problem(
                    NODES_LOCK,
                    entry.qualified,
                    f"{hit} is excluded (it "
                    "installs code at run time) and is never installed; remove "
                    "this entry",
                )
            )
    nodes_dir = comfyui_dir / "custom_nodes"
    if nodes_dir.is_dir():
        for child in sorted(nodes_dir.iterdir()):
            if child.is_dir() and (hit := excluded_by(child.name, None, lock.exclude)):
                refused.append(
                    Problem(
                        str(child),
                        "",
                        f"{hit} is excluded (it installs code "
                        "at run time) but is present here; delete this folder",
                    )
                )
    if refused:
        raise LockError(refused)
    unlocked = [e.qualified for e in entries if e.locked is None]
    if unlocked:
        raise UnlockedError(
            f"{', '.join(unlocked)}: not locked; the build installs only locked "
            "commits: run scripts/update-locks.py --nodes with network access"
        )
    return entries


@contextmanager
def _stage(final: Path) -> Iterator[Path]:
    """A fresh temporary sibling of `final` (same file system, so a rename can publish it),
    removed afterwards unless it was renamed into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}{_STAGE_MARK}*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by an install that was killed
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}{_STAGE_MARK}", dir=final.parent))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _check_tree(entry: NodeEntry, rev: str, found: str, expected: str | None, where: str) -> None:
    if expected is not None and found != expected:
        raise TreeMismatchError(
            f"{entry.qualified}: the tree {where} at {rev[:12]} is {found}, "
            f"the lock says {expected}; a mirror served other content, a git filter on this "
            "machine altered the checkout, or the lock was edited by hand. Nothing was "
            f"installed at its path; run scripts/update-locks.py --check --nodes {entry.name}"
        )


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _restore_in_place(
    entry: NodeEntry, rev: str, target: Path, expected: str | None, comfyui_dir: Path, log: Log
) -> str | None:
    """HEAD is right but tracked files differ: save the edits, undo them from the local
    objects. The new tree, or None when that did not give the expected tree."""
    label = entry.qualified
    changed = git.modified_files(target, entry=label)
    patch = git.local_diff(target, entry=label)
    saved = ""
    if patch:
        dest = comfyui_dir / REPAIRS / f"{entry.name}.patch"
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(dest, patch)
        saved = f"; the edits were saved to {dest}"
    try:
        git.checkout(target, rev, entry=label)
    except GitError:
        return None
    tree = git.worktree_tree_hash(target, entry=label)
    if (expected is not None and tree != expected) or git.modified_files(target, entry=label):
        return None
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    log(
        f"{label}: repaired: local edits to tracked files ({shown or 'file modes'}) were undone "
        f"to match {rev[:12]}{saved}"
    )
    return tree


def install_entry(
    entry: NodeEntry, comfyui_dir: Path, *, manifest: Manifest | None = None, log: Log = print
) -> ManifestEntry:
    """Put `entry` at its path under `comfyui_dir` at its locked rev, verified."""
    assert entry.locked is not None
    label, rev, url = entry.qualified, entry.locked.rev, entry.original.url
    target = target_path(entry, comfyui_dir)
    recorded = manifest.get(entry.name) if manifest else None
    expected = entry.locked.tree or (recorded.tree if recorded and recorded.rev == rev else None)

    def done(tree: str) -> ManifestEntry:
        return ManifestEntry(entry.name, entry.kind, _rel(entry), rev, tree)

    current = git.head(target)
    if current == rev:
        tree = git.worktree_tree_hash(target, entry=label)
        if tree == expected or (expected is None and not git.modified_files(target, entry=label)):
            log(f"{label}: ok at {rev[:12]}")
            return done(tree)
        repaired = _restore_in_place(entry, rev, target, expected, comfyui_dir, log)
        if repaired is not None:
            return done(repaired)
        reason = "its files differ from the locked tree"
    elif current is not None:
        reason = f"it was at {current[:12]}"
    elif target.exists() and not _is_empty_dir(target):
        reason = "the folder was not a git checkout"
    else:
        reason = ""

    with _stage(target) as stage:
        git.fetch_checkout(stage, url, rev, entry=label)
        staged = tree = git.worktree_tree_hash(stage, entry=label)
        _check_tree(entry, rev, staged, expected, "fetched")
        if not reason:
            if target.exists():
                target.rmdir()
            os.replace(stage, target)
            log(f"{label}: installed at {rev[:12]}")
        else:
            # Existing folder: move it to the verified commit taken from the staged copy (no
            # second download), keeping its untracked files.
            git.init(target, url, entry=label)
            git.run(
                ["fetch", "--quiet", "--depth", "1", "--no-tags", "--", str(stage), rev],
                cwd=target,
                entry=label,
                what="fetch from the verified copy",
            )
            git.checkout(target, rev, entry=label)
            tree = git.worktree_tree_hash(target, entry=label)
            _check_tree(entry, rev, tree, staged, "checked out")
            log(f"{label}: repaired: {reason}; now at {rev[:12]}")
    if entry.locked.tree is None:
        log(
            f"{label}: note: the lock has no tree for {rev[:12]} yet (run "
            f"scripts/update-locks.py --nodes where the remote is reachable); recorded {tree}"
        )
    return done(tree)


def _stray_nodes(lock: NodesLock, comfyui_dir: Path) -> list[str]:
    """Folders in custom_nodes that the lock does not pin (ComfyUI would load them)."""
    nodes_dir = comfyui_dir / "custom_nodes"
    if not nodes_dir.is_dir():
        return []
    pinned = {name.lower() for name in lock.custom_nodes}
    return sorted(
        c.name
        for c in nodes_dir.iterdir()
        if c.is_dir() and not c.name.startswith((".", "__")) and c.name.lower() not in pinned
    )


def install_nodes(
    lock: NodesLock, comfyui_dir: Path, *, log: Log = print, jobs: int | None = None
) -> Manifest:
    """Install ComfyUI at `comfyui_dir` and every custom node under it, each at its locked
    commit and verified; write the manifest; raise naming every entry that failed."""
    comfyui_dir = Path(comfyui_dir)
    entries = _preflight(lock, comfyui_dir)
    manifest = Manifest.load(comfyui_dir)
    comfy = install_entry(lock.comfyui, comfyui_dir, manifest=manifest, log=log)
    nodes = [e for e in entries if e.kind == "custom_node"]

    def one(entry: NodeEntry) -> ManifestEntry | BakeError:
        try:
            return install_entry(entry, comfyui_dir, manifest=manifest, log=log)
        except BakeError as exc:
            return exc

    workers = max(1, min(jobs or MAX_JOBS, len(nodes) or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="install") as pool:
        results = list(pool.map(one, nodes))
    failures = [line for r in results if isinstance(r, BakeError) for line in r.lines()]
    if failures:
        raise InstallError("\n".join(failures))
    for name in _stray_nodes(lock, comfyui_dir):
        log(
            f"custom_nodes/{name}: warning: not in the lock, yet ComfyUI will load it; remove "
            "it or pin it in nodes.lock.yaml"
        )
    result = Manifest((comfy, *(r for r in results if isinstance(r, ManifestEntry))))
    (comfyui_dir / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(comfyui_dir / MANIFEST, result.to_json())
    return result


def cli(args: argparse.Namespace) -> int:
    lock = load_nodes_lock(default_lock(NODES_LOCK, args.lock))
    manifest = install_nodes(lock, Path(args.comfyui_dir), log=lambda s: print(s, flush=True))
    print(
        f"{len(manifest.entries)} entries installed and verified in {args.comfyui_dir}; "
        f"manifest: {Path(args.comfyui_dir) / MANIFEST}",
        flush=True,
    )
    return 0
