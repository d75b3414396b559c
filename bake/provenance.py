"""`python -m bake provenance`: one JSON document naming every input of the image with its hash.

The image's last stage writes it to /opt/bake/provenance.json; the worker logs its sha256 at
boot and returns it with every job, so whoever holds a job's output can tell which build served
it and, with the document, what that build was made of: the Dockerfile (its sha256, the
frontend that read it and every image it names, each by digest), the apt snapshot and the
packages pinned outside it, every wheel of requirements.lock, the SageAttention wheel actually
built, ComfyUI and each node (rev, tree, license as found in the image's own tree), each model
(size, sha256, blake3, placement), and the repository commit.

The document is canonical JSON (sorted keys, fixed separators, lists in a fixed order), so the
same inputs give the same bytes and so the same sha256. It holds no time, host or path of the
build: those would make two builds of one commit differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from bake.errors import BakeError
from bake.locks.apt import APT_LOCK, AptLock, load_apt_lock
from bake.locks.dockerfile import pinned_inputs
from bake.locks.licenses import read_license
from bake.locks.lockfile import MODELS_LOCK, NODES_LOCK, REQUIREMENTS_LOCK, repo_root
from bake.locks.models import ModelsLock, load_models_lock
from bake.locks.nodes import NodesLock, load_nodes_lock
from bake.locks.requirements import RequirementsLock, load_requirements_lock

FORMAT_VERSION = 1
DEFAULT_OUT = "/opt/bake/provenance.json"
SAGE_WHEEL = "sageattention-*.whl"


def base_images(dockerfile_text: str) -> list[dict[str, str]]:
    """Every external image the Dockerfile builds FROM (after expanding ARG defaults), with its
    digest; a stage built on another stage is not an input. A frontend or an image of any
    line without a digest is refused: it could be anything on the day of the build."""
    return pinned_inputs(dockerfile_text).base_images()


def dockerfile_record(dockerfile_text: str) -> dict[str, Any]:
    """The Dockerfile as an input: its sha256, the frontend its `# syntax=` line names and
    every image a FROM, COPY --from or RUN --mount from names, each with its digest and the
    lines that use it."""
    digest = "sha256:" + hashlib.sha256(dockerfile_text.encode("utf-8")).hexdigest()
    return {"sha256": digest, **pinned_inputs(dockerfile_text).record()}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def sage_wheel(wheels_dir: Path) -> dict[str, str]:
    """The one SageAttention wheel in `wheels_dir` (what the image installed), by sha256."""
    wheels = sorted(wheels_dir.glob(SAGE_WHEEL))
    if len(wheels) != 1:
        raise BakeError(
            f"{wheels_dir}: expected exactly one {SAGE_WHEEL}, found {len(wheels)}; pass the "
            "folder `python -m bake build sageattention --out` wrote"
        )
    return {"file": wheels[0].name, "sha256": _sha256_file(wheels[0])}


def _wheels(requirements: RequirementsLock) -> list[dict[str, Any]]:
    return [
        {"name": pin.name, "version": pin.version, "sha256": sorted(pin.hashes)}
        for _, pin in sorted(requirements.pins.items())
    ]


def _git_entries(nodes: NodesLock, comfyui_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """ComfyUI and each custom node: the lock's pin, and the license of the folder as the image
    holds it (the lock's record is what update-locks saw; this is what was shipped)."""
    comfyui: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for entry in nodes.entries():
        if entry.kind == "source_build":
            continue
        if entry.locked is None:
            raise BakeError(
                f"{NODES_LOCK}: {entry.qualified} is not locked; run scripts/update-locks.py "
                f"--nodes {entry.name}"
            )
        folder = comfyui_dir if entry.kind == "comfyui" else comfyui_dir / "custom_nodes"
        if entry.kind == "custom_node":
            folder = folder / entry.name
        if not folder.is_dir():
            raise BakeError(
                f"{folder}: {entry.qualified} is not installed there; run `python -m bake "
                f"nodes install --comfyui-dir {comfyui_dir}` first"
            )
        record = {
            "url": entry.original.url,
            "rev": entry.locked.rev,
            "tree": entry.locked.tree,
            "license": read_license(folder).to_dict(),
        }
        if entry.kind == "comfyui":
            comfyui = record
        else:
            custom[entry.name] = record
    return comfyui, custom


def _source_builds(nodes: NodesLock) -> dict[str, Any]:
    return {
        entry.name: {
            "url": entry.original.url,
            "rev": entry.locked.rev if entry.locked else None,
            "tree": entry.locked.tree if entry.locked else None,
            "env": dict(sorted(entry.env.items())),
        }
        for entry in nodes.entries()
        if entry.kind == "source_build"
    }


def _models(models: ModelsLock) -> dict[str, Any]:
    """Every model entry; one that is not locked (an optional one the build and the boot leave
    out) is named with `locked: false`, never given hashes it does not have."""
    found: dict[str, Any] = {}
    for entry in models.entries():
        record: dict[str, Any] = {
            "dest": entry.dest,
            "placement": entry.placement,
            "optional": entry.optional,
            "locked": entry.locked is not None,
        }
        if entry.locked is not None:
            record.update(
                size=entry.locked.size, sha256=entry.locked.sha256, blake3=entry.locked.blake3
            )
            if entry.locked.revision is not None:
                record["revision"] = entry.locked.revision
        found[entry.name] = record
    return found


def _apt(apt: AptLock) -> dict[str, Any]:
    return {
        "snapshot": apt.snapshot,
        "pinned": {name: apt.pinned[name] for name in sorted(apt.pinned)},
    }


def build(
    *,
    root: Path,
    comfyui_dir: Path,
    sage_wheels: Path | None,
    commit: str | None,
    dockerfile: Path | None = None,
) -> dict[str, Any]:
    """The provenance document of an image built from the locks at `root`, with ComfyUI and
    the nodes installed at `comfyui_dir`."""
    dockerfile = dockerfile or root / "Dockerfile"
    try:
        dockerfile_text = dockerfile.read_text(encoding="utf-8")
    except OSError as exc:
        raise BakeError(f"{dockerfile}: cannot read the Dockerfile: {exc.strerror}") from None
    nodes = load_nodes_lock(root / NODES_LOCK)
    comfyui, custom_nodes = _git_entries(nodes, comfyui_dir)
    locks = [NODES_LOCK, MODELS_LOCK, REQUIREMENTS_LOCK, APT_LOCK]
    return {
        "format": FORMAT_VERSION,
        "commit": commit or None,
        "base_images": base_images(dockerfile_text),
        "dockerfile": dockerfile_record(dockerfile_text),
        "apt": _apt(load_apt_lock(root / APT_LOCK)),
        "python": {"wheels": _wheels(load_requirements_lock(root / REQUIREMENTS_LOCK))},
        "sageattention": {
            "source": _source_builds(nodes).get("sageattention"),
            "wheel": sage_wheel(sage_wheels) if sage_wheels is not None else None,
        },
        "comfyui": comfyui,
        "custom_nodes": custom_nodes,
        "models": _models(load_models_lock(root / MODELS_LOCK)),
        "locks": {name: _sha256_file(root / name) for name in locks},
    }


def canonical(document: dict[str, Any]) -> bytes:
    """The document's bytes: sorted keys, two-space indent, UTF-8, one final newline."""
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def cli(args: argparse.Namespace) -> int:
    root = repo_root()
    document = build(
        root=root,
        comfyui_dir=args.comfyui_dir,
        sage_wheels=args.sage_wheels,
        commit=args.commit,
        dockerfile=args.dockerfile,
    )
    data = canonical(document)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    if not document["commit"]:
        print(
            "warning: no repository commit given (--commit, or the BAKE_COMMIT build "
            "argument): the document cannot name the source it was built from",
            file=sys.stderr,
        )
    restricted = sorted(
        name
        for name, node in document["custom_nodes"].items()
        if node["license"].get("restriction")
    )
    for name in restricted:
        print(
            f"warning: custom_nodes.{name}: its license restricts commercial use "
            f"({document['custom_nodes'][name]['license']['restriction']})",
            file=sys.stderr,
        )
    print(f"provenance: {out} sha256:{hashlib.sha256(data).hexdigest()}")
    return 0
