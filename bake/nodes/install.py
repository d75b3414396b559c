"""`python -m bake nodes install`: ComfyUI and every custom node at its locked commit, and
nothing else.

ComfyUI goes at DIR itself, each custom node at DIR/custom_nodes/<name>. After install, every
entry's folder holds exactly the files of its commit plus what `nodes verify` accepts beside
them (models-lock destinations, the build's own byte-code, data the entry's committed
.gitignore ignores; see bake.nodes.verify); anything else is removed, and install says what.

Per entry:
- missing, another rev, or not a checkout: the commit is fetched shallowly into a temporary
  sibling of the final path and verified there (rev, and `locked.tree` when the lock has one).
  A missing entry then appears by one rename; an existing folder is moved to the commit from
  that verified copy. A failure before that point leaves the final path as it was.
- then, at the locked rev, the folder is compared with the commit's objects (never with a record
  kept inside the tree): unexpected paths are removed, edited or missing tracked files are
  saved as a patch under DIR/.bake/repaired/ and restored from the local objects, and the
  folder is compared again; what still differs fails the entry.

Before any git command runs in an existing folder, its git metadata is put back to what git
writes (bake.nodes.git.neutralise): a config key that could make git run a program is dropped,
hooks and the like are removed, and install says so. A commit whose symlinks lead outside its
folder is refused (bake.nodes.git.link_escape), before anything is put at the final path.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bake.errors import BakeError, GitError, LockError, Problem, UnlockedError, VerificationError
from bake.locks.lockfile import MODELS_LOCK, NODES_LOCK, default_lock, write_text_atomic
from bake.locks.nodes import NodeEntry, NodesLock, excluded_by, load_nodes_lock
from bake.nodes import git, verify
from bake.nodes.each import each_entry

REPAIRS = Path(".bake") / "repaired"
_STAGE_MARK = ".bake-stage-"
MAX_JOBS = 8

Log = Callable[[str], None]


class TreeMismatchError(VerificationError):
    """A checkout's tree hash is not the one the lock records."""


class InstallError(BakeError):
    """One or more entries could not be installed; one line per entry."""


@dataclass(frozen=True)
class Installed:
    """One entry as install left it."""

    name: str
    kind: str
    path: str  # relative to DIR, posix ("." for ComfyUI)
    rev: str


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


