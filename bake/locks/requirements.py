"""requirements.lock: the image's Python environment, in pip-tools / `uv pip compile` format.

Every requirement is `name==version` with one or more `--hash=sha256:...`; option lines
(`--index-url`, `--extra-index-url`, `--find-links`) are kept. Reading is all this module does:
the file itself is written by uv (see `bake.python.compile`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from bake.errors import LockError, Problem
from bake.locks.lockfile import read_lock_text

_HASH = re.compile(r"--hash[= ](sha256):([0-9a-f]{64})$")
_OPTIONS = (
    "--index-url",
    "-i",
    "--extra-index-url",
    "--find-links",
    "-f",
    "--no-index",
    "--only-binary",
    "--no-binary",
)


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


def parse_requirements_lock(text: str, filename: str = "requirements.lock") -> RequirementsLock:
    problems: list[Problem] = []
    pins: dict[str, PinnedRequirement] = {}
    options: list[str] = []

    def bad(number: int, message: str) -> None:
        problems.append(Problem(filename, f"line {number}", message))

    for number, line in _logical_lines(text):
        if line.startswith("-"):
            if line.split()[0].split("=")[0] in _OPTIONS:
                options.append(line)
            else:
                bad(
                    number,
                    f"unsupported option line {line!r} (expected a pinned requirement "
                    "or an index option)",
                )
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
