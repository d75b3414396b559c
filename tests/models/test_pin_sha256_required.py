"""Every pin carries its sha256, whatever the source: `models verify --mode full` checks it with
blake3 in the same read, so a pin without one is checked by blake3 alone, and nothing ties the
blake3 that update-locks computed to a hash the source published. The models lock checker
(bake.locks.models, what `bake check` and every command that reads the lock run) must refuse
such a pin, naming it.
"""

from __future__ import annotations

import pytest

from bake.errors import LockError
from bake.locks.models import loads_models_lock

SHA, BLAKE, REV = "d" * 64, "c" * 64, "a" * 40

ORIGINALS = {
    "hf": "      path: vae.safetensors\n      repo: Org/Repo\n      source: hf\n",
    "url": "      source: url\n      url: https://example.invalid/vae.safetensors\n",
    "s3": "      bucket: ${BUCKET}\n      key: vae.safetensors\n      source: s3\n",
}


def lock_text(source: str, *, sha256: bool) -> str:
    revision = f"      revision: {REV}\n" if source == "hf" else ""
    sha = f"      sha256: {SHA}\n" if sha256 else ""
    return (
        "version: 1\nmodels:\n  vae:\n    dest: models/vae/vae.safetensors\n"
        f"    locked:\n      blake3: {BLAKE}\n{revision}{sha}      size: 254\n"
        f"    original:\n{ORIGINALS[source]}    placement: image\n"
    )


@pytest.mark.parametrize("source", sorted(ORIGINALS))
def test_a_pin_without_sha256_is_refused_naming_it(source):
    with pytest.raises(LockError) as err:
        loads_models_lock(lock_text(source, sha256=False))
    (problem,) = err.value.problems
    assert str(problem).startswith("models.lock.yaml: models.vae.locked.sha256: required")


@pytest.mark.parametrize("source", sorted(ORIGINALS))
def test_the_same_pin_with_its_sha256_is_accepted(source):
    lock = loads_models_lock(lock_text(source, sha256=True))
    assert lock.get("vae").locked.sha256 == SHA
