"""The Dockerfile's outside inputs, each pinned by digest: the frontend that parses it and every
image it builds from or copies out of.

Three kinds of line fetch something from a registry: the `# syntax=` parser directive (the
BuildKit frontend, the program that reads the rest of the file and decides what every other
line means), `FROM <image>`, and `COPY --from=<image>` / `RUN --mount=...,from=<image>` when
the name is not a stage of the file. A tag can be moved to other bytes at any time by whoever
controls it, so each must carry `@sha256:<digest>`. A `FROM ${ARG}` or `--from=${ARG}` is
expanded with the defaults the file gives; a value that does not resolve (an ARG without a
default, a syntax this reader does not expand) is refused, since it would be whatever the
builder passes. `bake check` runs this (`check_dockerfile`), and `bake provenance` records the
frontend and every image with its digest (`inputs`).

The reader follows Docker's grammar as far as these lines need it: parser directives at the
top (`# key=value`, the first other line ends them, a directive given twice is an error),
comment and empty lines (also inside continued lines), the escape character (`# escape=`),
heredocs (`RUN <<EOF ... EOF`, whose bodies are not instructions), instruction flags, global
`ARG`s (before the first `FROM`, the only ones `FROM` sees) and a stage's own `ARG`s, and stage
names (compared without case, as BuildKit does).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bake.errors import BakeError

DIGEST_REF = re.compile(r"(?P<ref>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})")
SYNTAX_EXAMPLE = "# syntax=docker/dockerfile:1.x.y@sha256:<digest>"
_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*")
_HEREDOC = re.compile(r"<<(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
_VARIABLE = re.compile(
    r"\$(?:(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-+])(?P<word>[^}$]*))?\})"
)


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts, 1-based
    keyword: str  # upper case
    flags: tuple[tuple[str, str | None], ...]  # ("from", "sage"), ("link", None)
    args: str  # the rest, continuations joined


@dataclass(frozen=True)
class ImageUse:
    """One place the Dockerfile names an image: a FROM, a COPY --from, a RUN --mount from."""

    line: int
    instruction: str  # "FROM", "COPY --from", "RUN --mount from"
    stage: str  # the stage the line belongs to (its name, else its index)
    image: str  # the reference without its digest
    digest: str  # sha256:<hex>

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "instruction": self.instruction, "stage": self.stage}


@dataclass
class DockerfileInputs:
    frontend: dict[str, str] | None = None  # {"image": ..., "digest": ...}
    images: list[ImageUse] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "line N: ..."

    def base_images(self) -> list[dict[str, str]]:
        """Every image a FROM builds on, once each, sorted."""
        found = {(u.image, u.digest) for u in self.images if u.instruction == "FROM"}
        return [{"image": image, "digest": digest} for image, digest in sorted(found)]

    def record(self) -> dict[str, Any]:
        """The frontend and every image with its digest and where the file uses it."""
        uses: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for use in self.images:
            uses.setdefault((use.image, use.digest), []).append(use.to_dict())
        return {
            "frontend": self.frontend,
            "images": [
                {"image": image, "digest": digest, "uses": uses[(image, digest)]}
                for image, digest in sorted(uses)
            ],
        }


def _directives(lines: list[str]) -> tuple[dict[str, tuple[int, str]], list[str], int]:
    """The parser directives at the top: key -> (line, value); problems; where they end."""
    found: dict[str, tuple[int, str]] = {}
    problems: list[str] = []
    index = 0
    while index < len(lines):
        match = _DIRECTIVE.fullmatch(lines[index])
        if match is None:
            break
        key = match.group(1).lower()
        if key in found:
            problems.append(
                f"line {index + 1}: a second `{key}` parser directive (the first is on line "
                f"{found[key][0]}); BuildKit refuses the file"
            )
        else:
            found[key] = (index + 1, match.group(2))
        index += 1
    return found, problems, index


def _split_flags(text: str) -> tuple[tuple[tuple[str, str | None], ...], str]:
    flags: list[tuple[str, str | None]] = []
    rest = text.lstrip()
    while rest.startswith("--"):
        word, _, after = rest.partition(" ")
        name, sep, value = word[2:].partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        flags.append((name.lower(), value if sep else None))
        rest = after.lstrip()
    return tuple(flags), rest


def instructions(text: str) -> tuple[dict[str, tuple[int, str]], list[Instruction], list[str]]:
    """The directives, the instructions (continuations joined, comments and heredoc bodies
    left out) and the problems found on the way."""
    lines = text.splitlines()
    directives, problems, index = _directives(lines)
    escape = directives.get("escape", (0, "\\"))[1]
    found: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    while index < len(lines):
        raw = lines[index]
        index += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not buffer:
            start = index
        if raw.rstrip().endswith(escape):
            buffer.append(raw.rstrip()[: -len(escape)].strip())
            continue
        buffer.append(stripped)
        logical = " ".join(part for part in buffer if part)
        buffer = []
        keyword, _, rest = logical.partition(" ")
        flags, args = _split_flags(rest)
        found.append(Instruction(start, keyword.upper(), flags, args))
        if keyword.upper() in ("RUN", "COPY", "ADD"):
            for dash, _, word in _HEREDOC.findall(args):
                while index < len(lines):
                    body = lines[index]
                    index += 1
                    if (body.lstrip("\t") if dash else body) == word:
                        break
    if buffer:
        logical = " ".join(part for part in buffer if part)
        keyword, _, rest = logical.partition(" ")
        flags, args = _split_flags(rest)
        found.append(Instruction(start, keyword.upper(), flags, args))
    return directives, found, problems


def expand(text: str, values: dict[str, str | None]) -> str | None:
    """`text` with `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME-word}`, `${NAME:+word}` and
    `${NAME+word}` expanded from `values` (None: declared without a value); None when a
    variable has no value or a form is not understood: its value would be the builder's."""
    if "\\$" in text:
        return None
    failed = False

    def replace(match: re.Match[str]) -> str:
        nonlocal failed
        name = match["bare"] or match["name"]
        value = values.get(name)
        op, word = match["op"], match["word"] or ""
        if op in (":-", "-"):
            empty = value is None or (op == ":-" and value == "")
            return word if empty else str(value)
        if op in (":+", "+"):
            present = value is not None and (op == "+" or value != "")
            return word if present else ""
        if value is None:
            failed = True
            return ""
        return value

    result = _VARIABLE.sub(replace, text)
    if failed or "$" in result:
        return None
    return result


