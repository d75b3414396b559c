"""apt.lock.yaml: the Ubuntu archive snapshot every `apt-get` of the image installs from, and
the exact versions of packages from repositories that have no snapshots.

Ubuntu's snapshot service serves the archive as it was at any moment since 2023
(`apt-get update --snapshot 20260116T000000Z`, apt >= 2.7 as in Ubuntu 24.04), so one id pins
every Ubuntu package at once. NVIDIA's CUDA repository has no snapshots: the packages the image
takes from it are pinned here by version, and the build installs them as `name=version`.
The file is read by the image's `apt-install` script with sed, so it stays in the canonical
form `write_apt_lock` gives it: keys in order, one package per line.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bake.errors import BakeError
from bake.locks.diff import diff_locks, format_diff
from bake.locks.lockfile import Checker, read_lock_text, write_if_changed
from bake.locks.yamlio import load_yaml

APT_LOCK = "apt.lock.yaml"
SNAPSHOT = re.compile(r"[0-9]{8}T[0-9]{6}Z")
# a Debian package name, and a version as dpkg writes it (epoch:upstream-revision)
PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
VERSION = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*")

HEADER = (
    "# The Ubuntu archive snapshot every apt-get of the Dockerfile installs from, and exact\n"
    "# versions of packages from repositories without snapshots (NVIDIA's CUDA repository).\n"
    "# `snapshot` is moved forward by scripts/update-locks.py --apt; edit `pinned` by hand.\n"
)


@dataclass(frozen=True)
class AptLock:
    snapshot: str
    pinned: dict[str, str] = field(default_factory=dict)

    def entry_dicts(self) -> dict[str, dict[str, Any]]:
        entries: dict[str, dict[str, Any]] = {"snapshot": {"id": self.snapshot}}
        for name in sorted(self.pinned):
            entries[f"pinned.{name}"] = {"version": self.pinned[name]}
        return entries


def parse_apt_lock(data: Any, filename: str = APT_LOCK) -> AptLock:
    check = Checker(filename)
    data = check.document(data)
    check.keys(data, "", required=["version", "snapshot"], optional=["pinned"])
    snapshot = check.pattern(data, "snapshot", "", SNAPSHOT, "a snapshot id YYYYMMDDTHHMMSSZ (UTC)")
    pinned: dict[str, str] = {}
    raw = check.mapping(data.get("pinned") or {}, "pinned") or {}
    for name, version in raw.items():
        where = f"pinned.{name}"
        if not isinstance(name, str) or not PACKAGE.fullmatch(name):
            check.add(where, "expected a Debian package name (lower case, digits, + - .)")
        elif not isinstance(version, str) or not VERSION.fullmatch(version):
            check.add(where, f"expected an exact version such as '12.8.57-1', found {version!r}")
        else:
            pinned[name] = version
    check.raise_if_any()
    assert snapshot is not None
    return AptLock(snapshot, pinned)


def loads_apt_lock(text: str, filename: str = APT_LOCK) -> AptLock:
    return parse_apt_lock(load_yaml(text, filename), filename)


def load_apt_lock(path: Path) -> AptLock:
    return loads_apt_lock(read_lock_text(path, "apt lock"), str(path))


def dumps_apt_lock(lock: AptLock) -> str:
    """Canonical text: the image's script reads `snapshot: ID` and `  name: version` lines."""
    lines = [HEADER.rstrip("\n"), "version: 1", f"snapshot: {lock.snapshot}"]
    if lock.pinned:
        lines.append("pinned:")
        lines += [f"  {name}: '{lock.pinned[name]}'" for name in sorted(lock.pinned)]
    return "\n".join(lines) + "\n"


def write_apt_lock(lock: AptLock, path: Path) -> bool:
    return write_if_changed(path, dumps_apt_lock(lock))


def snapshot_id(moment: datetime) -> str:
    """The snapshot id of a moment (UTC, to the second)."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def now_snapshot() -> str:
    return snapshot_id(datetime.now(UTC))


def update_apt(
    path: Path,
    *,
    check: bool = False,
    out: Callable[[str], None] = print,
    now: Callable[[], str] = now_snapshot,
) -> int:
    """Move the snapshot forward to now and print the diff (`update-locks --apt`); with
    `check`, only prove the lock is well-formed and its snapshot not in the future. The
    versions in `pinned` stay as written: NVIDIA's repository cannot be asked for a version
    that matches a date, so a maintainer moves them by hand."""
    try:
        lock = load_apt_lock(path)
    except BakeError as exc:
        for line in exc.lines():
            out(f"error: {line}")
        return 1
    latest = now()
    if check:
        if lock.snapshot > latest:
            out(f"error: {path.name}: snapshot {lock.snapshot} is in the future (now: {latest})")
            return 1
        out(f"{path.name}: snapshot {lock.snapshot}, {len(lock.pinned)} pinned package(s)")
        return 0
    new = dataclasses.replace(lock, snapshot=max(lock.snapshot, latest))
    for line in format_diff(diff_locks(lock, new)):
        out(line)
    out(f"{path.name}: updated" if write_apt_lock(new, path) else f"{path.name}: up to date")
    return 0
