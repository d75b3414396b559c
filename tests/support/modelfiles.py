"""Known bytes and locks written from them, for tests of model fetching and verification
(and for an image dry-bake that needs a models lock pointing at local servers)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import blake3

from bake.locks.models import ModelEntry, ModelPin, ModelsLock, Source, write_models_lock

MB = 1 << 20


def blob(n: int, seed: int = 0) -> bytes:
    """n reproducible pseudo-random bytes (incompressible, unlike zeros)."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest() * 64
        counter += 1
    return bytes(out[:n])


def pin_of(data: bytes, revision: str | None = None) -> ModelPin:
    return ModelPin(
        size=len(data),
        blake3=blake3.blake3(data).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        revision=revision,
    )


def entry(
    name: str,
    source: Source,
    dest: str,
    data: bytes | None = None,
    *,
    placement: str = "image",
    revision: str | None = None,
) -> ModelEntry:
    pin = pin_of(data, revision) if data is not None else None
    return ModelEntry(name, source, dest, placement, pin)  # type: ignore[arg-type]


def make_lock(*entries: ModelEntry) -> ModelsLock:
    return ModelsLock({e.name: e for e in entries})


def write_lock(path: Path, *entries: ModelEntry) -> Path:
    write_models_lock(make_lock(*entries), path)
    return path
