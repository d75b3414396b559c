"""Drift between two states of a lock, as a pure function (no I/O).

Every lock offers `entry_dicts()`: qualified entry name -> canonical nested dict. `diff_locks`
compares two such views field by field; `format_diff` renders the result the way `update-locks`
prints it (lists show the lines added and dropped, e.g. a node's requirements).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class HasEntries(Protocol):
    def entry_dicts(self) -> dict[str, dict[str, Any]]: ...


@dataclass(frozen=True)
class FieldChange:
    field: str  # dotted, e.g. "locked.rev"
    old: Any
    new: Any


@dataclass(frozen=True)
class EntryChange:
    entry: str
    fields: tuple[FieldChange, ...]

    def get(self, field: str) -> FieldChange | None:
        return next((f for f in self.fields if f.field == field), None)


@dataclass(frozen=True)
class LockDiff:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[EntryChange, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def changed_entry(self, entry: str) -> EntryChange | None:
        return next((c for c in self.changed if c.entry == entry), None)


_ABSENT = None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def diff_entries(
    old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]
) -> LockDiff:
    added = tuple(sorted(set(new) - set(old)))
    removed = tuple(sorted(set(old) - set(new)))
    changed = []
    for entry in sorted(set(old) & set(new)):
        before, after = _flatten(old[entry]), _flatten(new[entry])
        fields = tuple(
            FieldChange(field, before.get(field, _ABSENT), after.get(field, _ABSENT))
            for field in sorted(set(before) | set(after))
            if before.get(field, _ABSENT) != after.get(field, _ABSENT)
        )
        if fields:
            changed.append(EntryChange(entry, fields))
    return LockDiff(added, removed, tuple(changed))


def diff_locks(old: HasEntries | None, new: HasEntries | None) -> LockDiff:
    """What changed from `old` to `new` (either may be None: nothing locked yet)."""
    return diff_entries(old.entry_dicts() if old else {}, new.entry_dicts() if new else {})


def _short(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str) and len(value) == 40 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    return str(value)


def format_diff(diff: LockDiff) -> list[str]:
    """Readable lines: `+ entry`, `- entry`, `~ entry` then `  field: old -> new`; a list
    field shows `  field: + item` / `  field: - item` per line added or dropped."""
    lines = [f"+ {entry} (new)" for entry in diff.added]
    lines += [f"- {entry} (removed)" for entry in diff.removed]
    for change in diff.changed:
        lines.append(f"~ {change.entry}")
        for field in change.fields:
            if isinstance(field.old, list) or isinstance(field.new, list):
                old, new = list(field.old or []), list(field.new or [])
                lines += [f"    {field.field}: + {item}" for item in new if item not in old]
                lines += [f"    {field.field}: - {item}" for item in old if item not in new]
                if sorted(map(str, old)) == sorted(map(str, new)):
                    lines.append(f"    {field.field}: reordered")
            else:
                lines.append(f"    {field.field}: {_short(field.old)} -> {_short(field.new)}")
    return lines
