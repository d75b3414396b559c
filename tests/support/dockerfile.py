"""A small Dockerfile reader for tests that assert what the image recipe does.

It follows the parts of Docker's grammar the recipe uses: parser directives, comments (also
inside continued lines), backslash continuations, JSON and shell forms, instruction flags
(`--mount=...`, `--from=...`, `--link`), `ARG`/`ENV` in both spellings, and stages with their
names and parents. It does not expand variables except where a test asks for it.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_FLAG = re.compile(r"--([a-z-]+)(?:=(\S*))?")


@dataclass
class Instruction:
    keyword: str  # upper case: RUN, COPY, ...
    value: str  # everything after the keyword and its flags, continuations joined
    flags: list[tuple[str, str | None]]  # ("mount", "type=secret,id=hf_token"), ("link", None)
    line: int  # where the instruction starts (1-based)
    stage: Stage | None = None

    def flag_values(self, name: str) -> list[str]:
        return [value or "" for key, value in self.flags if key == name]

    def has_flag(self, name: str) -> bool:
        return any(key == name for key, _ in self.flags)

    def mounts(self) -> list[dict[str, str]]:
        """`--mount=type=secret,id=x,env=Y` as {"type": "secret", "id": "x", "env": "Y"}."""
        result = []
        for spec in self.flag_values("mount"):
            parts = dict(item.partition("=")[::2] for item in spec.split(","))
            result.append(parts)
        return result

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form's arguments, or None for the shell form."""
        text = self.value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                return None
            if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
                return parsed
        return None

    def assignments(self) -> dict[str, str | None]:
        """ARG and ENV: name -> value (None for an ARG without a default)."""
        words = shlex.split(self.value, posix=True)
        if self.keyword == "ENV" and words and "=" not in words[0]:
            # legacy `ENV NAME value with spaces`
            return {words[0]: " ".join(words[1:])}
        result: dict[str, str | None] = {}
        for word in words:
            name, sep, value = word.partition("=")
            result[name] = value if sep else None
        return result


@dataclass
class Stage:
    index: int
    base: str  # the FROM argument as written
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    path: Path
    directives: dict[str, str]
    global_args: dict[str, str | None]
    stages: list[Stage]
    instructions: list[Instruction]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"{self.path.name} has no stage named {name!r}")

    def parent(self, stage: Stage) -> Stage | None:
        """The stage this one is built FROM, when it is a stage of this file."""
        base = self.expand(stage.base)
        for candidate in self.stages[: stage.index]:
            if candidate.name == base:
                return candidate
        return None

    def lineage(self, stage: Stage) -> list[Stage]:
        """The stage and its ancestors within this file, nearest first."""
        chain = [stage]
        while (parent := self.parent(chain[-1])) is not None:
            chain.append(parent)
        return chain

    def root_image(self, stage: Stage) -> str:
        """The external image at the bottom of a stage's lineage."""
        return self.lineage(stage)[-1].base

    def env(self, stage: Stage) -> dict[str, str]:
        """ENV values a stage sees, inherited ones included (values unexpanded)."""
        result: dict[str, str] = {}
        for ancestor in reversed(self.lineage(stage)):
            for instruction in ancestor.of("ENV"):
                result.update({k: v or "" for k, v in instruction.assignments().items()})
        return result

    def expand(self, text: str) -> str:
        """Expand `${NAME}` / `$NAME` from global ARG defaults (what FROM lines may use)."""

        def replace(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            value = self.global_args.get(name)
            return value if value is not None else match.group(0)

        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", replace, text)

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def _split_flags(rest: str) -> tuple[list[tuple[str, str | None]], str]:
    flags: list[tuple[str, str | None]] = []
    text = rest.lstrip()
    while text.startswith("--"):
        match = _FLAG.match(text)
        if match is None:
            break
        flags.append((match.group(1), match.group(2)))
        text = text[match.end() :].lstrip()
    return flags, text


def _logical_lines(text: str) -> tuple[dict[str, str], list[tuple[int, str]]]:
    directives: dict[str, str] = {}
    lines = text.splitlines()
    number = 0
    # Parser directives: `# key=value` lines before anything else.
    while number < len(lines):
        match = re.match(r"#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$", lines[number])
        if not match:
            break
        directives[match.group(1).lower()] = match.group(2)
        number += 1
    escape = directives.get("escape", "\\")

    result: list[tuple[int, str]] = []
    buffer: list[str] = []
    start = 0
    for index in range(number, len(lines)):
        raw = lines[index]
        stripped = raw.strip()
        # Comment lines are dropped, also in the middle of a continued instruction.
        if stripped.startswith("#") or (not stripped and not buffer):
            continue
        if not buffer:
            start = index + 1
        if raw.rstrip().endswith(escape):
            buffer.append(raw.rstrip()[: -len(escape)])
            continue
        buffer.append(raw)
        result.append((start, " ".join(part.strip() for part in buffer if part.strip())))
        buffer = []
    if buffer:
        result.append((start, " ".join(part.strip() for part in buffer if part.strip())))
    return directives, result


def parse(path: Path) -> Dockerfile:
    directives, lines = _logical_lines(path.read_text(encoding="utf-8"))
    stages: list[Stage] = []
    instructions: list[Instruction] = []
    global_args: dict[str, str | None] = {}
    for line, text in lines:
        keyword, _, rest = text.partition(" ")
        keyword = keyword.upper()
        flags, value = _split_flags(rest)
        current = stages[-1] if stages else None
        instruction = Instruction(keyword, value, flags, line, current)
        instructions.append(instruction)
        if keyword == "FROM":
            words = value.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stage = Stage(len(stages), words[0], name, line)
            stage.instructions.append(instruction)
            instruction.stage = stage
            stages.append(stage)
        elif current is None:
            if keyword == "ARG":
                global_args.update(instruction.assignments())
        else:
            current.instructions.append(instruction)
    return Dockerfile(path, directives, global_args, stages, instructions)


_OPERATORS = {"&&", "||", ";", ";;", "|", "&", "(", ")"}


def shell_commands(command: str) -> list[list[str]]:
    """A shell command line split into its simple commands (at `&&`, `||`, `;`, `|`, ...).

    Words are tokenised as the shell would quote them; `$VAR` words stay as written.
    """
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for word in lexer:
        if word in _OPERATORS:
            commands.append([])
        else:
            commands[-1].append(word)
    return [words for words in commands if words]


def bake_commands(command: str) -> list[list[str]]:
    """The arguments of every `python -m bake ...` in a shell command line, in order."""
    found = []
    for words in shell_commands(command):
        for start in range(len(words)):
            if words[start : start + 3] == ["python", "-m", "bake"]:
                found.append(words[start + 3 :])
                break
    return found


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated paths (Go filepath.Match plus
    `**`, as Docker's pattern matcher reads it)."""
    out = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
            continue
        if pattern.startswith("**", index):
            out += ".*"
            index += 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        index += 1
    return re.compile(out + "$")


def build_context(paths: list[str], dockerignore: Path) -> list[str]:
    """The paths (relative, slash-separated) Docker would send, given a .dockerignore.

    Like Docker: the last matching pattern wins, a `!` pattern re-includes, and a pattern
    that matches a parent directory matches everything below it.
    """
    rules = []
    for raw in dockerignore.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = pattern.strip("/")
        rules.append((negate, _ignore_regex(pattern)))
    kept = []
    for path in paths:
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for negate, regex in rules:
            if any(regex.match(prefix) for prefix in prefixes):
                excluded = not negate
        if not excluded:
            kept.append(path)
    return kept