def _assignments(args: str) -> dict[str, str | None]:
    try:
        words = shlex.split(args, posix=True)
    except ValueError:
        words = args.split()
    result: dict[str, str | None] = {}
    for word in words:
        name, sep, value = word.partition("=")
        result[name] = value if sep else None
    return result


def inputs(text: str) -> DockerfileInputs:
    """The frontend and every image the Dockerfile names, and each problem with them."""
    directives, found, problems = instructions(text)
    result = DockerfileInputs(problems=problems)
    if "syntax" not in directives:
        result.problems.append(
            "line 1: no `# syntax=` parser directive: the build would use whichever Dockerfile "
            f"frontend the builder has built in; name one by digest ({SYNTAX_EXAMPLE})"
        )
    else:
        line, value = directives["syntax"]
        pinned = DIGEST_REF.fullmatch(value)
        if pinned is None:
            result.problems.append(
                f"line {line}: the frontend `{value}` is not pinned by digest: the program that "
                f"reads this file could change under the same tag; write {SYNTAX_EXAMPLE}"
            )
        else:
            result.frontend = {"image": pinned["ref"], "digest": pinned["digest"]}

    global_args: dict[str, str | None] = {}
    stages: list[str | None] = []  # each stage's name (lower case), by index
    stage_args: dict[str, str | None] = {}
    for instruction in found:
        if instruction.keyword == "ARG":
            declared = _assignments(instruction.args)
            if not stages:
                global_args.update(declared)
            else:
                for name, value in declared.items():
                    stage_args[name] = value if value is not None else global_args.get(name)
            continue
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            written = words[0] if words else ""
            name = words[2].lower() if len(words) >= 3 and words[1].upper() == "AS" else None
            label = name or str(len(stages))
            value = expand(written, global_args)
            _judge(result, instruction, "FROM", label, written, value, stages, allow_scratch=True)
            stages.append(name)
            stage_args = {}
            continue
        if not stages:
            continue
        label = stages[-1] or str(len(stages) - 1)
        if instruction.keyword == "COPY":
            for key, flag in instruction.flags:
                if key == "from" and flag is not None:
                    value = expand(flag, stage_args)
                    _judge(result, instruction, "COPY --from", label, flag, value, stages[:-1])
        if instruction.keyword == "RUN":
            for key, flag in instruction.flags:
                if key != "mount" or flag is None:
                    continue
                for item in flag.split(","):
                    option, _, source = item.partition("=")
                    if option.strip().lower() == "from":
                        value = expand(source, stage_args)
                        where = "RUN --mount from"
                        _judge(result, instruction, where, label, source, value, stages[:-1])
    return result


def _judge(
    result: DockerfileInputs,
    instruction: Instruction,
    what: str,
    stage: str,
    written: str,
    value: str | None,
    earlier: list[str | None],
    *,
    allow_scratch: bool = False,
) -> None:
    """Record the image `written` names, or the problem with it; a stage above it is fine."""
    where = f"line {instruction.line}: {what} {written}"
    if value is None:
        result.problems.append(
            f"{where}: does not resolve to an image pinned by digest or a stage above it (a "
            "variable without a default, or a form this check does not expand): its value "
            "would be whatever the builder passes; give the ARG a default that names a stage "
            "or an image@sha256:<digest>"
        )
        return
    shown = value if value == written else f"{written} (= {value})"
    where = f"line {instruction.line}: {what} {shown}"
    if value.lower() in {name for name in earlier if name}:
        return
    if what != "FROM" and value.isdigit():
        if int(value) < len(earlier):
            return
        result.problems.append(f"{where}: names no stage above it")
        return
    if allow_scratch and value.lower() == "scratch":
        return
    pinned = DIGEST_REF.fullmatch(value)
    if pinned is None:
        result.problems.append(
            f"{where}: is not a stage above it, so an image, and it is not pinned by digest; "
            f"write it as {value}@sha256:<digest> so every build gets the same bytes"
        )
        return
    result.images.append(ImageUse(instruction.line, what, stage, pinned["ref"], pinned["digest"]))


def check_dockerfile(path: Path, shown: str | None = None) -> list[str]:
    """One error line per unpinned frontend or image of the Dockerfile at `path`."""
    shown = shown or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return [f"{shown}: cannot read: {exc.strerror}"]
    return [f"{shown}: {problem}" for problem in inputs(text).problems]


def pinned_inputs(text: str, shown: str = "Dockerfile") -> DockerfileInputs:
    """`inputs(text)`, raising a BakeError with every problem when there is one."""
    found = inputs(text)
    if found.problems:
        raise BakeError("\n".join(f"{shown}: {problem}" for problem in found.problems))
    return found
