"""node-classes.yaml: every node class of the locked set, reviewed like a commit.

    version: 1
    reasons: {code: runs text from the job as code, ...}
    packs:
      ComfyUI:
        rev: <the nodes lock's comfyui rev this pack was reviewed at>
        classes:
          KSampler: allow
          WebcamCapture: 'paths: its image input names any file, which it reads'

A class is `allow`, or refused with a reason key and an optional sentence. A class the file
does not list is refused by the worker (worker/policy/classes.py), so a class a node update
adds does not run until someone reviews it. Each pack records the rev it was reviewed at:
when the nodes lock moves a pack to another rev, `bake check` says the pack needs review
(`review_drift`), so the lock diff and the review travel together.

This module owns the file: parsing (plain YAML, as the locks: no duplicate keys, anchors or
aliases), validation, and the drift against the nodes lock, which is a pure function.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bake.errors import LockError, Problem
from bake.locks.nodes import NodesLock
from bake.locks.yamlio import load_yaml

CLASSES_FILE = "node-classes.yaml"
COMFYUI_PACK = "ComfyUI"
ALLOW = "allow"
_REV = re.compile(r"[0-9a-f]{40}")
_KEY = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""  # a key of `reasons` when refused
    why: str = ""  # the reason's text, and the class's own sentence when it has one

    def __str__(self) -> str:
        return "allowed" if self.allowed else self.why


@dataclass(frozen=True)
class Pack:
    name: str
    rev: str
    classes: Mapping[str, Verdict]


@dataclass(frozen=True)
class ClassTable:
    reasons: Mapping[str, str]
    packs: Mapping[str, Pack]

    def verdict(self, class_type: str) -> Verdict | None:
        """The class's verdict, or None when no pack lists it (not reviewed)."""
        for pack in self.packs.values():
            if class_type in pack.classes:
                return pack.classes[class_type]
        return None

    def pack_of(self, class_type: str) -> str | None:
        return next((p.name for p in self.packs.values() if class_type in p.classes), None)

    def allowed(self) -> frozenset[str]:
        return frozenset(
            name for p in self.packs.values() for name, v in p.classes.items() if v.allowed
        )

    def counts(self) -> dict[str, int]:
        """How many classes have each verdict (`allow` or a reason key)."""
        found: dict[str, int] = {}
        for pack in self.packs.values():
            for verdict in pack.classes.values():
                key = ALLOW if verdict.allowed else verdict.reason
                found[key] = found.get(key, 0) + 1
        return found


def loads_class_table(text: str, filename: str = CLASSES_FILE) -> ClassTable:
    """Parse and validate the table; every problem is reported at once in a LockError."""
    data = load_yaml(text, filename)
    problems: list[Problem] = []

    def bad(where: str, what: str) -> None:
        problems.append(Problem(filename, where, what))

    if not isinstance(data, dict) or data.get("version") != 1:
        raise LockError([Problem(filename, "version", "expected a mapping with `version: 1`")])
    for key in sorted(set(data) - {"version", "reasons", "packs"}):
        bad(str(key), "unknown key (expected version, reasons, packs)")
    reasons = data.get("reasons")
    if not isinstance(reasons, dict) or not reasons:
        bad("reasons", "expected a mapping of reason key -> text")
        reasons = {}
    for key, text in reasons.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key) or key == ALLOW:
            bad(f"reasons.{key}", "a reason key is a short lower-case word, not `allow`")
        if not isinstance(text, str) or not text.strip():
            bad(f"reasons.{key}", "expected the reason's text")
    packs: dict[str, Pack] = {}
    seen: dict[str, str] = {}
    raw_packs = data.get("packs")
    if not isinstance(raw_packs, dict) or not raw_packs:
        bad("packs", "expected a mapping of pack name -> {rev, classes}")
        raw_packs = {}
    for name, raw in raw_packs.items():
        where = f"packs.{name}"
        if not isinstance(raw, dict) or set(raw) != {"rev", "classes"}:
            bad(where, "expected exactly `rev` and `classes`")
            continue
        rev, classes = raw["rev"], raw["classes"]
        if not isinstance(rev, str) or not _REV.fullmatch(rev):
            bad(f"{where}.rev", f"expected a full 40-hex commit, found {rev!r}")
        if not isinstance(classes, dict):
            bad(f"{where}.classes", "expected a mapping of class name -> verdict")
            continue
        verdicts: dict[str, Verdict] = {}
        for class_type, value in classes.items():
            at = f"{where}.classes.{class_type}"
            if not isinstance(class_type, str) or not class_type or not class_type.isprintable():
                bad(at, "a class name is a printable string")
                continue
            if class_type in seen:
                bad(at, f"listed again (first under {seen[class_type]})")
                continue
            seen[class_type] = name
            verdict = _verdict(value, reasons)
            if isinstance(verdict, str):
                bad(at, verdict)
                continue
            verdicts[class_type] = verdict
        packs[str(name)] = Pack(str(name), str(rev), verdicts)
    if problems:
        raise LockError(problems)
    return ClassTable(dict(reasons), packs)


def _verdict(value: object, reasons: Mapping[str, str]) -> Verdict | str:
    """The verdict `value` spells, or why it spells none."""
    if value == ALLOW:
        return Verdict(True)
    if not isinstance(value, str):
        return f"expected `allow` or `<reason>[: why]`, found {value!r}"
    key, _, sentence = value.partition(":")
    key, sentence = key.strip(), sentence.strip()
    if key not in reasons:
        return f"{key!r} is not a reason of this file (reasons: {', '.join(sorted(reasons))})"
    why = reasons[key] + (f" ({sentence})" if sentence else "")
    return Verdict(False, key, why)


def load_class_table(path: Path) -> ClassTable:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LockError([Problem(str(path), "", f"cannot read: {exc.strerror}")]) from None
    return loads_class_table(text, str(path))


def locked_revs(nodes: NodesLock) -> dict[str, str | None]:
    """Pack name -> the rev the nodes lock pins (None: not locked yet)."""
    entries = {COMFYUI_PACK: nodes.comfyui, **nodes.custom_nodes}
    return {name: e.locked.rev if e.locked else None for name, e in entries.items()}


def review_drift(table: ClassTable, nodes: NodesLock) -> list[str]:
    """One line per pack whose review does not match the nodes lock (empty: in step)."""
    revs = locked_revs(nodes)
    lines = []
    for name, rev in revs.items():
        pack = table.packs.get(name)
        if rev is None:
            continue
        if pack is None:
            lines.append(
                f"{name}: needs review: its classes are not in {CLASSES_FILE} (locked at "
                f"{rev[:12]}); until they are, the worker refuses every one of them"
            )
        elif pack.rev != rev:
            lines.append(
                f"{name}: needs review: the nodes lock moved it to {rev[:12]}, its classes were "
                f"reviewed at {pack.rev[:12]}; review what changed (`git diff "
                f"{pack.rev[:12]} {rev[:12]}` in the node's repository), update its classes "
                f"and set its rev in {CLASSES_FILE}"
            )
    for name in sorted(set(table.packs) - set(revs)):
        lines.append(f"{name}: listed in {CLASSES_FILE} but not a pack of the nodes lock")
    return lines
