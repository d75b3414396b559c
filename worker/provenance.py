"""Which build this worker is: the sha256 of the image's provenance record.

The image's last build step writes /opt/bake/provenance.json (`python -m bake provenance`): every
input of the image with its hash. The worker reads it once at boot, logs its digest, and adds
`"provenance": {"sha256": ..., "commit": ...}` to every job's output (a key worker-comfyui's
clients do not use), so whoever holds an output can tell exactly which build served it and
look that build's inputs up. Outside an image (no record) nothing is added.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

FILENAME = "provenance.json"
_record: dict[str, Any] | None = None


def load(root: Path | None = None) -> dict[str, Any] | None:
    """Read the record in `root` (default: $BAKE_ROOT, else /opt/bake) and keep its digest
    for `record()`; None when there is none."""
    global _record
    folder = root or Path(os.environ.get("BAKE_ROOT") or "/opt/bake")
    try:
        data = (folder / FILENAME).read_bytes()
    except OSError:
        _record = None
        return None
    try:
        commit = json.loads(data).get("commit")
    except (ValueError, AttributeError):
        commit = None  # the digest still names the bytes the image holds
    _record = {
        "sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
        "commit": commit if isinstance(commit, str) else None,
    }
    return dict(_record)


def record() -> dict[str, Any] | None:
    """What `load` found, as each job's output carries it."""
    return dict(_record) if _record is not None else None


def describe(found: dict[str, Any] | None) -> str:
    """One log line's worth."""
    if found is None:
        return f"no {FILENAME} (not an image build): job outputs carry no provenance"
    return f"{found['sha256']} (commit {found['commit'] or 'not recorded'})"
