"""models.lock.yaml: every model file, where it comes from, where it goes, and its hashes.

Sources are `hf` (Hugging Face Hub), `s3` (S3-compatible storage such as Cloudflare R2) and `url`
(plain HTTP(S)). `dest` is relative to the ComfyUI root. `sha256` is what the source publishes
(the Hub's LFS oid) and is checked once, at fetch; `blake3` is the fast hash every later check uses.

A dest can only hold model data: the model layers are copied over the ComfyUI tree after the
nodes are installed, so a dest that could name code (`main.py`, a node's module), git's or
bake's own state, or a line break for the output would be a way around the nodes lock. The rules
are in `dest_problem`; `bake check` adds the cross-check with the nodes lock.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from bake.locks.lockfile import (
    ENV_REF,
    HEX40,
    HEX64,
    LOCK_VERSION,
    Checker,
    check_relative_path,
    describe,
    join,
    normalise_path,
    read_lock_text,
    write_if_changed,
)
from bake.locks.yamlio import dump_yaml, load_yaml

# image: baked into the image; volume: on the network volume; cache: a Hugging Face file that
# RunPod's model cache puts on the host (Hub cache layout), found and verified at boot.
Placement = Literal["image", "volume", "cache"]
PLACEMENTS = ("image", "volume", "cache")

# Larger than any single model file a source serves (the Hub takes files up to 50 GB), small
# enough that a typo of several digits, or a size no disk holds, is refused.
MAX_SIZE = 1 << 40  # 1 TiB

# File name suffixes that are code to something in the image: Python (source, bytecode,
# zipapps, extension modules), native libraries and executables, shell and Windows scripts,
# and what ComfyUI's web server hands a browser (a node's web folder is served as is). `.pth`
# is not here: it is a PyTorch checkpoint in a model folder (RIFE's rife47.pth), and Python's
# own `.pth` files only act in site-packages, which no dest can reach.
CODE_SUFFIXES = frozenset(
    {
        *(".py", ".pyc", ".pyo", ".pyw", ".pyz", ".pyi", ".ipynb"),
        *(".so", ".pyd", ".dll", ".dylib", ".exe", ".wasm"),
        *(".sh", ".bash", ".zsh", ".bat", ".cmd", ".ps1"),
        *(".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".jsx", ".tsx"),
        *(".html", ".htm", ".xhtml", ".svg"),
    }
)
_VERSIONED_LIBRARY = re.compile(r".*\.so(\.[0-9]+)+")  # libfoo.so.1.2
# Line and paragraph separators and format characters (bidi overrides hide a suffix) count
# as control characters too: Python's splitlines() breaks a message at several of them.
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
MODEL_ROOT = "models"
NODES_DIR = "custom_nodes"


def dest_problem(dest: str, placement: str = "image") -> str | None:
    """Why `dest` (relative to the ComfyUI root) may not hold a model file, or None.

    A dest lies under `models/`, or inside a custom node's folder (`custom_nodes/NODE/...`,
    for nodes that keep their checkpoints there; which nodes exist is the cross-check's
    business); no component is hidden (`.git`, bake's `.bake-stamps/` and `.bake/`, download
    temporaries); the file name has no code suffix; no control character anywhere.
    """
    for position, char in enumerate(dest):
        if unicodedata.category(char) in _CONTROL_CATEGORIES:
            return (
                f"holds the control character U+{ord(char):04X} at position {position}: "
                "a path with line breaks or control characters could forge lines of bake's "
                f"output; rename it, found {dest!r}"
            )
    if why := check_relative_path(dest):
        return f"{why}, found {dest!r}"
    parts = PurePosixPath(dest).parts
    for part in parts:
        if part.startswith("."):
            return (
                f"the component {part!r} is hidden: .git, bake's .bake-stamps/ and .bake/ "
                f"and download temporaries live in such names, model files do not; "
                f"found {dest!r}"
            )
    name = parts[-1].lower()
    suffix = PurePosixPath(name).suffix
    if suffix in CODE_SUFFIXES or _VERSIONED_LIBRARY.fullmatch(name):
        shown = suffix if suffix in CODE_SUFFIXES else ".so"
        return (
            f"a file ending in {shown} is code, not model data, and the model layers "
            f"are copied over the ComfyUI tree: code comes only from the nodes lock; "
            f"found {dest!r}"
        )
    if placement in ("volume", "cache") and (parts[0] != MODEL_ROOT or len(parts) < 2):
        return (
            f"a {placement} entry must lie under {MODEL_ROOT}/ (ComfyUI finds {placement} files "
            f"through extra_model_paths.yaml, which maps {MODEL_ROOT}/ folders only); "
            f"found {dest!r}"
        )
    if parts[0] == MODEL_ROOT and len(parts) >= 2:
        return None
    if parts[0] == NODES_DIR and len(parts) >= 3:
        return None
    return (
        f"expected a path under {MODEL_ROOT}/ or inside a custom node's folder "
        f"({NODES_DIR}/NODE/...): anywhere else a file could replace ComfyUI's code or "
        f"configuration; found {dest!r}"
    )


def dest_conflicts(dests: Mapping[str, str]) -> list[tuple[str, str]]:
    """(where, message) for each dest that needs another dest to be a folder; `dests` maps
    each (normalised) dest to the entry that writes it."""
    found = []
    for dest, where in dests.items():
        parts = PurePosixPath(dest).parts
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in dests:
                found.append(
                    (
                        where,
                        f"{dest!r} needs {parent!r} to be a folder, but {dests[parent]} "
                        "writes a file there: one path cannot be a file and a folder",
                    )
                )
                break
    return found


HEADER = (
    "# Model files: source, destination (relative to the ComfyUI root), size and hashes.\n"
    "# Edit `original`, `dest`, `placement` and `optional` by hand; `locked` is written by\n"
    "# scripts/update-locks.py --models.\n"
)


@dataclass(frozen=True)
class HfSource:
    repo: str
    path: str
    revision: str = "main"
    repo_type: str = "model"
    kind = "hf"

    def describe(self) -> str:
        return f"hf://{self.repo}/{self.path}@{self.revision}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "repo": self.repo}
        if self.repo_type != "model":
            data["repo_type"] = self.repo_type
        data["revision"] = self.revision
        data["source"] = "hf"
        return data


@dataclass(frozen=True)
class S3Source:
    """An object in S3-compatible storage. `bucket` and `key` may be `${VAR}` references, and
    the `*_env` fields name the variables holding this entry's endpoint and keys, so buckets on
    two accounts can coexist (defaults: the standard AWS_* variables)."""

    bucket: str
    key: str
    endpoint_url_env: str = "AWS_ENDPOINT_URL"
    access_key_id_env: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_env: str = "AWS_SECRET_ACCESS_KEY"
    region: str = "auto"
    kind = "s3"

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"bucket": self.bucket, "key": self.key, "source": "s3"}
        defaults = S3Source("", "")
        for name in ("access_key_id_env", "endpoint_url_env", "region", "secret_access_key_env"):
            if getattr(self, name) != getattr(defaults, name):
                data[name] = getattr(self, name)
        return dict(sorted(data.items()))


@dataclass(frozen=True)
class UrlSource:
    url: str
    kind = "url"

    def describe(self) -> str:
        return self.url

    def to_dict(self) -> dict[str, Any]:
        return {"source": "url", "url": self.url}


Source = HfSource | S3Source | UrlSource


@dataclass(frozen=True)
class ModelPin:
    size: int
    blake3: str
    sha256: str | None = None
    revision: str | None = None  # the 40-hex Hub commit, for hf sources


@dataclass(frozen=True)
class ModelEntry:
    name: str
    source: Source
    dest: str
    placement: Placement = "image"
    locked: ModelPin | None = None
    # An optional entry that is not locked is skipped (with a warning) by `check --strict`, the
    # build and the boot, so a fork without the private bucket it comes from still builds; once
    # locked it is fetched and verified like any other.
    optional: bool = False

    @property
    def skipped(self) -> bool:
        """Optional and not locked: nothing uses it, and nothing fails for it."""
        return self.optional and self.locked is None

    @property
    def qualified(self) -> str:
        return f"models.{self.name}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"dest": self.dest}
        if self.locked is not None:
            locked: dict[str, Any] = {"blake3": self.locked.blake3}
            if self.locked.revision is not None:
                locked["revision"] = self.locked.revision
            if self.locked.sha256 is not None:
                locked["sha256"] = self.locked.sha256
            locked["size"] = self.locked.size
            data["locked"] = locked
        if self.optional:
            data["optional"] = True
        data["original"] = self.source.to_dict()
        data["placement"] = self.placement
        return data


@dataclass(frozen=True)
class ModelsLock:
    models: Mapping[str, ModelEntry]

    def entries(self, placement: str = "all") -> Iterator[ModelEntry]:
        for name in sorted(self.models, key=str.lower):
            entry = self.models[name]
            if placement in ("all", entry.placement):
                yield entry

    def get(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise KeyError(f"no model named {name!r} in the models lock (known: {known})") from None

    def unlocked(self) -> list[ModelEntry]:
        """Entries without a pin that something needs (optional ones are `skipped()`)."""
        return [e for e in self.entries() if e.locked is None and not e.optional]

    def skipped(self) -> list[ModelEntry]:
        return [e for e in self.entries() if e.skipped]

    def with_pin(self, name: str, pin: ModelPin | None) -> ModelsLock:
        entry = dataclasses.replace(self.get(name), locked=pin)
        return ModelsLock({**self.models, name: entry})

    def entry_dicts(self) -> dict[str, dict[str, Any]]:
        return {e.qualified: e.to_dict() for e in self.entries()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": LOCK_VERSION,
            "models": {e.name: e.to_dict() for e in self.entries()},
        }


# -- parsing ------------------------------------------------------------------------------

_SOURCE_FIELDS = {
    "hf": (["repo", "path"], ["revision", "repo_type"]),
    "s3": (
        ["bucket", "key"],
        ["endpoint_url_env", "access_key_id_env", "secret_access_key_env", "region"],
    ),
    "url": (["url"], []),
}


def _parse_source(check: Checker, data: Any, where: str) -> Source | None:
    if data is None:
        return None
    data = check.mapping(data, where)
    if data is None:
        return None
    kind = data.get("source")
    if kind not in _SOURCE_FIELDS:
        check.add(
            join(where, "source"),
            f"unknown source kind: expected one of hf, s3, url, found {describe(kind)}",
        )
        return None
    required, optional = _SOURCE_FIELDS[kind]
    check.keys(data, where, required=["source", *required], optional=optional)
    values = {
        name: check.string(data, name, where, required=name in required)
        for name in (*required, *optional)
    }
    if any(values[name] is None for name in required):
        return None
    if kind == "hf":
        if values["repo_type"] not in (None, "model", "dataset", "space"):
            check.add(
                join(where, "repo_type"),
                f"expected model, dataset or space, found {describe(values['repo_type'])}",
            )
        if values["path"] and (why := check_relative_path(values["path"])):
            check.add(join(where, "path"), f"{why}, found {values['path']!r}")
        return HfSource(
            values["repo"],
            values["path"],
            values["revision"] or "main",
            values["repo_type"] or "model",
        )
    if kind == "s3":
        for name in ("endpoint_url_env", "access_key_id_env", "secret_access_key_env"):
            value = values[name]
            if value is not None and not ENV_REF.fullmatch("${" + value + "}"):
                check.add(
                    join(where, name),
                    f"expected the name of an environment variable, found {value!r}",
                )
        given = {k: v for k, v in values.items() if v is not None and k not in ("bucket", "key")}
        return S3Source(values["bucket"], values["key"], **given)
    url = values["url"]
    if not url.startswith(("https://", "http://")):
        check.add(join(where, "url"), f"expected an http(s) URL, found {url!r}")
        return None
    return UrlSource(url)


def _parse_pin(check: Checker, data: Any, where: str, source: Source | None) -> ModelPin | None:
    data = check.mapping(data, where)
    if data is None:
        return None
    check.keys(data, where, required=["size", "blake3"], optional=["sha256", "revision"])
    size = check.size(data, "size", where, maximum=MAX_SIZE)
    blake3 = check.pattern(data, "blake3", where, HEX64, "64 lowercase hex characters")
    sha256 = check.pattern(
        data, "sha256", where, HEX64, "64 lowercase hex characters", required=False
    )
    revision = check.pattern(
        data,
        "revision",
        where,
        HEX40,
        "a full Hub commit (40 lowercase hex characters)",
        required=False,
    )
    if isinstance(source, HfSource) and "revision" not in data:
        check.add(
            join(where, "revision"),
            "required for a Hugging Face source (the commit the file was locked at)",
        )
    if isinstance(source, HfSource) and "sha256" not in data:
        check.add(
            join(where, "sha256"),
            "required for a Hugging Face source (the Hub publishes it for LFS files; "
            "update-locks computes it from the bytes otherwise): run "
            "`scripts/update-locks.py --models` for this entry",
        )
    elif source is not None and "sha256" not in data:
        check.add(
            join(where, "sha256"),
            f"required for every source, {source.kind} too (update-locks computes it from the "
            "streamed bytes; fetch and `models verify` check it with blake3): run "
            "`scripts/update-locks.py --models` for this entry",
        )
    if size is None or blake3 is None:
        return None
    return ModelPin(size=size, blake3=blake3, sha256=sha256, revision=revision)


def parse_models_lock(data: Any, filename: str = "models.lock.yaml") -> ModelsLock:
    """Build a ModelsLock from parsed YAML, or raise LockError listing every problem."""
    check = Checker(filename)
    data = check.document(data)
    check.keys(data, "", required=["version", "models"])
    raw = data.get("models")
    models: dict[str, ModelEntry] = {}
    dests: dict[str, str] = {}
    names: dict[str, str] = {}
    if raw is not None:
        raw = check.mapping(raw, "models") or {}
        for name, entry_data in raw.items():
            name = str(name)
            where = f"models.{name}"
            if name.lower() in names:
                check.add(where, f"duplicate name: {names[name.lower()]} already uses it")
                continue
            names[name.lower()] = where
            entry_data = check.mapping(entry_data, where)
            if entry_data is None:
                continue
            check.keys(
                entry_data,
                where,
                required=["original", "dest"],
                optional=["placement", "locked", "optional"],
            )
            optional = entry_data.get("optional", False)
            if not isinstance(optional, bool):
                check.add(
                    join(where, "optional"), f"expected true or false, found {describe(optional)}"
                )
                optional = False
            source = _parse_source(check, entry_data.get("original"), join(where, "original"))
            dest = check.string(entry_data, "dest", where)
            placement = entry_data.get("placement", "image")
            if placement not in PLACEMENTS:
                check.add(
                    join(where, "placement"),
                    f"expected image, volume or cache, found {describe(placement)}",
                )
            elif placement == "cache" and source is not None and not isinstance(source, HfSource):
                check.add(
                    join(where, "placement"),
                    "cache is for Hugging Face files (RunPod's model cache holds one Hub "
                    f"repository), but this entry's source is {source.kind}: use image or "
                    "volume",
                )
                placement = None
            if dest is not None:
                if why := dest_problem(dest, placement):
                    check.add(join(where, "dest"), why)
                    dest = None
                else:
                    dest = normalise_path(dest)
                    if dest in dests:
                        check.add(
                            join(where, "dest"),
                            f"{dest!r} is also the dest of "
                            f"{dests[dest]}: two entries cannot write one file",
                        )
                    dests.setdefault(dest, where)
            locked = None
            if entry_data.get("locked") is not None:
                locked = _parse_pin(check, entry_data["locked"], join(where, "locked"), source)
            if source is not None and dest is not None and placement in PLACEMENTS:
                models[name] = ModelEntry(name, source, dest, placement, locked, optional)
    for where, message in dest_conflicts(dests):
        check.add(join(where, "dest"), message)
    check.raise_if_any()
    return ModelsLock(models)


def loads_models_lock(text: str, filename: str = "models.lock.yaml") -> ModelsLock:
    return parse_models_lock(load_yaml(text, filename), filename)


def load_models_lock(path: Path) -> ModelsLock:
    return loads_models_lock(read_lock_text(path, "models lock"), str(path))


def dumps_models_lock(lock: ModelsLock) -> str:
    return dump_yaml(lock.to_dict(), HEADER)


def write_models_lock(lock: ModelsLock, path: Path) -> bool:
    """Write canonically; returns False (and touches nothing) when the bytes are unchanged."""
    return write_if_changed(path, dumps_models_lock(lock))
