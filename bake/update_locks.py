"""`scripts/update-locks.py`: resolve `original` -> `locked` for every kind of lock.

Each kind lives in its own module; this one parses the command line and runs the kinds asked
for, one after another (nodes first: the Python lock is compiled from the requirement lines the
nodes lock records), so a failing kind is reported without hiding the others' results.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bake.check import display
from bake.errors import BakeError
from bake.locks.apt import APT_LOCK
from bake.locks.classes import CLASSES_FILE, load_class_table, review_drift
from bake.locks.lockfile import (
    KIND_NAMES,
    MODELS_LOCK,
    NODES_LOCK,
    REQUIREMENTS_LOCK,
    default_lock,
    kind_by_content,
    kind_by_name,
)
from bake.locks.nodes import loads_nodes_lock

KINDS = ("nodes", "python", "models", "apt")
# Without a kind flag: every kind but apt, whose snapshot moves every Ubuntu package of the
# image at once; it moves when asked (--apt), as the weekly update-locks workflow does.
DEFAULT_KINDS = ("nodes", "python", "models")
# The lock kind each update kind writes, and the other locks it reads: the Python lock is
# compiled from the requirement lines the nodes lock records.
LOCK_OF = {"nodes": "nodes", "python": "requirements", "models": "models", "apt": "apt"}
READS = {"python": ("nodes",)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/update-locks.py",
        description="Resolve every lock entry's `original` to an exact, content-addressed pin "
        "and rewrite the locks canonically, printing what changed. With no kind flag, all "
        "kinds are updated.",
    )
    parser.add_argument(
        "--nodes",
        action="store_true",
        help="ComfyUI, custom nodes, source builds (nodes.lock.yaml)",
    )
    parser.add_argument(
        "--python",
        action="store_true",
        help="requirements.in + the nodes' recorded requirements -> requirements.lock",
    )
    parser.add_argument("--models", action="store_true", help="model files (models.lock.yaml)")
    parser.add_argument(
        "--apt",
        action="store_true",
        help="move the Ubuntu archive snapshot of apt.lock.yaml forward to now (only when given)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="resolve nothing new; exit 1 if "
        "a lock is stale, inconsistent or incomplete, saying which entry and why",
    )
    parser.add_argument(
        "--lock",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="use this lock instead of the one at the repository root (repeatable; its kind "
        "comes from its name, else its content, and must be one the kinds asked for read)",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="resolve and write nothing: print one line per kind that would run, the kind and "
        "then the NAMEs it would resolve (none: every entry), and exit",
    )
    parser.add_argument(
        "--torch-index",
        metavar="URL",
        default=None,
        help="resolve torch and its CUDA packages from this index (e.g. the "
        "PyTorch cu128 index) instead of PyPI; recorded in requirements.lock",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="only these entries (nodes or models); default: all",
    )
    return parser


def _lock_paths(given: Sequence[Path], kinds: Sequence[str]) -> dict[str, Path]:
    """The lock each kind reads and writes: the repository's, or a `--lock FILE` of that kind.
    A `--lock` is never dropped in favour of the repository's lock: one whose name and content
    say two kinds, whose kind none of `kinds` reads, or a second one of a kind, is an error
    naming the file and both kinds (`--nodes --lock my.lock` would otherwise resolve the
    repository's nodes.lock.yaml and rewrite it, while my.lock, read as a requirements lock by
    its name, sat unused)."""
    paths = {
        "nodes": default_lock(NODES_LOCK),
        "python": default_lock(REQUIREMENTS_LOCK),
        "models": default_lock(MODELS_LOCK),
        "apt": default_lock(APT_LOCK),
    }
    readable = {LOCK_OF[k] for k in kinds} | {r for k in kinds for r in READS.get(k, ())}
    asked = " ".join(f"--{k}" for k in kinds)
    problems: list[str] = []
    given_for: dict[str, Path] = {}
    for path in given:
        by_name = kind_by_name(path)
        by_content = None
        # a missing or unreadable file: the command of its kind says so when it reads it
        with contextlib.suppress(OSError, UnicodeDecodeError):
            by_content = kind_by_content(Path(path).read_text(encoding="utf-8"))
        if by_name and by_content and by_name != by_content:
            problems.append(
                f"--lock {path}: its name reads as {KIND_NAMES[by_name]} but it holds "
                f"{KIND_NAMES[by_content]}; name it for what it is (e.g. "
                f"{_example_name(path, by_content)}) so that every command reads it as one kind"
            )
            continue
        kind = by_name or by_content
        if kind is None:
            problems.append(
                f"--lock {path}: neither its name nor its content tells which lock it is; name "
                f"it *{NODES_LOCK}, *{MODELS_LOCK}, apt.*.yaml or *.lock"
            )
            continue
        how = "its name reads so" if by_name else "by its content"
        if kind not in readable:
            wanted = " or ".join(sorted(KIND_NAMES[k] for k in readable))
            problems.append(
                f"--lock {path} is {KIND_NAMES[kind]} ({how}), but {asked} reads {wanted}: "
                f"pass the lock of the kind asked for, or add {_flag_for(kind)} to resolve "
                "this one (nothing was resolved)"
            )
            continue
        update_kind = "python" if kind == "requirements" else kind
        if update_kind in given_for:
            problems.append(
                f"--lock {path} is {KIND_NAMES[kind]}, and so is --lock "
                f"{given_for[update_kind]}: give one --lock per kind"
            )
            continue
        given_for[update_kind] = path
        paths[update_kind] = path
    if problems:
        raise LockOptionError("\n".join(problems))
    return paths


class LockOptionError(BakeError):
    """A `--lock` that does not fit the kinds asked for: a usage error."""

    exit_code = 2


def _flag_for(kind: str) -> str:
    return "--python" if kind == "requirements" else f"--{kind}"


def _example_name(path: Path, kind: str) -> str:
    stem = Path(path).name.split(".", 1)[0] or "my"
    return {
        "nodes": f"{stem}.{NODES_LOCK}",
        "models": f"{stem}.{MODELS_LOCK}",
        "apt": f"apt.{stem}.yaml",
        "requirements": f"{stem}.lock",
    }[kind]


def _runner(
    kind: str, args: argparse.Namespace, paths: dict[str, Path], names: Sequence[str]
) -> Callable[[], int]:
    def load(module: str, name: str) -> Callable[..., int]:
        return getattr(importlib.import_module(module), name)

    if kind == "nodes":
        return lambda: load("bake.nodes.resolve", "update_nodes")(
            paths["nodes"], names, check=args.check
        )
    if kind == "models":
        return lambda: load("bake.models.resolve", "update_models")(
            paths["models"], names, check=args.check
        )
    if kind == "apt":
        return lambda: load("bake.locks.apt", "update_apt")(paths["apt"], check=args.check)
    return lambda: load("bake.python.compile", "update_python")(
        paths["python"], nodes_lock=paths["nodes"], check=args.check, torch_index=args.torch_index
    )


def _kinds_of_names(
    names: Sequence[str], paths: dict[str, Path], kinds: Sequence[str]
) -> dict[str, list[str]]:
    """Which of the `kinds` locks hold each NAME (only those locks are read); a name none of
    them holds is an error."""
    from bake.locks.models import load_models_lock
    from bake.locks.nodes import load_nodes_lock

    held: dict[str, set[str]] = {}
    if "nodes" in kinds:
        entries = load_nodes_lock(paths["nodes"]).entries()
        held["nodes"] = {n for e in entries for n in (e.name, e.qualified)}
    if "models" in kinds:
        held["models"] = set(load_models_lock(paths["models"]).models)
    unknown = [n for n in names if not any(n in found for found in held.values())]
    if unknown:
        where = " or ".join(str(display(paths[kind])) for kind in held)
        raise KeyError(f"no entry named {', '.join(unknown)} in {where}")
    selection = {kind: [n for n in names if n in found] for kind, found in held.items()}
    return {kind: chosen for kind, chosen in selection.items() if chosen}


def _selection(args: argparse.Namespace, paths: dict[str, Path]) -> dict[str, list[str]]:
    """kind -> the names it resolves ([] for all). NAMEs go to the locks that hold them, among
    the kinds flagged (all kinds when none is)."""
    explicit = [k for k in KINDS if getattr(args, k)]
    flagged = explicit or list(DEFAULT_KINDS)
    if not args.names:
        return {kind: [] for kind in flagged}
    selection = _kinds_of_names(args.names, paths, [k for k in flagged if k != "apt"])
    for kind in ("python", "apt"):
        if kind in explicit:
            selection[kind] = []
    return selection


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (
        args.names
        and set(k for k in KINDS if getattr(args, k)) <= {"python", "apt"}
        and any(getattr(args, k) for k in KINDS)
    ):
        print("error: NAME filters apply to --nodes and --models only", file=sys.stderr)
        return 2
    flagged = [k for k in KINDS if getattr(args, k)] or list(DEFAULT_KINDS)
    try:
        paths = _lock_paths(args.lock, flagged)
    except LockOptionError as exc:
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    try:
        selection = _selection(args, paths)
    except (BakeError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 1
    if args.plan:
        for kind in KINDS:
            if kind in selection:
                print(" ".join([kind, *selection[kind]]))
        return 0
    status = 0
    for kind in KINDS:
        if kind not in selection:
            continue
        print(f"== {kind} ({display(paths[kind])})")
        try:
            status |= _runner(kind, args, paths, selection[kind])()
        except BakeError as exc:
            for line in exc.lines():
                print(f"error: {line}", file=sys.stderr)
            status |= 1
        except KeyError as exc:  # an unknown NAME
            print(f"error: {exc.args[0]}", file=sys.stderr)
            status |= 1
        except Exception as exc:  # a bug or an unforeseen failure: one line, the others go on
            if os.environ.get("BAKE_TRACEBACK"):
                raise
            print(
                f"error: {kind}: unexpected {type(exc).__name__}: {exc} (set BAKE_TRACEBACK=1 "
                "for the traceback)",
                file=sys.stderr,
            )
            status |= 1
    if "nodes" in selection:
        status |= _class_review(paths["nodes"])
    return status


def _class_review(nodes_path: Path) -> int:
    """After the nodes lock: which packs' classes need review (node-classes.yaml beside the
    lock records the rev each pack was reviewed at). A pack that needs review does not fail
    the resolve: the lock diff says it, and `bake check` fails until the review is done."""
    table_path = nodes_path.parent / CLASSES_FILE
    if not table_path.exists() or not nodes_path.exists():
        return 0
    try:
        table = load_class_table(table_path)
        nodes = loads_nodes_lock(nodes_path.read_text(encoding="utf-8"))
    except BakeError as exc:
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        return 1
    drift = review_drift(table, nodes)
    print(f"== node classes ({display(table_path)})")
    for line in drift:
        print(f"  {line}")
    if not drift:
        print("  every pack's classes were reviewed at its locked rev")
    return 0
