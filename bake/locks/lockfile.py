"""What every lockfile shares: schema checks that collect every problem, atomic writes, and
finding the locks and their kind.

A `Checker` walks parsed YAML and records a `Problem` for each thing wrong instead of stopping
at the first, so `bake check` prints the whole list in one run.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from bake.errors import LockError, Problem

LOCK_VERSION = 1
NODES_LOCK = "nodes.lock.yaml"
MODELS_LOCK = "models.lock.yaml"
REQUIREMENTS_LOCK = "requirements.lock"

HEX40 = re.compile(r"[0-9a-f]{40}")
HEX64 = re.compile(r"[0-9a-f]{64}")
TREE_HASH = re.compile(r"blake3:[0-9a-f]{64}")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

_MISSING = object()


def describe(value: Any) -> str:
    """How a found value reads in a message: its repr, shortened, with its YAML type."""
    if value is None:
        return "nothing"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    kind = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        list: "list",
        dict: "mapping",
    }.get(type(value), type(value).__name__)
    return f"{kind} {text}"


class Checker:
    """Collects problems for one file while a parser walks it."""

    def __init__(self, filename: str):
        self.filename = filename
        self.problems: list[Problem] = []

    def add(self, where: str, message: str) -> None:
        self.problems.append(Problem(self.filename, where, message))

    def raise_if_any(self) -> None:
        if self.problems:
            raise LockError(self.problems)

    # -- shapes ---------------------------------------------------------------------------

    def mapping(self, value: Any, where: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.add(where, f"expected a mapping, found {describe(value)}")
        return None

    def keys(
        self,
        data: Mapping[str, Any],
        where: str,
        required: Iterable[str] = (),
        optional: Iterable[str] = (),
    ) -> bool:
        """Report missing required keys and unknown keys; True when the key set is right."""
        required, optional = tuple(required), tuple(optional)
        ok = True
        for key in required:
            if key not in data:
                self.add(join(where, key), "required field is missing")
                ok = False
        allowed = set(required) | set(optional)
        for key in data:
            if key not in allowed:
                expected = ", ".join(sorted(allowed)) or "no fields"
                self.add(join(where, str(key)), f"unknown field (expected one of: {expected})")
                ok = False
        return ok

    def string(
        self,
        data: Mapping[str, Any],
        key: str,
        where: str,
        *,
        required: bool = True,
        default: str | None = None,
    ) -> str | None:
        value = data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if required and value is None:
                self.add(join(where, key), "expected a non-empty string, found nothing")
            return default
        if not isinstance(value, str) or not value.strip():
            self.add(join(where, key), f"expected a non-empty string, found {describe(value)}")
            return default
        return value

    def pattern(
        self,
        data: Mapping[str, Any],
        key: str,
        where: str,
        regex: re.Pattern[str],
        expected: str,
        *,
        required: bool = True,
    ) -> str | None:
        value = self.string(data, key, where, required=required)
        if value is None:
            return None
        if not regex.fullmatch(value):
            self.add(join(where, key), f"expected {expected}, found {describe(value)}")
            return None
        return value

    def size(
        self, data: Mapping[str, Any], key: str, where: str, *, maximum: int | None = None
    ) -> int | None:
        value = data.get(key, _MISSING)
        if value is _MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.add(
                join(where, key), f"expected a whole number of bytes >= 0, found {describe(value)}"
            )
            return None
        if maximum is not None and value > maximum:
            self.add(
                join(where, key),
                f"expected at most {maximum} bytes ({format_size(maximum)}), found {value}",
            )
            return None
        return value

    def iso_date(self, data: Mapping[str, Any], key: str, where: str) -> str | None:
        value = self.string(data, key, where)
        if value is None:
            return None
        try:
            datetime.fromisoformat(value)
        except ValueError:
            self.add(join(where, key), f"expected an ISO 8601 date, found {describe(value)}")
            return None
        return value

    def string_list(self, data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        value = data.get(key, _MISSING)
        if value is _MISSING or value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.add(join(where, key), f"expected a list of strings, found {describe(value)}")
            return ()
        return tuple(value)

    def document(self, data: Any) -> Mapping[str, Any]:
        """The parsed file as a mapping with a known `version`; a file that is not a mapping
        at all raises at once (nothing else can be checked in it)."""
        mapping = self.mapping(data, "")
        if mapping is None:
            self.raise_if_any()
        assert mapping is not None
        self.version(mapping)
        return mapping

    def version(self, data: Mapping[str, Any]) -> None:
        value = data.get("version", _MISSING)
        if value is _MISSING:
            self.add("version", f"required field is missing (expected {LOCK_VERSION})")
        elif value != LOCK_VERSION or isinstance(value, bool):
            self.add(
                "version", f"unknown lock version: expected {LOCK_VERSION}, found {describe(value)}"
            )


def format_size(n: int) -> str:
    """A byte count in binary units, exact when it is a whole number of them (1 TiB)."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:g} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def check_relative_path(value: str) -> str | None:
    """Why `value` is not a safe path below a root, or None when it is."""
    if "\\" in value:
        return "must use forward slashes"
    path = PurePosixPath(value)
    if path.is_absolute():
        return "must be relative to the ComfyUI root, not absolute"
    if ".." in path.parts:
        return "must stay inside the ComfyUI root (no '..')"
    if not path.parts or path.parts == (".",):
        return "must name a file"
    if path.as_posix() != value:
        # './models/x' and 'models//x' name the same file as 'models/x': one spelling only, so
        # every comparison of paths (duplicates, the model policy, verify's listing) is exact.
        return f"must be written as {path.as_posix()!r} (no './', '//' or trailing '/')"
    return None


