"""requirements.in + the nodes' recorded requirements -> requirements.lock, with uv.

`update_python` is the `--python` part of `scripts/update-locks.py`. It compiles, with
`uv pip compile --generate-hashes` for CPython 3.12 on x86_64-manylinux_2_28:

- requirements.in (the image's top-level intents, and the index the lock is resolved from);
- the `locked.requirements` of ComfyUI and of every custom node in nodes.lock.yaml, each
  written to a file named after its entry (`nodes.lock.yaml/custom_nodes.<name>`), so uv's
  `# via` notes say which node asked for what;
- requirements-overrides.txt beside requirements.in, as uv overrides (conflicts settled on
  purpose: one OpenCV, for one).

No git and no checkout are involved: the node lines come from the nodes lock.

Staleness is decided offline. The lock's header records a digest of each input (the
requirement lines of requirements.in, of the overrides and of each node entry; the torch index;
the target) and a digest of the lock's own body. `--check` recomputes them and names each one
that differs, then re-validates that every requirement of every input is still satisfied by the
pinned versions. Only comments and blank lines of the inputs can change without making the
lock stale.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from bake.errors import BakeError, PythonEnvError
from bake.locks.lockfile import NODES_LOCK, REQUIREMENTS_LOCK, write_text_atomic
from bake.locks.nodes import load_nodes_lock, requirement_lines
from bake.locks.requirements import RequirementsLock, parse_requirements_lock

REQUIREMENTS_IN = "requirements.in"
OVERRIDES = "requirements-overrides.txt"
COMMAND = "scripts/update-locks.py --python"

TARGET_PYTHON = "3.12"
TARGET_PLATFORM = "x86_64-manylinux_2_28"
TARGET = f"cpython-{TARGET_PYTHON} {TARGET_PLATFORM}"

# PEP 508 marker values of the image's interpreter, so markers in the inputs are judged the
# way uv judged them for --python-version 3.12 --python-platform x86_64-manylinux_2_28.
TARGET_MARKERS = {
    "implementation_name": "cpython",
    "implementation_version": f"{TARGET_PYTHON}.0",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": f"{TARGET_PYTHON}.0",
    "python_version": TARGET_PYTHON,
    "sys_platform": "linux",
    "extra": "",
}

# Where node lines are written for uv: the folder's name makes `# via` read as
# "-r nodes.lock.yaml/custom_nodes.ComfyUI-KJNodes", the entry's address in the nodes lock.
NODES_FOLDER = NODES_LOCK

NO_TORCH_INDEX = "none"
_BLOCK_TITLE = "# Inputs (scripts/update-locks.py --python --check compares these digests):"
_BLOCK_LINE = "#    "


class StaleLockError(PythonEnvError):
    """requirements.lock no longer matches its inputs."""


class UvError(PythonEnvError):
    """uv could not be found, or `uv pip compile` failed."""


@dataclass(frozen=True)
class Inputs:
    """Everything requirements.lock is compiled from, as text (I/O happens before this)."""

    requirements_in: str
    overrides: str | None = None
    # qualified entry name in nodes.lock.yaml ("comfyui", "custom_nodes.X") -> its lines
    nodes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    torch_index: str | None = None
    requirements_in_name: str = REQUIREMENTS_IN
    overrides_name: str = OVERRIDES


# -- pure: records, header block, validation ---------------------------------------------


def _digest_lines(lines: Iterable[str]) -> str:
    text = "".join(f"{line}\n" for line in lines)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _digest_text(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def input_records(inputs: Inputs) -> dict[str, str]:
    """label -> recorded value, in the order the header lists them."""
    records = {
        "target": TARGET,
        "torch-index": inputs.torch_index or NO_TORCH_INDEX,
        inputs.requirements_in_name: _digest_lines(requirement_lines(inputs.requirements_in)),
    }
    if inputs.overrides is not None:
        records[inputs.overrides_name] = _digest_lines(requirement_lines(inputs.overrides))
    for name in inputs.nodes:
        records[f"{NODES_LOCK} {name}"] = _digest_lines(inputs.nodes[name])
    return records


def order_build_options(uv_output: str) -> str:
    """Put `--only-binary` lines before `--no-binary` lines.

    pip applies option lines in file order, and `--only-binary :all:` clears every package
    named by an earlier `--no-binary`; uv writes `--no-binary` first, which would make pip
    refuse pixeloe's sdist. In this order both pip and uv keep the exception."""
    lines = uv_output.splitlines(keepends=True)
    where = [i for i, line in enumerate(lines) if line.startswith(("--only-binary", "--no-binary"))]
    ordered = sorted(
        (lines[i] for i in where), key=lambda line: not line.startswith("--only-binary")
    )
    for index, line in zip(where, ordered, strict=True):
        lines[index] = line
    return "".join(lines)


