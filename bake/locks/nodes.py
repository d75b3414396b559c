"""nodes.lock.yaml: ComfyUI, the custom nodes and the source builds, pinned to git commits.

This module owns the format: parsing with every problem reported, canonical serialisation
(the same lock always gives the same bytes), and the flat view `entry_dicts()` that the drift
function in `lockdiff` compares.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from bake.hashing import TREE_PREFIX
from bake.locks.licenses import License
from bake.locks.lockfile import (
    HEX40,
    LOCK_VERSION,
    Checker,
    check_relative_path,
    describe,
    join,
    read_lock_text,
    write_if_changed,
)
from bake.locks.yamlio import dump_yaml, load_yaml

# The tree hash format of bake.hashing (`tree2-blake3:`, NUL-terminated records); a hash of the
# old newline-terminated format (`blake3:`) is refused: it could be forged by a file name.
TREE_HASH = re.compile(re.escape(TREE_PREFIX) + "[0-9a-f]{64}")

Kind = Literal["comfyui", "custom_node", "source_build"]

# Refused whatever the lock's `exclude` says: it installs code at run time.
ALWAYS_EXCLUDED = ("ComfyUI-Manager",)

HEADER = (
    "# Git pins for ComfyUI, its custom nodes and source builds.\n"
    "# Edit `original` (url, ref) by hand; `locked` is written by "
    "scripts/update-locks.py --nodes.\n"
)


@dataclass(frozen=True)
class GitSource:
    """What a maintainer asked for: a repository and a branch, tag or commit."""

    url: str
    ref: str


@dataclass(frozen=True)
class GitPin:
    """What `original` resolved to."""

    rev: str
    date: str
    tree: str | None = None
    requirements: tuple[str, ...] = ()
    # the license file found at rev (ComfyUI and custom nodes; filled by update-locks --nodes)
    license: License | None = None


@dataclass(frozen=True)
class NodeEntry:
    name: str
    kind: Kind
    original: GitSource
    locked: GitPin | None = None
    requirements_file: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        """The entry's address in the file, as messages and diffs name it."""
        if self.kind == "comfyui":
            return "comfyui"
        section = "custom_nodes" if self.kind == "custom_node" else "source_builds"
        return f"{section}.{self.name}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.env:
            data["env"] = {k: self.env[k] for k in sorted(self.env)}
        if self.locked is not None:
            locked: dict[str, Any] = {"date": self.locked.date}
            if self.locked.license is not None:
                locked["license"] = self.locked.license.to_dict()
            if self.kind != "source_build" or self.locked.requirements:
                locked["requirements"] = list(self.locked.requirements)
            locked["rev"] = self.locked.rev
            if self.locked.tree is not None:
                locked["tree"] = self.locked.tree
            data["locked"] = locked
        data["original"] = {"ref": self.original.ref, "url": self.original.url}
        if self.requirements_file is not None:
            data["requirements_file"] = self.requirements_file
        return data


@dataclass(frozen=True)
class NodesLock:
    comfyui: NodeEntry
    custom_nodes: Mapping[str, NodeEntry]
    source_builds: Mapping[str, NodeEntry]
    exclude: tuple[str, ...] = ALWAYS_EXCLUDED

    def entries(self) -> Iterator[NodeEntry]:
        """ComfyUI, then custom nodes, then source builds, each group by name."""
        yield self.comfyui
        for name in sorted(self.custom_nodes, key=str.lower):
            yield self.custom_nodes[name]
        for name in sorted(self.source_builds, key=str.lower):
            yield self.source_builds[name]

    def get(self, name: str) -> NodeEntry:
        for entry in self.entries():
            if name in (entry.name, entry.qualified):
                return entry
        known = ", ".join(e.name for e in self.entries())
        raise KeyError(f"no entry named {name!r} in the nodes lock (known: {known})")

    def unlocked(self) -> list[NodeEntry]:
        return [e for e in self.entries() if e.locked is None]

    def with_pin(self, name: str, pin: GitPin | None) -> NodesLock:
        """A copy with one entry's `locked` replaced."""
        entry = dataclasses.replace(self.get(name), locked=pin)
        if entry.kind == "comfyui":
            return dataclasses.replace(self, comfyui=entry)
        if entry.kind == "custom_node":
            return dataclasses.replace(self, custom_nodes={**self.custom_nodes, entry.name: entry})
        return dataclasses.replace(self, source_builds={**self.source_builds, entry.name: entry})

    def entry_dicts(self) -> dict[str, dict[str, Any]]:
        return {e.qualified: e.to_dict() for e in self.entries()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": LOCK_VERSION,
            "comfyui": self.comfyui.to_dict(),
            "custom_nodes": {
                name: self.custom_nodes[name].to_dict()
                for name in sorted(self.custom_nodes, key=str.lower)
            },
            "source_builds": {
                name: self.source_builds[name].to_dict()
                for name in sorted(self.source_builds, key=str.lower)
            },
            "exclude": sorted(self.exclude, key=str.lower),
        }


