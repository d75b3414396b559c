"""nodes.lock.yaml: ComfyUI, the custom nodes and the source builds, pinned to git commits.

This module owns the format: parsing with every problem reported, canonical serialisation
(the same lock always gives the same bytes), and the flat view `entry_dicts()` that the drift
function in `lockdiff` compares.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

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


@dataclass(frozen=True)
class GitLocation:
    """Where a git URL points, normalised the way servers and git read it: the host (lower
    case, without user-info, port or a leading `www.`) and the path's components (decoded,
    dot segments resolved, in case-folded NFKC form, the last without `.git`)."""

    host: str
    parts: tuple[str, ...]

    @property
    def repository(self) -> str:
        return self.parts[-1] if self.parts else ""


# git's `<transport>::<address>` form (a remote helper fetches <address>)
_HELPER = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*::(?P<address>.*)", re.S)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# scp-like `[user@]host:path`: git's rule is a colon before any slash
_SCP = re.compile(r"(?:[^@/]*@)?(?P<host>[^:/]+):(?P<path>.*)", re.S)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _decode(text: str) -> str:
    """Percent-escapes decoded until nothing changes (`%252e` -> `%2e` -> `.`): a server or a
    proxy may decode once more than git does, so every layer is taken off."""
    for _ in range(8):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text


def git_location(url: str) -> GitLocation:
    """Normalise a git URL (https, ssh, git, file, scp-like or a local path) to the host and
    path it names. `https://github.com/o/ComfyUI-Manager/.`, `.../x/../ComfyUI-Manager`,
    `.../ComfyUI%2DManager`, `git@github.com:o/comfyui-manager.Git/`, `ssh://git@github.com:22/
    o/ComfyUI-Manager?x#y` and `https::https://www.github.com/o/ComfyUI-Manager` all end in the
    component `comfyui-manager`."""
    text = url.strip()
    while (helper := _HELPER.fullmatch(text)) is not None and not _SCHEME.match(text):
        text = helper["address"].strip()
    host = ""
    if _SCHEME.match(text):
        rest = text.split("://", 1)[1]
        authority, path = re.match(r"([^/\\]*)(.*)", rest, re.S).groups()
        authority = authority.rpartition("@")[2]  # user-info
        if authority.startswith("["):  # [IPv6]:port
            host = authority.split("]", 1)[0] + "]"
        else:
            host = authority.split(":", 1)[0]
    elif (scp := _SCP.fullmatch(text)) is not None:
        host, path = scp["host"], scp["path"]
    else:
        path = text
    path = path.split("#", 1)[0].split("?", 1)[0]  # fragment and query
    host = _fold(_decode(host)).rstrip(".")
    if host.startswith("www."):
        host = host[len("www.") :]
    parts: list[str] = []
    # cut again after decoding: an escaped `%3F` or `%23` is a query or fragment to a proxy or
    # server that decodes once more
    decoded = _decode(path).split("#", 1)[0].split("?", 1)[0]
    for raw in re.split(r"[/\\]", decoded):
        part = raw.strip()
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    while parts:
        last = parts[-1].rstrip(". ")
        while last.lower().endswith(".git"):
            last = last[: -len(".git")].rstrip(". ")
        if last:
            parts[-1] = last
            break
        parts.pop()  # a trailing `/.git`: the repository is the component before it
    return GitLocation(host, tuple(_fold(part) for part in parts))


def repository_of(url: str) -> str:
    """The repository a git URL names (its last path component, normalised by
    `git_location`), in case-folded form: `https://github.com/o/ComfyUI-Manager.GIT#x`,
    `git@github.com:o/comfyui-manager/.git/` and `https://github.com/o/ComfyUI-Manager/.`
    all name `comfyui-manager`."""
    return git_location(url).repository


def excluded_by(name: str, url: str | None, exclude: Iterable[str]) -> str | None:
    """The excluded name that `name` or `url` matches, or None. Names compare in case-folded
    NFKC form, any owner; the URL is normalised by `git_location` and every component of its
    path counts, not only the last: `.../ComfyUI-Manager/tree/main` still fetches the
    Manager from some servers, and no legitimate node lives below a folder of that name."""
    refused = {_fold(n): n for n in (*ALWAYS_EXCLUDED, *exclude)}
    candidates = [_fold(name)] if name else []
    if url:
        candidates += git_location(url).parts
    for candidate in candidates:
        if candidate in refused:
            return refused[candidate]
    return None


# -- refs and names -------------------------------------------------------------------------

# Namespaces under refs/ other than branches and tags: what each one is, and why pinning
# through it pins nothing the repository's owner vouched for.
_FOREIGN_REFS = {
    "refs/pull/": "a pull request's head or merge (refs/pull/N/head): anyone can open a pull "
    "request on a public repository and so create one, holding any code",
    "refs/merge-requests/": "a GitLab merge request's head: anyone who can open a merge request "
    "creates one, holding any code",
    "refs/changes/": "a Gerrit review change: anyone who may upload a change for review "
    "creates one",
    "refs/remotes/": "a remote-tracking ref (another repository's branch as this one last "
    "fetched it), not a branch of this repository",
}
_REF_SYNTAX = (
    ("@{", "reflog syntax (`@{...}` names a past position of a local ref)"),
    ("..", "range syntax (`A..B` names a set of commits, not one)"),
    ("~", "revision syntax (`~N` names an ancestor of a commit)"),
    ("^", "revision syntax (`^` names a parent or peels an object)"),
    (":", "refspec or path syntax (`:`)"),
    ("\\", "a backslash, which git does not allow in a ref name"),
)
_GLOB = re.compile(r"[?*\[]")
_PSEUDO_REF = re.compile(r"[A-Z_]*_HEAD")
_ANY_CASE_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
REF_KINDS = "a branch, a tag, refs/heads/NAME, refs/tags/NAME, HEAD or a full commit (40 hex)"


def ref_problem(ref: str) -> str | None:
    """Why `original.ref` may not be pinned through, or None when it names a branch, a tag,
    `HEAD` (the remote's default branch) or a full commit. Refused: every namespace under
    `refs/` but refs/heads/ and refs/tags/ (pull requests, review changes, remote-tracking
    refs, ...), revision and reflog syntax (`HEAD~1`, `main^`, `@{1}`, `a..b`), and what git's
    check-ref-format refuses."""
    if bad := _unsafe_character(ref):
        return f"it holds {bad}"
    if ref.startswith("-"):
        return "it starts with '-' (git would read it as an option)"
    if HEX40.fullmatch(ref) or ref == "HEAD":
        return None
    if _ANY_CASE_HEX40.fullmatch(ref):
        return "a full commit is written in lower case hex"
    for token, what in _REF_SYNTAX:
        if token in ref:
            return f"{what}: pin the commit itself (40 hex digits), a branch or a tag"
    if _GLOB.search(ref):
        return "a glob pattern (`?`, `*`, `[`), which can match several refs"
    if ref == "@":
        return "`@` is git's shorthand for the local HEAD"
    if _PSEUDO_REF.fullmatch(ref):
        return f"{ref} is a pseudo-ref of a local repository, not something a remote serves"
    name = ref
    if ref.startswith("refs/"):
        for namespace in ("refs/heads/", "refs/tags/"):
            if ref.startswith(namespace):
                name = ref[len(namespace) :]
                if not name:
                    return f"{namespace} names no branch or tag"
                break
        else:
            for namespace, why in _FOREIGN_REFS.items():
                if ref.startswith(namespace):
                    return f"{namespace}* is {why}; pin a branch, a tag or a full commit"
            namespace = "/".join(ref.split("/")[:2]) + "/"
            return (
                f"{namespace}* is not a branch or tag namespace (only refs/heads/ and "
                "refs/tags/ are); pin a branch, a tag or a full commit"
            )
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "a ref name has no empty component (a leading, trailing or doubled '/')"
    if name.endswith("."):
        return "a ref name cannot end with '.'"
    for component in name.split("/"):
        if component.startswith("."):
            return f"the component {component!r} starts with '.', which git does not allow"
        if component.endswith(".lock"):
            return f"the component {component!r} ends with '.lock', which git does not allow"
    return None


_BIDI = {
    0x061C, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E,
    0x2066, 0x2067, 0x2068, 0x2069,
}  # fmt: skip


def _unsafe_character(text: str) -> str | None:
    """The first character of `text` that a name or ref may not hold, described, or None:
    control characters (newline and NUL among them), Unicode format characters (bidi controls,
    zero-width characters), line and paragraph separators, spaces other than U+0020, and code
    points that are unassigned, private or surrogates."""
    for char in text:
        category = unicodedata.category(char)
        name = unicodedata.name(char, "")
        label = f"U+{ord(char):04X} ({name})" if name else f"U+{ord(char):04X}"
        if category == "Cc":
            return f"the control character {label}"
        if ord(char) in _BIDI:
            return (
                f"the bidirectional control {label}, which makes the text display in another "
                "order than it is"
            )
        if category == "Cf":
            return f"the invisible format character {label}"
        if category in ("Zl", "Zp") or (category == "Zs" and char != " "):
            return f"the separator {label}"
        if category in ("Cs", "Co", "Cn"):
            return f"{label}, a surrogate, private-use or unassigned code point"
    return None


def name_problem(name: str) -> str | None:
    """Why a custom node's or source build's name is not one safe folder name, or None."""
    if not name.strip():
        return "it is empty"
    if bad := _unsafe_character(name):
        return f"it holds {bad}"
    if "/" in name or "\\" in name:
        return "it holds '/' or '\\': one folder name, not a path"
    if name.startswith("."):
        return "it starts with '.' (a hidden folder, or '.' and '..')"
    if name != name.strip():
        return "it starts or ends with a space"
    if name.startswith("-"):
        return "it starts with '-' (a command would read it as an option)"
    if len(name.encode("utf-8")) > 255:
        return "it is longer than a folder name may be (255 bytes)"
    return None


def shown(name: str) -> str:
    """A name as messages show it: as is when printable, else quoted with escapes, so that a
    newline or a bidi control in a lock cannot forge or reorder a line of output."""
    return name if name.isprintable() else repr(name)


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
    if url is not None and (bad := _unsafe_character(url)) is not None:
        check.add(join(where, "url"), f"a URL holds no whitespace or invisible text; found {bad}")
        url = None
    if ref is not None and (why := ref_problem(ref)) is not None:
        check.add(join(where, "ref"), f"expected {REF_KINDS}, found {ref!r}: {why}")
        ref = None
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
            name = str(name)
            where = f"{section}.{shown(name)}"
            if (why := name_problem(name)) is not None:
                check.add(where, f"expected a plain folder name: {why}")
                continue
            if name.lower() in seen:
                check.add(
                    where,
                    f"duplicate name: {seen[name.lower()]} already uses it "
                    "(names are compared without case)",
                )
                continue
            seen[name.lower()] = where
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
