"""requirements.lock: the image's Python environment, in pip-tools / `uv pip compile` format.

Every requirement is `name==version` with one or more `--hash=sha256:...`. Reading is all this
module does: the file itself is written by uv (see `bake.python.compile`).

Option lines are what `scripts/update-locks.py --python` writes and nothing else, since every
installer obeys them (`pip install -r`, `uv pip sync`):

- `--index-url URL`, once: requirements.in's index, which uv copies (`--emit-index-url`);
- `--extra-index-url URL`, once, only when URL is the torch index the lock's header records
  (`#    torch-index: URL`, written with `--torch-index`);
- `--only-binary VALUE` and `--no-binary VALUE` (`:all:`, `:none:` or names): requirements.in's
  build options, which uv copies (`--emit-build-options`).

Index URLs are https (or file:// for a local index) without credentials or `${...}` (pip
expands environment variables in requirement files). Any other option (`-i`, `-f`,
`--find-links`, `--trusted-host`, `--no-index`, `-r`, `-c`, `-e`, a second index, an extra index
the header does not record, the `--opt=value` form) is refused, naming its line: an index the
project does not use is a place for a package to come from that nobody reviewed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from bake.errors import LockError, Problem
from bake.locks.lockfile import read_lock_text

_HASH = re.compile(r"--hash[= ](sha256):([0-9a-f]{64})$")
_INDEX_OPTIONS = ("--index-url", "--extra-index-url")
_BUILD_OPTIONS = ("--only-binary", "--no-binary")
_BUILD_VALUE = re.compile(r"(:all:|:none:|[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*)$")
# The header line `stamp` (bake.python.compile) writes for the torch index.
_TORCH_INDEX = re.compile(r"#\s+torch-index: (\S+)\s*$")
_NO_TORCH_INDEX = "none"


@dataclass(frozen=True)
class PinnedRequirement:
    name: str  # canonical (PEP 503) name
    version: str
    hashes: tuple[str, ...]  # "sha256:<hex>"
    marker: str | None = None
    line: int = 0

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class RequirementsLock:
    pins: dict[str, PinnedRequirement]
    options: tuple[str, ...] = ()

    def entry_dicts(self) -> dict[str, dict[str, object]]:
        return {
            f"requirements.{name}": {"version": pin.version, "hashes": sorted(pin.hashes)}
            for name, pin in sorted(self.pins.items())
        }


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations; drop comments. Yields (first line number, text)."""
    result: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        if not buffer:
            start = number
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            result.append((start, " ".join(buffer.split())))
        buffer = ""
    if buffer.strip():
        result.append((start, " ".join(buffer.split())))
    return result


def recorded_torch_index(text: str) -> str | None:
    """The torch index the lock's header records (None for `none` or no header); only the
    comment lines before the first option or requirement count."""
    for raw in text.splitlines():
        if raw.strip() and not raw.lstrip().startswith("#"):
            break
        if match := _TORCH_INDEX.match(raw):
            value = match.group(1)
            return None if value == _NO_TORCH_INDEX else value
    return None


def _index_url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "file"):
        return "an index URL must be https:// (or file:// for a local index)"
    if "@" in parts.netloc or "$" in url:
        return "an index URL must carry no credentials and no ${...} variable"
    return None


def _option_problem(
    line: str, torch_index: str | None, seen: dict[str, int], number: int
) -> str | None:
    """Why an option line is not one `update-locks --python` writes (None when it is)."""
    words = line.split()
    option = words[0]
    refused = (
        f"{line!r}: an option the project's compile never writes; requirements.lock may "
        "name requirements.in's --index-url, the torch index its header records "
        "(--extra-index-url) and --only-binary/--no-binary, nothing else"
    )
    if option not in (*_INDEX_OPTIONS, *_BUILD_OPTIONS):
        return f"unsupported option line {refused}"
    if len(words) != 2:
        return f"unsupported option line {refused}"
    value = words[1]
    if option in _BUILD_OPTIONS:
        return None if _BUILD_VALUE.match(value) else f"unsupported option line {refused}"
    if option in seen:
        return (
            f"{line!r}: a second {option} (the first is on line {seen[option]}); the lock "
            f"names one {option}"
        )
    seen[option] = number
    if why := _index_url_problem(value):
        return f"{line!r}: {why}"
    if option == "--extra-index-url" and value != torch_index:
        recorded = torch_index or _NO_TORCH_INDEX
        return (
            f"{line!r}: an extra index the lock's header does not record (torch-index: "
            f"{recorded}); the only extra index the project uses is the torch index, set with "
            "scripts/update-locks.py --python --torch-index URL"
        )
    return None


def parse_requirements_lock(text: str, filename: str = "requirements.lock") -> RequirementsLock:
    problems: list[Problem] = []
    pins: dict[str, PinnedRequirement] = {}
    options: list[str] = []

    def bad(number: int, message: str) -> None:
        problems.append(Problem(filename, f"line {number}", message))

    torch_index = recorded_torch_index(text)
    seen: dict[str, int] = {}
    for number, line in _logical_lines(text):
        if line.startswith("-"):
            if why := _option_problem(line, torch_index, seen, number):
                bad(number, why)
            else:
                options.append(line)
            continue
        spec, *hash_parts = line.split(" --hash")
        hash_parts = ["--hash" + part.strip() for part in hash_parts]
        try:
            requirement = Requirement(spec.strip())
        except InvalidRequirement as exc:
            bad(number, f"not a requirement: {spec.strip()!r} ({exc})")
            continue
        specifiers = list(requirement.specifier)
        if (
            requirement.url
            or len(specifiers) != 1
            or specifiers[0].operator != "=="
            or "*" in specifiers[0].version
        ):
            bad(
                number,
                f"{requirement.name}: expected an exact pin 'name==version', found "
                f"{spec.strip()!r}",
            )
            continue
        hashes = []
        for part in hash_parts:
            match = _HASH.match(part.replace("--hash ", "--hash="))
            if not match:
                bad(number, f"{requirement.name}: expected --hash=sha256:<64 hex>, found {part!r}")
            else:
                hashes.append(f"{match.group(1)}:{match.group(2)}")
        if not hash_parts:
            bad(
                number,
                f"{requirement.name}=={specifiers[0].version}: no --hash; every line "
                "of the lock must carry the hashes of its files",
            )
            continue
        name = canonicalize_name(requirement.name)
        if name in pins:
            bad(number, f"{name}: pinned twice (first on line {pins[name].line})")
            continue
        pins[name] = PinnedRequirement(
            name,
            specifiers[0].version,
            tuple(hashes),
            str(requirement.marker) if requirement.marker else None,
            number,
        )
    if problems:
        raise LockError(problems)
    return RequirementsLock(pins, tuple(options))


def load_requirements_lock(path: Path) -> RequirementsLock:
    return parse_requirements_lock(read_lock_text(path, "requirements lock"), str(path))