def normalise_path(value: str) -> str:
    return PurePosixPath(value).as_posix()


def expand_env(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand `${VAR}` references; a missing variable is an error naming it."""
    from bake.errors import BakeError

    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if not env.get(name):
            raise BakeError(f"environment variable {name} is not set (needed for {value!r})")
        return env[name]

    return ENV_REF.sub(substitute, value)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing: a temporary sibling renamed over the target."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_lock_text(path: Path, what: str) -> str:
    """A lock's text; an unreadable file is a LockError naming it (`what`: "nodes lock")."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LockError(
            [Problem(str(path), "", f"cannot read the {what}: {exc.strerror}")]
        ) from None


def write_if_changed(path: Path, text: str) -> bool:
    """Write a lock canonically; returns False (and touches nothing) when the bytes are equal,
    so a run with nothing new leaves the file, its mtime included, alone."""
    path = Path(path)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    write_text_atomic(path, text)
    return True


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """bake's cache directory (git checkouts, fallback stamps): $BAKE_CACHE_DIR, else
    $XDG_CACHE_HOME/comfy-bake, else ~/.cache/comfy-bake."""
    env = os.environ if environ is None else environ
    if env.get("BAKE_CACHE_DIR"):
        return Path(env["BAKE_CACHE_DIR"])
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "comfy-bake"


def repo_root() -> Path:
    """Where the locks live: $BAKE_ROOT, else the nearest parent of the cwd holding a lock,
    else the directory this package was installed from."""
    env = os.environ.get("BAKE_ROOT")
    if env:
        return Path(env)
    here = Path.cwd()
    for candidate in (here, *here.parents):
        if (candidate / NODES_LOCK).is_file() or (candidate / MODELS_LOCK).is_file():
            return candidate
    return Path(__file__).resolve().parents[2]  # bake/locks/lockfile.py -> the repository


def default_lock(name: str, lock: Path | None = None) -> Path:
    """The lock a command reads: `--lock FILE` when given, else `name` at the repo root."""
    return Path(lock) if lock is not None else repo_root() / name


KIND_NAMES = {
    "nodes": "a nodes lock",
    "models": "a models lock",
    "apt": "an apt lock",
    "requirements": "a Python requirements lock",
}


def kind_by_name(path: Path) -> str | None:
    """'nodes', 'models', 'apt' or 'requirements' as the file's name reads (`nodes.lock.yaml`,
    `my.nodes.lock.yaml`, `nodes.x.yaml`, `requirements.lock`, `*.txt`, ...), or None."""
    name = Path(path).name
    if name.startswith("apt.") and name.endswith((".yaml", ".yml")):
        return "apt"
    if name.endswith(NODES_LOCK) or name.startswith("nodes."):
        return "nodes"
    if name.endswith(MODELS_LOCK) or name.startswith("models."):
        return "models"
    if name.endswith((".lock", ".txt")) and not name.endswith((".yaml", ".yml")):
        return "requirements"
    return None


_REQUIREMENT_LINE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?\s*==|--hash=")


def kind_by_content(text: str) -> str | None:
    """The lock kind the text's first telling line shows (a nodes lock's `comfyui:`, a models
    lock's `models:`, an apt lock's `snapshot:`, a pinned `name==version`), or None."""
    for line in text.splitlines():
        stripped = line.split("#", 1)[0].rstrip()
        if re.match(r"(comfyui|custom_nodes|source_builds)\s*:", stripped):
            return "nodes"
        if re.match(r"models\s*:", stripped):
            return "models"
        if re.match(r"snapshot\s*:", stripped):
            return "apt"
        if _REQUIREMENT_LINE.match(stripped.lstrip()):
            return "requirements"
    return None


def lock_kind(path: Path, text: str | None = None) -> str:
    """'nodes', 'models', 'apt' or 'requirements', from the file's name, else from its
    content (a requirements lock when nothing tells)."""
    by_name = kind_by_name(path)
    if by_name is not None:
        return by_name
    text = Path(path).read_text(encoding="utf-8") if text is None else text
    return kind_by_content(text) or "requirements"
