"""`cache` entries: Hugging Face files that RunPod's model cache puts on the host.

RunPod downloads one Hub repository per endpoint into the standard Hub cache layout under the
network-volume mount (`ROOT/models--ORG--NAME/snapshots/COMMIT/PATH`, with `refs/BRANCH` holding
a commit and the snapshot files symlinks into `blobs/`). A `cache` entry is found there at its
locked commit, with huggingface_hub's own lookup (`try_to_load_from_cache`), then verified like
any model file. Nothing here downloads: the endpoint's model setting provides the repository.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from bake.locks.models import HfSource, ModelEntry

# Where RunPod's model cache appears in a serverless worker.
DEFAULT_ROOTS = (Path("/runpod-volume/huggingface-cache/hub"),)
ROOTS_ENV = "HF_CACHE_ROOTS"


def cache_roots(env: dict[str, str] | os._Environ[str] | None = None) -> list[Path]:
    """HF_CACHE_ROOTS (colon-separated Hub cache folders), else RunPod's."""
    env = os.environ if env is None else env
    value = env.get(ROOTS_ENV, "")
    if not value.strip():
        return list(DEFAULT_ROOTS)
    return [Path(p) for p in value.split(":") if p.strip()]


def find(entry: ModelEntry, roots: Sequence[Path]) -> tuple[Path, Path] | None:
    """(root, the snapshot path of the entry's file at its locked commit) in the first cache
    root that holds it, or None. The path may be a symlink into the root's blobs/."""
    from huggingface_hub import try_to_load_from_cache  # only where the lock has cache entries

    source = entry.source
    assert isinstance(source, HfSource) and entry.locked is not None
    for root in roots:
        if not root.is_dir():
            continue
        found = try_to_load_from_cache(
            source.repo,
            source.path,
            cache_dir=root,
            revision=entry.locked.revision,
            repo_type=source.repo_type,
        )
        if isinstance(found, str) and Path(found).is_file():
            return root, Path(found)
    return None


def cached_commits(entry: ModelEntry, roots: Sequence[Path]) -> list[str]:
    """The commits the cache roots hold snapshots of for the entry's repository (to say what is
    there instead when the locked one is not)."""
    from huggingface_hub.file_download import repo_folder_name

    source = entry.source
    assert isinstance(source, HfSource)
    folder = repo_folder_name(repo_id=source.repo, repo_type=source.repo_type)
    found: list[str] = []
    for root in roots:
        snapshots = root / folder / "snapshots"
        if snapshots.is_dir():
            found += sorted(p.name for p in snapshots.iterdir() if p.is_dir())
    return found


def missing_line(entry: ModelEntry, roots: Sequence[Path]) -> str:
    """One line: the entry, what it looked for and where, what is there instead, and the
    endpoint setting that provides it."""
    source = entry.source
    assert isinstance(source, HfSource) and entry.locked is not None
    where = ", ".join(str(r) for r in roots) or "(none)"
    others = cached_commits(entry, roots)
    there = (
        f"the cache holds {source.repo} at {', '.join(others)} only, not the locked commit"
        if others
        else f"the cache holds no {source.repo}"
    )
    return (
        f"{entry.name}: not in RunPod's model cache: looked for {source.path} of "
        f"{source.repo} at commit {entry.locked.revision} in {where} ({ROOTS_ENV}); {there}. "
        f"Set the endpoint's model to {source.repo} (one repository per endpoint, revision "
        f"{entry.locked.revision}), or start the worker with FETCH_MISSING=1 to download it "
        "to the network volume"
    )
