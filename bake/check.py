"""`python -m bake check`: static checks of the three locks, no network.

Malformed files are errors (one line per problem). Entries that are well-formed but not locked
yet are warnings naming the `update-locks` command that fills them; `--strict` makes them errors,
which is how the image build runs it for everything it bakes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bake.errors import LockError, Problem
from bake.locks.apt import APT_LOCK, loads_apt_lock
from bake.locks.classes import CLASSES_FILE, load_class_table, review_drift
from bake.locks.dockerfile import check_dockerfile
from bake.locks.lockfile import (
    MODELS_LOCK,
    NODES_LOCK,
    REQUIREMENTS_LOCK,
    lock_kind,
    repo_root,
)
from bake.locks.models import ModelsLock, loads_models_lock
from bake.locks.nodes import NodesLock, loads_nodes_lock
from bake.locks.requirements import parse_requirements_lock

UPDATE = "scripts/update-locks.py"


@dataclass
class CheckResult:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _unlocked(filename: str, entries: Iterable[tuple[str, str]], flag: str) -> list[str]:
    return [
        str(
            Problem(
                filename,
                where,
                f"not locked yet; run `{UPDATE} {flag} {name}` where the source is reachable",
            )
        )
        for where, name in entries
    ]


def check_text(text: str, filename: str, kind: str, *, strict: bool = False) -> CheckResult:
    """Check one lock's text; pure apart from nothing (no file or network access)."""
    result = CheckResult(checked=[filename])
    try:
        if kind == "nodes":
            nodes: NodesLock = loads_nodes_lock(text, filename)
            pending = _unlocked(
                filename, ((e.qualified, e.name) for e in nodes.unlocked()), "--nodes"
            )
            # The rev is already a content hash (git's); the tree hash adds proof that a tree
            # which arrived another way is the same, so its absence is a note, not a failure.
            result.warnings.extend(
                str(
                    Problem(
                        filename,
                        f"{e.qualified}.locked.tree",
                        f"not recorded yet; run "
                        f"`{UPDATE} --nodes {e.name}` where the remote is reachable",
                    )
                )
                for e in nodes.entries()
                if e.locked is not None and e.locked.tree is None
            )
            result.warnings.extend(license_warnings(nodes, filename))
        elif kind == "models":
            models: ModelsLock = loads_models_lock(text, filename)
            pending = _unlocked(
                filename, ((e.qualified, e.name) for e in models.unlocked()), "--models"
            )
            # Optional entries never fail a check: unlocked, the build and the boot skip them.
            result.warnings.extend(
                str(
                    Problem(
                        filename,
                        e.qualified,
                        f"optional and not locked: skipped by the build and the boot; run "
                        f"`{UPDATE} --models {e.name}` where its source is reachable to use it",
                    )
                )
                for e in models.skipped()
            )
        elif kind == "apt":
            loads_apt_lock(text, filename)
            pending = []
        else:
            parse_requirements_lock(text, filename)
            pending = []
    except LockError as exc:
        result.errors.extend(str(p) for p in exc.problems)
        return result
    (result.errors if strict else result.warnings).extend(pending)
    return result


def license_warnings(nodes: NodesLock, filename: str) -> list[str]:
    """A node whose license adds terms on commercial use (RES4LYF's clause forbids "a
    commercial service, such as an AI image generation service" without its author's
    permission): a paid endpoint may need that permission. A warning, never a failure: whether
    the terms apply is the operator's call, not the build's."""
    return [
        str(
            Problem(
                filename,
                f"{e.qualified}.locked.license",
                f'{e.locked.license.summary()}: "{e.locked.license.restriction}"; '
                "running it in a commercial service may need the author's permission "
                "(or remove the node from the lock)",
            )
        )
        for e in nodes.entries()
        if e.locked is not None and e.locked.license is not None and e.locked.license.restricted
    ]


def display(path: Path) -> str:
    """A path as messages show it: relative to the working directory when below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def check_file(path: Path, *, strict: bool = False, kind: str | None = None) -> CheckResult:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return CheckResult(errors=[f"{display(path)}: cannot read: {exc.strerror}"])
    return check_text(text, display(path), kind or lock_kind(path, text), strict=strict)


def cross_check(nodes: NodesLock, models: ModelsLock, models_file: str) -> list[str]:
    """Model files placed inside a custom node's folder must belong to a locked node: a
    checkpoint for a node the image does not install is a typo, a stale entry, or a way to
    plant a folder in custom_nodes/ that ComfyUI would load. Names compare exactly, as the
    (Linux) file system compares them: `comfyui-kjnodes/` is another folder than
    `ComfyUI-KJNodes/`. Whether the file would overwrite one the node's commit tracks needs
    the checkout, so `nodes install` and `nodes verify` check that."""
    names = set(nodes.custom_nodes)
    problems = []
    for entry in models.entries():
        parts = entry.dest.split("/")
        if len(parts) > 2 and parts[0] == "custom_nodes" and parts[1] not in names:
            problems.append(
                str(
                    Problem(
                        models_file,
                        f"{entry.qualified}.dest",
                        f"{entry.dest!r} is inside custom_nodes/{parts[1]}, which is not a "
                        "custom node of the nodes lock",
                    )
                )
            )
    return problems


def check_repo(root: Path, *, strict: bool = False) -> CheckResult:
    """All three locks at `root` (a missing one is an error) and the apt lock when present. The
    nodes and models locks are also checked against each other."""
    total = CheckResult()
    for name in (NODES_LOCK, MODELS_LOCK, REQUIREMENTS_LOCK):
        path = root / name
        if not path.exists():
            total.errors.append(
                f"{display(path)}: missing (every image is built from the three locks)"
            )
            continue
        one = check_file(path, strict=strict)
        total.errors += one.errors
        total.warnings += one.warnings
        total.checked += one.checked
    # The apt lock pins the image's system packages; a checkout of the locks alone (as some
    # tools make) may leave it out, and the image build copies it in and fails without it.
    if (root / APT_LOCK).exists():
        one = check_file(root / APT_LOCK, strict=strict)
        total.errors += one.errors
        total.checked += one.checked
    if not total.errors and (root / CLASSES_FILE).exists():
        try:
            table = load_class_table(root / CLASSES_FILE)
        except LockError as exc:
            total.errors += [str(p) for p in exc.problems]
        else:
            nodes = loads_nodes_lock((root / NODES_LOCK).read_text(encoding="utf-8"))
            total.errors += [
                f"{display(root / CLASSES_FILE)}: {line}" for line in review_drift(table, nodes)
            ]
            total.checked.append(display(root / CLASSES_FILE))
    if not total.errors:
        total.errors += cross_check(
            loads_nodes_lock((root / NODES_LOCK).read_text(encoding="utf-8")),
            loads_models_lock((root / MODELS_LOCK).read_text(encoding="utf-8")),
            display(root / MODELS_LOCK),
        )
    # The recipe beside the locks: its frontend and every image it names pinned by digest.
    if (root / "Dockerfile").exists():
        total.errors += check_dockerfile(root / "Dockerfile", display(root / "Dockerfile"))
        total.checked.append(display(root / "Dockerfile"))
    return total


def cli(args: argparse.Namespace) -> int:
    if args.lock is not None:
        result = check_file(Path(args.lock), strict=args.strict)
    else:
        result = check_repo(repo_root(), strict=args.strict)
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in result.errors:
        print(f"error: {line}", file=sys.stderr)
    if result.ok:
        suffix = f", {len(result.warnings)} warning(s)" if result.warnings else ""
        print(f"ok: {', '.join(result.checked)}{suffix}")
        return 0
    return 1