def repo_name(url: str) -> str:
    """The last path component of a git URL, without `.git`."""
    tail = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail[:-4] if tail.endswith(".git") else tail


def repository_of(url: str) -> str:
    """The repository a git URL names, normalised as hosts serve it: without query, fragment,
    trailing slashes, a trailing `/.git` or `.git` (in any case) and percent-escapes, in lower
    case. `https://github.com/o/ComfyUI-Manager.GIT#x` and `git@github.com:o/comfyui-manager/.git/`
    both name `comfyui-manager`."""
    text = url.strip()
    if "://" in text:
        parts = urlsplit(text)
        path = parts.path
    else:  # scp-like: [user@]host:path
        path = text.split("#", 1)[0].split("?", 1)[0].rsplit(":", 1)[-1]
    path = unquote(path)
    while True:
        trimmed = path.rstrip("/")
        if trimmed.lower().endswith("/.git"):
            trimmed = trimmed[: -len("/.git")]
        elif trimmed.lower().endswith(".git"):
            trimmed = trimmed[: -len(".git")]
        if trimmed == path:
            break
        path = trimmed
    return path.rsplit("/", 1)[-1].lower()


def excluded_by(name: str, url: str | None, exclude: Iterable[str]) -> str | None:
    """The excluded name that `name` or `url` matches (any case, any owner, the URL normalised
    by `repository_of`), or None."""
    refused = {n.lower(): n for n in (*ALWAYS_EXCLUDED, *exclude)}
    for candidate in (name.lower(), repository_of(url) if url else None):
        if candidate and candidate in refused:
            return refused[candidate]
    return None


def requirement_lines(text: str) -> tuple[str, ...]:
    """The lines of a requirements file that matter: comments and blank lines dropped,
    whitespace trimmed, order kept (what `locked.requirements` records)."""
    lines = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            lines.append(line)
    return tuple(lines)


# -- parsing ------------------------------------------------------------------------------


def _parse_entry(check: Checker, name: str, kind: Kind, data: Any, where: str) -> NodeEntry | None:
    data = check.mapping(data, where)
    if data is None:
        return None
    optional = ["locked", "requirements_file"] if kind != "source_build" else ["locked", "env"]
    check.keys(data, where, required=["original"], optional=optional)
    original = _parse_original(check, data.get("original"), join(where, "original"))
    locked = None
    if data.get("locked") is not None:
        locked = _parse_pin(check, data["locked"], join(where, "locked"), kind)
    requirements_file = check.string(data, "requirements_file", where, required=False)
    if requirements_file is not None and (why := check_relative_path(requirements_file)):
        check.add(join(where, "requirements_file"), f"{why}, found {requirements_file!r}")
    env: dict[str, str] = {}
    if "env" in data:
        raw_env = check.mapping(data["env"], join(where, "env"))
        for key, value in (raw_env or {}).items():
            if not isinstance(value, str):
                check.add(
                    join(where, f"env.{key}"),
                    f"expected a string (quote numbers), found {describe(value)}",
                )
            else:
                env[str(key)] = value
    if original is None:
        return None
    return NodeEntry(name, kind, original, locked, requirements_file, env)


def _parse_original(check: Checker, data: Any, where: str) -> GitSource | None:
    if data is None:
        return None  # already reported as missing by keys()
    data = check.mapping(data, where)
    if data is None:
        return None
    check.keys(data, where, required=["url", "ref"])
    url = check.string(data, "url", where)
    ref = check.string(data, "ref", where)
    if url is None or ref is None:
        return None
    return GitSource(url=url, ref=ref)