def stamp(uv_output: str, records: Mapping[str, str]) -> str:
    """uv's output with the inputs block inserted after uv's own header comment."""
    lines = uv_output.splitlines(keepends=True)
    split = 0
    while split < len(lines) and lines[split].startswith("#"):
        split += 1
    body = "".join(lines[split:])
    block = [_BLOCK_TITLE]
    block += [f"{_BLOCK_LINE}{label}: {value}" for label, value in records.items()]
    block.append(f"{_BLOCK_LINE}pins: {_digest_text(body)}")
    return "".join(lines[:split]) + "\n".join(block) + "\n" + body


@dataclass(frozen=True)
class Stamp:
    records: dict[str, str]
    pins: str | None  # the recorded digest of the body
    body: str


def read_stamp(text: str) -> Stamp | None:
    """The inputs block of a lock written by `stamp`, or None when it has none."""
    lines = text.splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.rstrip("\n") == _BLOCK_TITLE)
    except StopIteration:
        return None
    records: dict[str, str] = {}
    end = start + 1
    while end < len(lines) and lines[end].startswith(_BLOCK_LINE):
        label, _, value = lines[end][len(_BLOCK_LINE) :].rstrip("\n").partition(": ")
        records[label] = value
        end += 1
    pins = records.pop("pins", None)
    return Stamp(records, pins, "".join(lines[end:]))


def recorded_torch_index(lock_text: str) -> str | None:
    found = read_stamp(lock_text)
    value = found.records.get("torch-index") if found else None
    return None if value in (None, NO_TORCH_INDEX) else value


def stale_reasons(lock_text: str, inputs: Inputs) -> list[str]:
    """Why the lock's recorded inputs differ from `inputs` (empty when they match)."""
    found = read_stamp(lock_text)
    if found is None:
        return ["it has no inputs record (it was not written by scripts/update-locks.py)"]
    reasons = []
    if found.pins != _digest_text(found.body):
        reasons.append("its pins were edited after it was compiled")
    now = input_records(inputs)
    for label, value in now.items():
        old = found.records.get(label)
        if old is None:
            reasons.append(f"{label}: new input, not in the lock's inputs")
        elif old != value:
            if label in ("target", "torch-index"):
                reasons.append(f"{label}: compiled for {old}, now {value}")
            elif label.startswith(NODES_LOCK):
                reasons.append(f"{label}: its recorded requirements changed")
            else:
                reasons.append(f"{label}: its requirement lines changed")
    for label in found.records:
        if label not in now:
            reasons.append(f"{label}: input removed since the lock was compiled")
    return reasons


def _requirement(line: str) -> Requirement | None:
    """The requirement on a line, or None for an option line (`--index-url ...`)."""
    if line.startswith("-"):
        return None
    return Requirement(line)


