"""Model verification at boot: no job runs on a model file that does not match the lock.

A wrong file (size or hash) and a missing `image` model are fatal. A missing `volume` model is
fetched onto the network volume when FETCH_MISSING=1 and its credentials are set, else it is a
warning: jobs that do not use it still work, and ComfyUI names the file if one does.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from worker.config import Config

log = logging.getLogger("worker")


@dataclass
class ModelCheck:
    ok: bool = True
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verified: int = 0
    seconds: float = 0.0
    hashed_bytes: int = 0
    # for the model policy: the lock's dests, and the files verified against them
    # (None when MODEL_VERIFY=off: nothing was verified, the policy goes by names)
    locked_dests: frozenset[str] = frozenset()
    verified_paths: frozenset[str] | None = None
    # real path -> its identity (device, inode, size, mtime_ns, ctime_ns) when it was verified:
    # a file rewritten in place afterwards (through a hard link on a shared volume) keeps its
    # path but not its ctime, and the policy refuses it
    identities: dict[str, tuple[int, int, int, int, int]] = field(default_factory=dict)


def lock_path(config: Config) -> Path:
    """MODELS_LOCK, else models.lock.yaml in $BAKE_ROOT, else in the nearest parent of the
    working directory holding a lock, else in the directory above the installed `bake`
    package (the lookup every bake command uses)."""
    if config.models_lock is not None:
        return config.models_lock
    from bake.locks.lockfile import MODELS_LOCK, default_lock

    return default_lock(MODELS_LOCK)


def fetch_blocker(entry: object, env: Mapping[str, str]) -> str | None:
    """Why `entry` cannot be fetched here, or None: an S3/R2 entry needs its endpoint and
    keys; a Hub entry cannot be fetched while HF_HUB_OFFLINE is set (the image sets it)."""
    source = getattr(entry, "source", None)
    kind = getattr(source, "kind", None)
    if kind == "s3":
        names = (
            source.endpoint_url_env,
            source.access_key_id_env,  # type: ignore[union-attr]
            source.secret_access_key_env,
        )  # type: ignore[union-attr]
        lacking = [name for name in names if not env.get(name)]
        return f"{', '.join(lacking)} not set" if lacking else None
    if kind == "hf" and env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    return None


def check_models(config: Config, env: Mapping[str, str] | None = None) -> ModelCheck:
    env = os.environ if env is None else env
    result = ModelCheck()
    from bake.errors import BakeError
    from bake.locks.models import load_models_lock

    if config.model_verify == "off":
        result.warnings.append("MODEL_VERIFY=off: model files are NOT verified against the lock")
        try:
            lock = load_models_lock(lock_path(config))
            result.locked_dests = frozenset(e.dest for e in lock.entries("all"))
        except (BakeError, OSError) as exc:
            result.warnings.append(f"models lock unreadable, no model is allowed: {exc}")
        return result
    from bake.models.verify import missing_line, verify_models

    started = time.monotonic()
    path = lock_path(config)
    try:
        lock = load_models_lock(path)
    except (BakeError, OSError) as exc:
        result.ok = False
        result.errors.append(f"cannot read the models lock {path} (MODELS_LOCK): {exc}")
        return result
    volumes = [root for root in config.volume_roots if root.is_dir()]
    roots = [config.comfyui_dir, *volumes]
    # Each file's identity before it is read: one that changes while it is hashed is not taken
    # for the file that was hashed.
    before = {
        str(root / e.dest): _identity(root / e.dest) for e in lock.entries("all") for root in roots
    }
    report = verify_models(lock, config.comfyui_dir, volumes, mode=config.model_verify)
    result.verified = len(report.verified)
    result.locked_dests = frozenset(e.dest for e in lock.entries("all"))
    verified_paths = list(report.verified)
    result.hashed_bytes = report.hashed_bytes
    result.errors += report.problems
    for entry in report.unlocked:
        why = "optional and not locked, so skipped" if entry.optional else "so not verified"
        result.warnings.append(f"{entry.name}: not locked in {path}, {why}")
    to_fetch = []
    for entry in report.missing:
        if entry.placement == "image":
            result.errors.append(
                missing_line(entry, roots) + " (an image model: the image is incomplete)"
            )
            continue
        blocker = fetch_blocker(entry, env)
        if not config.fetch_missing:
            result.warnings.append(missing_line(entry, roots) + "; FETCH_MISSING=1 fetches it")
        elif not volumes:
            result.warnings.append(
                f"{entry.name}: missing, and no network volume is mounted "
                f"({', '.join(map(str, config.volume_roots))}) to fetch it to"
            )
        elif blocker:
            result.warnings.append(f"{entry.name}: missing, and not fetched: {blocker}")
        else:
            to_fetch.append(entry.name)
    if to_fetch:
        from bake.models.fetch import fetch_models

        log.info("fetching missing volume models: %s", ", ".join(to_fetch))
        try:
            fetched = fetch_models(
                lock, config.comfyui_dir, volumes, placement="volume", names=to_fetch
            )
            result.errors += fetched.failed
            result.verified += len(fetched.fetched) + len(fetched.present)
            verified_paths += fetched.fetched + fetched.present
            before.update((p, _identity(Path(p))) for p in fetched.fetched + fetched.present)
        except BakeError as exc:
            result.errors += exc.lines()
    for path in verified_paths:
        now = _identity(Path(path))
        if now is None or now != before.get(str(path)):
            result.errors.append(f"{path}: changed while it was being verified")
        else:
            result.identities[os.path.realpath(path)] = now
    result.verified_paths = frozenset(os.path.realpath(p) for p in verified_paths)
    result.ok = not result.errors
    result.seconds = time.monotonic() - started
    return result


def _identity(path: Path) -> tuple[int, int, int, int, int] | None:
    from bake.models.stamps import identity

    try:
        return identity(os.stat(path))
    except OSError:
        return None