def _check_links(entry: NodeEntry, rev: str, checkout: Path) -> None:
    """Refuse a commit holding a symlink that leads outside its folder (nothing installed)."""
    escaping = git.escaping_links(checkout, entry=entry.qualified, comfyui=entry.kind == "comfyui")
    if escaping:
        where = _rel(entry) if entry.kind != "comfyui" else "ComfyUI's folder"
        raise VerificationError(
            f"{entry.qualified}: commit {rev[:12]} holds symlinks that lead outside {where}: "
            f"{'; '.join(escaping)}. A link must stay inside its entry's folder; nothing was "
            f"installed at its path: pin another commit (scripts/update-locks.py --nodes "
            f"{entry.name}) or ask upstream"
        )


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _remove(path: Path) -> None:
    """Delete `path` without following a symlink (a link is removed, never its target)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _listed(paths: list[str], limit: int = 8) -> str:
    shown = ", ".join(verify.shown(p) for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _settle(
    entry: NodeEntry,
    rev: str,
    comfyui_dir: Path,
    *,
    dests: set[str],
    locked_nodes: list[str],
    log: Log,
) -> bool:
    """Make the folder of `entry` (HEAD at `rev`) hold exactly its commit: remove what is
    unexpected, restore edited or missing tracked files (saving the edits as a patch). True
    when something had to be done. Raises when the folder still differs afterwards."""
    label = entry.qualified
    target = target_path(entry, comfyui_dir)
    try:
        report = verify.verify_entry(entry, comfyui_dir, dests=dests, locked_nodes=locked_nodes)
    except GitError:
        # a submodule's checkout is gone, or objects are missing: check the commit out again
        # (submodules included) from the local objects, then compare once more
        git.checkout(target, rev, entry=label)
        log(f"{label}: repaired: its checkout was incomplete; checked out {rev[:12]} again")
        report = verify.verify_entry(entry, comfyui_dir, dests=dests, locked_nodes=locked_nodes)
    if not report.findings:
        return False
    # a model on a path of the commit, a link of the commit leading out of its folder: the
    # commit itself is at fault, nothing here can repair it
    refused = [f for f in report.findings if f.kind in ("conflict", "unsafe")]
    if refused:
        raise VerificationError("\n".join(f"{label}: {f.line()}" for f in refused))
    unexpected = [f for f in report.findings if f.kind == "unexpected"]
    for finding in unexpected:
        _remove(comfyui_dir / finding.path)
    if unexpected:
        paths = [f.path for f in unexpected]
        log(f"{label}: removed what commit {rev[:12]} does not hold: {_listed(paths)}")
        for finding in unexpected:
            if finding.detail.startswith("configuration "):
                log(f"{label}: removed {verify.shown(finding.path)}: {finding.detail}")
    damaged = [f.path for f in report.findings if f.kind in ("changed", "missing")]
    if damaged:
        # the index kept in the checkout is not trusted either: the commit's tree, afresh
        git.reset_index(target, rev, entry=label)
        patch = git.local_diff(target, entry=label)
        saved = ""
        if patch:
            dest = comfyui_dir / REPAIRS / f"{entry.name}.patch"
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(dest, patch)
            saved = f"; the edits were saved to {dest}"
        for finding in report.findings:
            if finding.kind == "changed":
                # git's index may have been told the edited file is clean: make git rewrite it
                _remove(comfyui_dir / finding.path)
        git.checkout(target, rev, entry=label)
        prefix = verify.entry_root(entry)
        relative = [p[len(prefix) + 1 :] if prefix else p for p in damaged]
        log(
            f"{label}: repaired: local edits to tracked files ({_listed(relative, 5)}) were "
            f"undone to match {rev[:12]}{saved}"
        )
    again = verify.verify_entry(entry, comfyui_dir, dests=dests, locked_nodes=locked_nodes)
    if again.findings:
        raise VerificationError(
            "\n".join(f"{label}: after repair, {f.line()}" for f in again.findings)
        )
    return True


def install_entry(
    entry: NodeEntry,
    comfyui_dir: Path,
    *,
    dests: set[str] | None = None,
    locked_nodes: list[str] | None = None,
    log: Log = print,
) -> Installed:
    """Put `entry` at its path under `comfyui_dir` at its locked rev, holding exactly its
    commit (plus the models-lock `dests` inside it, relative to `comfyui_dir`)."""
    assert entry.locked is not None
    label, rev, url = entry.qualified, entry.locked.rev, entry.original.url
    target = target_path(entry, comfyui_dir)
    expected = entry.locked.tree
    dests = dests or set()
    locked_nodes = locked_nodes if locked_nodes is not None else []

    def settle() -> bool:
        return _settle(entry, rev, comfyui_dir, dests=dests, locked_nodes=locked_nodes, log=log)

    if target.is_symlink():
        # the entry's folder itself points elsewhere: drop the link (never its target)
        _remove(target)
        log(f"{label}: removed a symlink that stood in place of its folder")
    if target.is_dir():
        # no git command runs in this folder before its git metadata is git's own again
        replaced = git.neutralise(target, url)
        if replaced:
            log(
                f"{label}: replaced git metadata that git did not write, so that nothing it "
                f"names runs: {', '.join(t.line() for t in replaced)}"
            )
    current = git.head(target)
    if current == rev:
        if not settle():
            log(f"{label}: ok at {rev[:12]}")
        return Installed(entry.name, entry.kind, _rel(entry), rev)
    if current is not None:
        reason = f"it was at {current[:12]}"
    elif target.exists() and not target.is_dir():
        reason = "a file stood in its place"
        _remove(target)
    elif target.exists() and not _is_empty_dir(target):
        reason = "the folder was not a git checkout"
    else:
        reason = ""

    with _stage(target) as stage:
        git.fetch_checkout(stage, url, rev, entry=label)
        # hooks a user's git template (init.templateDir) puts into every new repository
        git.neutralise(stage, url)
        staged = git.worktree_tree_hash(stage, entry=label)
        _check_tree(entry, rev, staged, expected, "fetched")
        _check_links(entry, rev, stage)
        if not reason or not target.exists():
            if target.exists():
                target.rmdir()
            os.replace(stage, target)
            log(f"{label}: installed at {rev[:12]}")
        else:
            # Existing folder: move it to the verified commit taken from the staged copy (no
            # second download); what the commit does not hold is removed by settle() below.
            git.init(target, url, entry=label)
            git.run(
                ["fetch", "--quiet", "--depth", "1", "--no-tags", "--", str(stage), rev],
                cwd=target,
                entry=label,
                what="fetch from the verified copy",
            )
            git.checkout(target, rev, entry=label)
            git.neutralise(target, url)  # what `git init` copied from a user's template
            log(f"{label}: repaired: {reason}; now at {rev[:12]}")
    settle()
    if expected is None:
        log(
            f"{label}: note: the lock has no tree for {rev[:12]} yet (run "
            f"scripts/update-locks.py --nodes where the remote is reachable); its files were "
            "checked against the commit's objects"
        )
    return Installed(entry.name, entry.kind, _rel(entry), rev)


def install_nodes(
    lock: NodesLock,
    comfyui_dir: Path,
    *,
    dests: set[str] | None = None,
    log: Log = print,
    jobs: int | None = None,
) -> list[Installed]:
    """Install ComfyUI at `comfyui_dir` and every custom node under it, each at its locked
    commit and holding exactly its files; `dests` (the models lock's destinations, relative to
    `comfyui_dir`) are kept. Raise naming every entry that failed."""
    comfyui_dir = Path(comfyui_dir)
    dests = set(dests or ())
    entries = _preflight(lock, comfyui_dir)
    locked_nodes = list(lock.custom_nodes)
    comfy = install_entry(
        lock.comfyui, comfyui_dir, dests=dests, locked_nodes=locked_nodes, log=log
    )
    nodes = [e for e in entries if e.kind == "custom_node"]

    results = each_entry(
        nodes,
        lambda entry: install_entry(entry, comfyui_dir, dests=dests, log=log),
        jobs=jobs or MAX_JOBS,
        name="install",
    )
    failures = [line for r in results if isinstance(r, BakeError) for line in r.lines()]
    if failures:
        raise InstallError("\n".join(failures))
    # The last word is the read-only check `nodes verify` runs, over every entry at once.
    problems = [
        f.line()
        for report in verify.verify_nodes(lock, comfyui_dir, dests=dests)
        for f in report.findings
    ]
    if problems:
        raise InstallError("\n".join(problems))
    return [comfy, *(r for r in results if isinstance(r, Installed))]


def cli(args: argparse.Namespace) -> int:
    lock = load_nodes_lock(default_lock(NODES_LOCK, args.lock))
    dests = verify.model_dests(default_lock(MODELS_LOCK, args.models_lock))
    installed = install_nodes(
        lock, Path(args.comfyui_dir), dests=dests, log=lambda s: print(s, flush=True)
    )
    print(
        f"{len(installed)} entries installed and verified in {args.comfyui_dir}: each holds "
        "exactly its commit",
        flush=True,
    )
    return 0