def _applies(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(TARGET_MARKERS)


def unsatisfied(lock: RequirementsLock, inputs: Inputs) -> list[str]:
    """Every input requirement that the pinned versions do not satisfy, one line each.

    An override replaces every requirement on its name (as uv applies it); an override whose
    marker never matches the target means the name must not be pinned at all.
    """
    overrides: dict[str, Requirement] = {}
    for line in requirement_lines(inputs.overrides or ""):
        try:
            req = _requirement(line)
        except InvalidRequirement:
            continue  # uv refuses it when it compiles; nothing to apply here
        if req is not None:
            overrides[canonicalize_name(req.name)] = req
    problems = []
    for name, req in overrides.items():
        if not _applies(req) and name in lock.pins:
            problems.append(
                f"{name}=={lock.pins[name].version} is pinned, but "
                f"{inputs.overrides_name} drops it ('{req}')"
            )
    sources = [(inputs.requirements_in_name, requirement_lines(inputs.requirements_in))]
    sources += [(f"{NODES_LOCK} {name}", lines) for name, lines in inputs.nodes.items()]
    for label, lines in sources:
        for line in lines:
            try:
                req = _requirement(line)
            except InvalidRequirement as exc:
                problems.append(
                    f"{label}: '{line}' is not a requirement uv and pip agree on ({exc})"
                )
                continue
            if req is None or not _applies(req):
                continue
            name = canonicalize_name(req.name)
            rule, why = req, f"{label} asks for '{line}'"
            if name in overrides:
                rule = overrides[name]
                why = f"{label} asks for '{line}', overridden by '{rule}'"
                if not _applies(rule):
                    continue
            pin = lock.pins.get(name)
            if pin is None:
                problems.append(f"{name} is not pinned, but {why}")
            elif not rule.specifier.contains(pin.version, prereleases=True):
                problems.append(f"{name}=={pin.version} is pinned, but {why}")
    return problems


def missing_project_dependencies(pyproject_text: str, requirements_in: str) -> list[str]:
    """pyproject.toml dependencies that requirements.in does not name with the same bounds.

    The image installs our own project with --no-deps, so the lock must carry its run-time
    dependencies through requirements.in.
    """
    declared = tomllib.loads(pyproject_text).get("project", {}).get("dependencies", [])
    intents: dict[str, Requirement] = {}
    for line in requirement_lines(requirements_in):
        try:
            req = _requirement(line)
        except InvalidRequirement:
            continue  # reported by `unsatisfied`, and by uv when it compiles
        if req is not None:
            intents[canonicalize_name(req.name)] = req
    problems = []
    for line in declared:
        want = Requirement(line)
        have = intents.get(canonicalize_name(want.name))
        if have is None:
            problems.append(
                f"pyproject.toml depends on '{want}', which requirements.in does not "
                f"name; add '{want}' to requirements.in"
            )
        elif want.specifier and set(want.specifier) - set(have.specifier):
            problems.append(
                f"pyproject.toml depends on '{want}', requirements.in has '{have}'; "
                f"give requirements.in the same bounds"
            )
    return problems


def _check_node_lines(nodes: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Node lines must be plain requirements by name: no options (a node must not add an
    index) and no URLs (nothing outside the index and its hashes)."""
    problems = []
    for name, lines in nodes.items():
        for line in lines:
            why = None
            if line.startswith("-"):
                why = "options are not accepted from a node"
            else:
                try:
                    if Requirement(line).url:
                        why = "direct URLs are not accepted from a node"
                except InvalidRequirement as exc:
                    why = f"not a requirement ({exc})"
            if why:
                problems.append(
                    f"{NODES_LOCK}: {name}.locked.requirements: '{line}': {why}; "
                    f"settle it in {OVERRIDES} or requirements.in instead"
                )
    return problems


def who_asks(inputs: Inputs, message: str) -> list[str]:
    """Each input line whose package `message` names, as `<input>: <line>`: uv's conflict
    report says which versions clash, this says which node or intent asked for them."""
    words = {canonicalize_name(w) for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9._-]*", message)}
    sources = [
        (inputs.requirements_in_name, requirement_lines(inputs.requirements_in)),
        (inputs.overrides_name, requirement_lines(inputs.overrides or "")),
    ]
    sources += [(f"{NODES_LOCK} {name}", lines) for name, lines in inputs.nodes.items()]
    found = []
    for label, lines in sources:
        for line in lines:
            try:
                req = _requirement(line)
            except InvalidRequirement:
                continue
            if req is not None and canonicalize_name(req.name) in words:
                found.append(f"{label}: {line}")
    return found


def version_diff(old: RequirementsLock | None, new: RequirementsLock) -> list[str]:
    """`+ name==version`, `- name==version` and `~ name: old -> new`, by name."""
    before = old.pins if old else {}
    lines = []
    for name in sorted(set(before) | set(new.pins)):
        if name not in before:
            lines.append(f"+ {new.pins[name]}")
        elif name not in new.pins:
            lines.append(f"- {before[name]}")
        elif before[name].version != new.pins[name].version:
            lines.append(f"~ {name}: {before[name].version} -> {new.pins[name].version}")
    return lines


# -- I/O: reading inputs, running uv -------------------------------------------------------


def load_inputs(requirements_in: Path, nodes_lock: Path, torch_index: str | None) -> Inputs:
    requirements_in = Path(requirements_in)
    try:
        text = requirements_in.read_text(encoding="utf-8")
    except OSError as exc:
        raise PythonEnvError(
            f"{requirements_in}: cannot read it ({exc.strerror}); it holds the "
            "image's top-level Python requirements"
        ) from None
    overrides_path = requirements_in.parent / OVERRIDES
    overrides = overrides_path.read_text(encoding="utf-8") if overrides_path.is_file() else None
    lock = load_nodes_lock(nodes_lock)
    nodes: dict[str, tuple[str, ...]] = {}
    unpinned = []
    for entry in lock.entries():
        if entry.kind == "source_build":
            continue  # built from source in the image, not resolved from an index
        if entry.locked is None:
            unpinned.append(entry.qualified)
            continue
        nodes[entry.qualified] = entry.locked.requirements
    if unpinned:
        raise PythonEnvError(
            f"{NODES_LOCK}: {', '.join(unpinned)} not locked yet, so their requirements are "
            "unknown; run scripts/update-locks.py --nodes first"
        )
    problems = _check_node_lines(nodes)
    if problems:
        raise PythonEnvError("\n".join(problems))
    return Inputs(text, overrides, nodes, torch_index, requirements_in.name, OVERRIDES)


def find_uv() -> str:
    """uv from PATH, else beside this interpreter (a venv's bin/), else the `uv` package."""
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if found:
        return found
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found]

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        raise UvError(
            "uv not found on PATH nor beside this Python; install it "
            "(https://docs.astral.sh/uv/) to compile requirements.lock"
        ) from None


def compile_command(torch_index: str | None) -> str:
    return f"{COMMAND} --torch-index {torch_index}" if torch_index else COMMAND


def uv_compile(inputs: Inputs, previous: str | None = None, *, uv: str | None = None) -> str:
    """Run `uv pip compile` on `inputs` in a scratch folder and return its output, stamped.

    The scratch folder holds copies named as the inputs are named, so uv's header and `# via`
    notes carry short relative names and never a path of this machine. A previous lock is
    given to uv as the output file, so versions that still fit are kept (pip-tools' and uv's
    convention: only what must move, moves).
    """
    uv = uv or find_uv()
    with tempfile.TemporaryDirectory(prefix="bake-pylock-") as scratch:
        work = Path(scratch)
        (work / inputs.requirements_in_name).write_text(inputs.requirements_in, encoding="utf-8")
        args = [
            uv,
            "pip",
            "compile",
            "--no-config",
            "--quiet",
            "--no-progress",
            "--python-version",
            TARGET_PYTHON,
            "--python-platform",
            TARGET_PLATFORM,
            "--generate-hashes",
            "--emit-index-url",
            "--emit-build-options",
            "--output-file",
            REQUIREMENTS_LOCK,
            inputs.requirements_in_name,
        ]
        if previous is not None:
            (work / REQUIREMENTS_LOCK).write_text(previous, encoding="utf-8")
        (work / NODES_FOLDER).mkdir()
        for name, lines in inputs.nodes.items():
            if lines:
                relative = f"{NODES_FOLDER}/{name}"
                (work / relative).write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
                args.append(relative)
        if inputs.overrides is not None:
            (work / inputs.overrides_name).write_text(inputs.overrides, encoding="utf-8")
            args += ["--override", inputs.overrides_name]
        if inputs.torch_index:
            args += ["--extra-index-url", inputs.torch_index]
        env = {**os.environ, "UV_CUSTOM_COMPILE_COMMAND": compile_command(inputs.torch_index)}
        result = subprocess.run(
            args, cwd=work, env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().replace(scratch + "/", "")
            message = f"uv pip compile failed for {TARGET} (exit {result.returncode}):\n{detail}"
            if askers := who_asks(inputs, detail):
                message += "\nthe inputs that ask for the packages named above:\n" + "\n".join(
                    f"  {line}" for line in askers
                )
            raise UvError(message)
        output = (work / REQUIREMENTS_LOCK).read_text(encoding="utf-8")
    return stamp(order_build_options(output), input_records(inputs))


# -- the command -------------------------------------------------------------------------


def update_python(
    lock_path: Path,
    *,
    nodes_lock: Path | None = None,
    requirements_in: Path | None = None,
    check: bool = False,
    torch_index: str | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """Compile requirements.lock (or, with `check`, prove it fresh). 0 ok, 1 stale or failed.

    `torch_index`: None keeps the index the lock was compiled with; a URL resolves torch (and
    whatever that index carries) from it first; "pypi" or "none" goes back to requirements.in's
    index alone.
    """
    lock_path = Path(lock_path)
    # The inputs live beside the lock unless given (the repo root, for the real one).
    requirements_in = Path(requirements_in or lock_path.parent / REQUIREMENTS_IN)
    nodes_lock = Path(nodes_lock or lock_path.parent / NODES_LOCK)
    label = lock_path.name
    try:
        previous = lock_path.read_text(encoding="utf-8") if lock_path.is_file() else None
        recorded = recorded_torch_index(previous) if previous else None
        if torch_index is None:
            wanted = recorded
        elif torch_index.lower() in ("pypi", NO_TORCH_INDEX, ""):
            wanted = None
        else:
            if urlsplit(torch_index).password or "@" in urlsplit(torch_index).netloc:
                # the URL is written into the lock's header and uv's command line
                raise PythonEnvError(
                    "--torch-index: the URL carries credentials, which would be written into "
                    f"{label}; put them in ~/.netrc for that host and pass the bare URL"
                )
            wanted = torch_index
        inputs = load_inputs(requirements_in, nodes_lock, wanted)
        problems = []
        pyproject = requirements_in.parent / "pyproject.toml"
        if pyproject.is_file():
            problems += missing_project_dependencies(
                pyproject.read_text(encoding="utf-8"), inputs.requirements_in
            )
        if problems:
            raise PythonEnvError("\n".join(problems))
        if check:
            return _check(lock_path, previous, inputs, out)
        old = None
        if previous is not None:
            try:
                old = parse_requirements_lock(previous, label)
            except BakeError:
                previous = None  # a broken lock is replaced whole: no preferences, no diff
        text = uv_compile(inputs, previous)
        new = parse_requirements_lock(text, label)
        if problems := unsatisfied(new, inputs):
            raise PythonEnvError("\n".join(f"uv's result fails an input: {p}" for p in problems))
        if previous == text:
            out(f"{label}: up to date ({len(new.pins)} pins)")
            return 0
        write_text_atomic(lock_path, text)
        changes = version_diff(old, new)
        out(f"{label}: written ({len(new.pins)} pins)")
        for line in changes:
            out(f"  {line}")
        return 0
    except BakeError as exc:
        for line in exc.lines():
            out(f"{label}: {line}")
        return 1


def _check(
    lock_path: Path, previous: str | None, inputs: Inputs, out: Callable[[str], None]
) -> int:
    label = lock_path.name
    if previous is None:
        out(f"{label}: missing; run {COMMAND} to compile it")
        return 1
    lock = parse_requirements_lock(previous, label)
    reasons = stale_reasons(previous, inputs)
    problems = unsatisfied(lock, inputs)
    if not reasons and not problems:
        out(f"{label}: fresh ({len(lock.pins)} pins, {len(inputs.nodes)} node entries)")
        return 0
    for reason in reasons:
        out(f"{label}: stale: {reason}")
    for problem in problems:
        out(f"{label}: inconsistent: {problem}")
    out(f"{label}: run {compile_command(inputs.torch_index)} to recompile it")
    return 1
