"""Model verification at boot: no job runs on a model file that does not match the lock.

A wrong file (size or hash) and a missing `image` model are fatal. A missing `volume` model is
fetched onto the network volume when FETCH_MISSING=1 and its credentials are set, else it is a
warning: jobs that do not use it still work, and ComfyUI names the file if one does.

A `cache` model is looked for in RunPod's model cache (HF_CACHE_ROOTS, the Hub cache layout) at
its locked commit, then on the volume (where FETCH_MISSING=1 puts one the cache lacks). Missing
is fatal, unless FETCH_MISSING=1 fetches it to the volume: the endpoint's model setting is
wrong. The verified file is linked into the folder the generated extra-model-paths file maps
(`Config.cache_links`), so ComfyUI sees it at its dest and nothing unverified.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from worker.config import Config

if TYPE_CHECKING:
    from bake.locks.models import ModelEntry, ModelsLock

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
    # files this check did not read, for the page-cache warm-up (worker.model_warm)
    unread_paths: list[str] = field(default_factory=list)


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
        _show_cache_unverified(lock, config, result)
        roots = [config.comfyui_dir, *(v for v in config.volume_roots if v.is_dir())]
        if config.cache_links is not None:
            roots.append(config.cache_links)
        result.unread_paths = [
            str(root / e.dest)
            for e in lock.entries()
            for root in roots
            if (root / e.dest).is_file()
        ]
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
    hf_roots = list(config.hf_cache_roots)
    # A second read stream, ahead of the hash (worker.model_warm.ahead): `full` reads every
    # file, and a disk that serves several streams at once sets the pace of the boot.
    stop_ahead = threading.Event()
    reading_ahead = None
    if config.model_warm and config.model_verify == "full":
        from worker.model_warm import ahead

        reading_ahead = ahead(_hash_order(lock, roots), stop_ahead)
    try:
        # blake3 alone: the image build and update-locks checked that each pin's sha256 and
        # blake3 describe the same bytes, and blake3 proves the bytes are those; sha256 on one
        # core would set the pace of every cold start (docs/models.md, "One file, one identity")
        report = verify_models(
            lock,
            config.comfyui_dir,
            volumes,
            mode=config.model_verify,
            hf_cache_roots=hf_roots,
            sha256=False,
        )
    finally:
        stop_ahead.set()
        if reading_ahead is not None:
            reading_ahead.join()  # at most one chunk more: no read left to compete with a job
    # The identity of each file as it was hashed: taken from the descriptor that was read
    # (bake.models.verify), never from a second stat by path, so no swap during the check can
    # bind a good hash to another file.
    hashed = dict(report.identities)
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
        if entry.placement == "cache" and not (config.fetch_missing and volumes):
            result.errors.append(missing_line(entry, roots, hf_roots))
            continue
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
            line = f"{entry.name}: missing, and not fetched: {blocker}"
            # a cache model is never optional: the endpoint cannot serve without it
            (result.errors if entry.placement == "cache" else result.warnings).append(line)
        else:
            to_fetch.append(entry.name)
    if to_fetch:
        import dataclasses

        from bake.locks.models import ModelsLock
        from bake.models.fetch import fetch_models

        log.info("fetching missing volume models: %s", ", ".join(to_fetch))
        # a cache model the cache lacks goes where a volume model would
        as_volume = ModelsLock(
            {
                name: dataclasses.replace(e, placement="volume") if e.placement == "cache" else e
                for name, e in lock.models.items()
            }
        )
        try:
            fetched = fetch_models(
                as_volume, config.comfyui_dir, volumes, placement="volume", names=to_fetch
            )
            result.errors += fetched.failed
            result.verified += len(fetched.fetched) + len(fetched.present)
            verified_paths += fetched.fetched + fetched.present
            hashed.update(fetched.identities)
        except BakeError as exc:
            result.errors += exc.lines()
    for path in verified_paths:
        now = _identity(Path(path))
        if now is None or now != hashed.get(str(path)):
            result.errors.append(f"{path}: changed while it was being verified")
        else:
            result.identities[os.path.realpath(path)] = now
    for name, path in report.cache_files.items():
        entry = lock.models[name]
        # one at VOLUME/dest (fetched there) is mapped already; RunPod's cache lies under the
        # volume root too, but at its own paths
        if not any(path == v / entry.dest for v in volumes):
            _link(config, entry, path, result)
    result.verified_paths = frozenset(os.path.realpath(p) for p in verified_paths)
    if config.model_verify == "fast":  # what a stamp vouched for was not read
        result.unread_paths = list(verified_paths)
    result.ok = not result.errors
    result.seconds = time.monotonic() - started
    return result


def _hash_order(lock: ModelsLock, roots: list[Path]) -> list[tuple[str, int]]:
    """The large image and volume files a full check will hash one after another, in its
    order (bake.models.verify.verify_models), with their sizes; a file whose size is not the
    pin's is not read by the check, so it is left out. Cache entries are left out too."""
    from bake.models.verify import LARGE_FILE

    files: list[tuple[str, int]] = []
    for entry in lock.entries():
        if entry.locked is None or entry.placement == "cache" or entry.locked.size < LARGE_FILE:
            continue
        for root in roots:
            path = root / entry.dest
            try:
                if path.is_file() and path.stat().st_size == entry.locked.size:
                    files.append((str(path), entry.locked.size))
            except OSError:
                continue
    return files


def _identity(path: Path) -> tuple[int, int, int, int, int] | None:
    from bake.models.stamps import identity

    try:
        return identity(os.stat(path))
    except OSError:
        return None


def _link(config: Config, entry: ModelEntry, path: Path, result: ModelCheck) -> None:
    """Show ComfyUI the verified file `path` of a cache model at its dest: a link to its real
    path (the blob, not the snapshot link that could be pointed elsewhere later) in the folder
    the generated extra-model-paths file maps."""
    name, dest = entry.name, entry.dest
    if config.cache_links is None:
        result.errors.append(
            f"{name}: placement cache needs the extra-model-paths file the worker writes, but "
            "EXTRA_MODEL_PATHS names a file of your own: unset it, or make this entry's "
            "placement volume"
        )
        return
    link = config.cache_links / dest
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.realpath(path))
    except OSError as exc:
        result.errors.append(f"{name}: cannot link {link} to {path}: {exc}")


def _show_cache_unverified(lock: ModelsLock, config: Config, result: ModelCheck) -> None:
    """MODEL_VERIFY=off: cache models are still found and shown to ComfyUI, unverified."""
    from bake.models import hfcache

    roots = list(config.hf_cache_roots)
    for entry in lock.entries("cache"):
        if entry.locked is None:
            continue
        found = hfcache.find(entry, roots)
        if found is None:
            result.warnings.append(hfcache.missing_line(entry, roots))
        else:
            _link(config, entry, found[1], result)