def _parse_pin(check: Checker, data: Any, where: str, kind: Kind) -> GitPin | None:
    data = check.mapping(data, where)
    if data is None:
        return None
    required = ["rev", "date"]
    check.keys(data, where, required=required, optional=["tree", "requirements", "license"])
    rev = check.pattern(data, "rev", where, HEX40, "a full commit (40 lowercase hex characters)")
    date = check.iso_date(data, "date", where)
    tree = check.pattern(
        data,
        "tree",
        where,
        TREE_HASH,
        f"'{TREE_PREFIX}' and 64 lowercase hex characters",
        required=False,
    )
    requirements = check.string_list(data, "requirements", where)
    license = _parse_license(check, data.get("license"), join(where, "license"))
    if rev is None or date is None:
        return None
    return GitPin(rev=rev, date=date, tree=tree, requirements=requirements, license=license)


def _parse_license(check: Checker, data: Any, where: str) -> License | None:
    """`locked.license`: what update-locks found in the tree ({} when it holds no file)."""
    if data is None:
        return None
    data = check.mapping(data, where)
    if data is None:
        return None
    fields = ("file", "spdx", "restriction", "text")
    check.keys(data, where, required=[], optional=list(fields))
    values = {name: check.string(data, name, where, required=False) for name in fields}
    return License(**values)


def parse_nodes_lock(data: Any, filename: str = "nodes.lock.yaml") -> NodesLock:
    """Build a NodesLock from parsed YAML, or raise LockError listing every problem."""
    check = Checker(filename)
    data = check.document(data)
    check.keys(
        data,
        "",
        required=["version", "comfyui"],
        optional=["custom_nodes", "source_builds", "exclude"],
    )
    exclude = check.string_list(data, "exclude", "")
    exclude_all = tuple(dict.fromkeys((*ALWAYS_EXCLUDED, *exclude)))

    comfyui = None
    if "comfyui" in data:
        comfyui = _parse_entry(check, "comfyui", "comfyui", data["comfyui"], "comfyui")
        if comfyui and (hit := excluded_by("", comfyui.original.url, exclude_all)):
            check.add("comfyui.original.url", f"{hit} is excluded and cannot be installed")

    seen: dict[str, str] = {}
    sections: dict[str, dict[str, NodeEntry]] = {"custom_nodes": {}, "source_builds": {}}
    for section, kind in (("custom_nodes", "custom_node"), ("source_builds", "source_build")):
        raw = data.get(section)
        if raw is None:
            continue
        raw = check.mapping(raw, section)
        for name, entry_data in (raw or {}).items():
            where = f"{section}.{name}"
            name = str(name)
            if name.lower() in seen:
                check.add(
                    where,
                    f"duplicate name: {seen[name.lower()]} already uses it "
                    "(names are compared without case)",
                )
                continue
            seen[name.lower()] = where
            if "/" in name or name.startswith(".") or not name.strip():
                check.add(where, "expected a plain folder name (no '/', not starting with '.')")
                continue
            entry = _parse_entry(check, name, kind, entry_data, where)  # type: ignore[arg-type]
            if entry is None:
                continue
            if hit := excluded_by(name, entry.original.url, exclude_all):
                check.add(
                    where, f"{hit} is excluded (it installs code at run time); remove this entry"
                )
                continue
            sections[section][name] = entry

    check.raise_if_any()
    assert comfyui is not None
    return NodesLock(comfyui, sections["custom_nodes"], sections["source_builds"], exclude_all)


def loads_nodes_lock(text: str, filename: str = "nodes.lock.yaml") -> NodesLock:
    return parse_nodes_lock(load_yaml(text, filename), filename)


def load_nodes_lock(path: Path) -> NodesLock:
    return loads_nodes_lock(read_lock_text(path, "nodes lock"), str(path))


def dumps_nodes_lock(lock: NodesLock) -> str:
    return dump_yaml(lock.to_dict(), HEADER)


def write_nodes_lock(lock: NodesLock, path: Path) -> bool:
    """Write canonically; returns False (and touches nothing) when the bytes are unchanged."""
    return write_if_changed(path, dumps_nodes_lock(lock))
