"""Which node classes a job may use: the reviewed table, default-deny.

node-classes.yaml (bake/locks/classes.py reads it) gives every class of the locked node set a
verdict. A job naming a class without an `allow` verdict is refused before anything is
queued, naming the node, the class and the reason; so is a class the table does not list (a
node update added it and nobody reviewed it yet). Operators who trust their callers widen it:
NODE_CLASSES=all (every installed class), ALLOW_NODE_CLASSES=A,B (those classes by name), or
ALLOW_CODE_NODES=1 (also the classes refused because they run job text as code).
"""

from __future__ import annotations

import os
from collections.abc import Container, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bake.errors import LockError
from bake.locks.classes import CLASSES_FILE, ClassTable, load_class_table

CODE = "code"  # the reason key ALLOW_CODE_NODES=1 lets through


class ClassPolicyError(ValueError):
    """A job names a node class this endpoint does not run; the message says which and why."""


class ClassTableError(RuntimeError):
    """The class table cannot be read; the boot stops (NODE_CLASSES=all does without it)."""


@dataclass(frozen=True)
class ClassPolicy:
    table: ClassTable | None  # None only with NODE_CLASSES=all
    everything: bool = False  # NODE_CLASSES=all
    by_name: frozenset[str] = frozenset()  # ALLOW_NODE_CLASSES
    code: bool = False  # ALLOW_CODE_NODES

    @classmethod
    def load(
        cls,
        path: Path | None,
        *,
        everything: bool = False,
        by_name: Iterable[str] = (),
        code: bool = False,
    ) -> ClassPolicy:
        """The policy with the table at `path` (None: node-classes.yaml in $BAKE_ROOT, else
        beside the worker package: the image's /opt/bake, a checkout's root)."""
        if path is None:
            root = os.environ.get("BAKE_ROOT") or Path(__file__).resolve().parents[2]
            path = Path(root) / CLASSES_FILE
        table = None
        try:
            table = load_class_table(path)
        except LockError as exc:
            if not everything:
                raise ClassTableError(
                    f"the node class table cannot be read, so no class could be allowed: {exc}"
                    " (NODE_CLASSES_FILE names it; NODE_CLASSES=all runs every class without it)"
                ) from None
        return cls(table, everything, frozenset(by_name), code)

    def refusal(self, class_type: str) -> str | None:
        """Why `class_type` may not run here, or None."""
        if self.everything or class_type in self.by_name:
            return None
        verdict = self.table.verdict(class_type) if self.table else None
        if verdict is None:
            return (
                f"it is not in the reviewed class table ({CLASSES_FILE}): a class that a node "
                "update added, refused until it is reviewed"
            )
        if verdict.allowed or (self.code and verdict.reason == CODE):
            return None
        hint = "ALLOW_CODE_NODES=1" if verdict.reason == CODE else "ALLOW_NODE_CLASSES"
        return (
            f"{verdict.why}. It is refused on this endpoint; {hint} or NODE_CLASSES=all allow "
            "it where the callers may do what it does"
        )

    def check(
        self,
        prompt: dict[str, Any],
        titles: dict[str, str],
        installed: Container[str] | None = None,
    ) -> None:
        """Raise ClassPolicyError for the first node whose class may not run (or, given the
        `installed` classes, that ComfyUI does not have)."""
        for node_id, node in prompt.items():
            class_type = node.get("class_type")
            why = self.refusal(class_type)
            if installed is not None and class_type not in installed:
                why = f"ComfyUI has no node class {class_type!r}"
            if why is not None:
                title = f' "{titles[node_id]}"' if node_id in titles else ""
                shown = class_type if str(class_type).isprintable() else repr(class_type)
                raise ClassPolicyError(f"node {node_id}{title} ({shown}): {why}")

    def summary(self, installed: Iterable[str]) -> str:
        """One line for the boot log: how many of the installed classes may run."""
        installed = set(installed)
        if self.everything:
            return f"all {len(installed)} installed node classes (NODE_CLASSES=all)"
        allowed = sum(1 for c in installed if self.refusal(c) is None)
        unlisted = sorted(c for c in installed if self.table and self.table.verdict(c) is None)
        line = f"{allowed} of {len(installed)} installed node classes allowed ({CLASSES_FILE})"
        if unlisted:
            shown = ", ".join(unlisted[:10]) + (" ..." if len(unlisted) > 10 else "")
            line += f"; {len(unlisted)} installed but not reviewed, refused: {shown}"
        return line
