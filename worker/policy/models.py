"""The model policy: a job loads only model files that the models lock holds and the boot
verified (MODEL_POLICY=locked), or, with MODEL_POLICY=open, any file on the volume, each use
logged.

Which inputs name a model file is taken from the running ComfyUI, not from a table: an input
is a combo in its /object_info, and its value is a file that ComfyUI lists in one of its model
folders (GET /models, GET /models/<folder>, asked per job, so a file placed after the boot is
seen). Every file of that name in the folder's search directories (ComfyUI's models/ and the
extra-model-paths file) must be a verified copy of a lock entry, so whichever one ComfyUI
picks is verified. Nodes that keep checkpoints in their own folder and download a missing one
(Frame-Interpolation) are listed in NODE_CHECKPOINTS, checked the same way.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bake.models.stamps import identity
from worker.log_text import printable
from worker.policy.inputs import is_link

log = logging.getLogger("worker")

# Not model folders: ComfyUI lists every file of custom_nodes/ there (the nodes lock pins them).
NOT_MODEL_FOLDERS = frozenset({"custom_nodes"})


class ModelPolicyError(ValueError):
    """A job names a model file the policy refuses; the message names node, input and file."""


@dataclass(frozen=True)
class ModelUse:
    node_id: str
    class_type: str
    input: str
    folder: str
    name: str
    allowed: bool
    why: str = ""
    linked_from: str | None = None  # the input is fed by this node: no name to check


@dataclass(frozen=True)
class VerifiedModels:
    """What the boot established: the lock's dests (`models/<folder>/<name>`) and the real
    paths of the files verified against it (None when MODEL_VERIFY=off: names only)."""

    locked_dests: frozenset[str]
    verified_paths: frozenset[str] | None
    # real path -> identity when verified (device, inode, size, mtime_ns, ctime_ns); None: not
    # compared (unit tests that build the verdicts by hand)
    identities: Mapping[str, tuple[int, int, int, int, int]] | None = None

    def unverified(self, path: Path) -> str | None:
        """Why the file at `path` is not (any longer) the one the boot verified, or None."""
        if self.verified_paths is None:
            return None  # MODEL_VERIFY=off: names only
        real = os.path.realpath(path)
        if real not in self.verified_paths:
            return f"{path} was not verified at boot"
        if self.identities is not None:
            try:
                now = identity(os.stat(real))
            except OSError:
                now = None
            if now != self.identities.get(real):
                return f"{path} changed after the boot verified it"
        return None

    def check(self, folder: str, name: str, dirs: list[Path]) -> str | None:
        """None when every copy of `name` that ComfyUI could load for `folder` is a
        verified lock entry; else why not."""
        if f"models/{folder}/{name}" not in self.locked_dests:
            return "the models lock has no such file"
        found = [d / name for d in dirs if (d / name).exists()]
        if not found:
            return (
                "ComfyUI lists it, but not in a folder the worker knows (ComfyUI's models/ "
                "and the extra model paths), so it cannot have been verified"
            )
        for path in found:
            if why := self.unverified(path):
                return why
        return None


Combos = dict[str, dict[str, frozenset[str]]]


def combo_inputs(object_info: dict[str, Any]) -> Combos:
    """class_type -> its combo inputs -> their options, from ComfyUI's /object_info."""
    combos: Combos = {}
    for class_type, info in object_info.items():
        names: dict[str, frozenset[str]] = {}
        spec = info.get("input", {}) if isinstance(info, dict) else {}
        for category in ("required", "optional"):
            for name, entry in (spec.get(category) or {}).items():
                if not (isinstance(entry, list) and entry):
                    continue
                if isinstance(entry[0], list):
                    options = entry[0]
                elif entry[0] == "COMBO":
                    extra = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
                    options = extra.get("options") or []
                else:
                    continue
                names[name] = frozenset(o for o in options if isinstance(o, str))
        combos[class_type] = names
    return combos


def candidates(
    prompt: dict[str, Any], combos: Combos, skip: Iterable[tuple[str, str]]
) -> list[tuple[str, str, str, str]]:
    """(node id, class, input, value) of every literal string at a combo input."""
    skipped = set(skip)
    found = []
    for node_id, node in prompt.items():
        class_type = node.get("class_type")
        for name, value in node.get("inputs", {}).items():
            if (
                isinstance(value, str)
                and name in combos.get(class_type, ())
                and (class_type, name) not in skipped
            ):
                found.append((node_id, class_type, name, value))
    return found


def linked_combos(
    prompt: dict[str, Any], combos: Combos, skip: Iterable[tuple[str, str]]
) -> list[tuple[str, str, str, str]]:
    """(node id, class, input, source node) of every combo input fed by a link. ComfyUI checks
    a combo's value against its options only when it is a literal: a link from a node with an
    any-type ("*") output passes its type check, and the loader opens whatever name arrives."""
    skipped = set(skip)
    found = []
    for node_id, node in prompt.items():
        class_type = node.get("class_type")
        for name, value in node.get("inputs", {}).items():
            if (
                is_link(value)
                and name in combos.get(class_type, ())
                and (class_type, name) not in skipped
            ):
                found.append((node_id, class_type, name, str(value[0])))
    return found


# Loras named outside any combo: Easy-Use's loaders and rgthree's Power Prompt load each
# `<lora:NAME[:weight...]>` of a prompt's text, and rgthree's Power Lora Loader takes a dict
# input `{"on": ..., "lora": NAME, "strength": ...}` per lora. Both match NAME loosely against
# the loras folder (exact, without extension, by base name).
LORA_TAG = re.compile(r"<lora:([^>]*)>", re.IGNORECASE)
LORA_FOLDER = "loras"
# ComfyUI's own text encoders load `embedding:NAME` (NAME, or NAME with .safetensors, .pt or
# .bin) from the embeddings folder, whatever node the text comes from.
EMBEDDING = re.compile(r"embedding:(\S+)")  # anywhere: over-approximated
EMBEDDINGS_FOLDER = "embeddings"
# VAELoader offers these names when vae_approx holds `<name>_encoder.*` and `<name>_decoder.*`,
# and loads both files (ComfyUI's nodes.py, VAELoader.load_taesd)
TAESD = frozenset({"taesd", "taesdxl", "taesd3", "taef1"})
TAESD_FOLDER = "vae_approx"


def _inputs(prompt: dict[str, Any]) -> Iterator[tuple[str, Any, str, Any]]:
    """(node id, class, input, value) of every input of the prompt."""
    for node_id, node in prompt.items():
        class_type = node.get("class_type")
        for name, value in node.get("inputs", {}).items():
            yield node_id, class_type, name, value


def embedded_embeddings(prompt: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(node id, class, input, NAME) of every `embedding:NAME` in a string input."""
    return [
        (node_id, class_type, name, match.group(1))
        for node_id, class_type, name, value in _inputs(prompt)
        if isinstance(value, str) and "embedding:" in value
        for match in EMBEDDING.finditer(value)
    ]


def _embedding_matches(listed: str, word: str) -> bool:
    """Whether ComfyUI could load the listed file for the word after `embedding:` (also with
    the commas, brackets and `:weight` of prompt syntax taken off: over-approximated)."""
    bare = re.sub(r":[0-9.]*$", "", word.strip(",()")).strip(",()")
    return any(n in (listed, os.path.splitext(listed)[0]) for n in (word, word.strip(","), bare))


def embedded_loras(prompt: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(node id, class, input, NAME) of every lora named in a string's text or a dict input."""
    found = []
    for node_id, class_type, name, value in _inputs(prompt):
        if isinstance(value, str) and "<" in value:
            for match in LORA_TAG.finditer(value):
                lora = match.group(1).strip(":").split(":")[0].strip()
                found.append((node_id, class_type, name, lora))
        elif isinstance(value, dict) and isinstance(value.get("lora"), str):
            found.append((node_id, class_type, name, value["lora"].strip()))
    return found


def _lora_matches(listed: str, name: str) -> bool:
    """Whether a node's loose lookup could pick the listed file for NAME (over-approximated:
    every file it could pick must be verified)."""
    listed_stem, name_stem = os.path.splitext(listed)[0], os.path.splitext(name)[0]
    return (
        name in (listed, listed_stem)
        or name_stem == listed_stem
        or os.path.basename(listed) in (name, os.path.basename(name))
        or os.path.basename(listed_stem) in (name_stem, os.path.basename(name_stem))
    )


def model_uses(
    prompt: dict[str, Any],
    *,
    combos: dict[str, frozenset[str]],
    folders: list[str],
    list_folder: Callable[[str], list[str]],
    dirs: dict[str, list[Path]],
    verified: VerifiedModels,
    skip: Iterable[tuple[str, str]] = (),
) -> list[ModelUse]:
    """Every model file the prompt names, with the policy's verdict on each."""
    found = candidates(prompt, combos, skip)
    linked = linked_combos(prompt, combos, skip)
    loras = [(*use, LORA_FOLDER) for use in embedded_loras(prompt)]
    loras += [(*use, EMBEDDINGS_FOLDER) for use in embedded_embeddings(prompt)]
    if not found and not linked and not loras:
        return []
    listings = {f: set(list_folder(f)) for f in folders if f not in NOT_MODEL_FOLDERS}
    uses = []
    for node_id, class_type, name, value in found:
        for folder, files in listings.items():
            if value in files:
                why = verified.check(folder, value, dirs.get(folder, []))
                uses.append(
                    ModelUse(node_id, class_type, name, folder, value, why is None, why or "")
                )
        if value in TAESD:  # a name that stands for two files of vae_approx
            for listed in sorted(listings.get(TAESD_FOLDER, ())):
                if listed.startswith((f"{value}_encoder.", f"{value}_decoder.")):
                    why = verified.check(TAESD_FOLDER, listed, dirs.get(TAESD_FOLDER, []))
                    uses.append(
                        ModelUse(
                            node_id, class_type, name, TAESD_FOLDER, listed, why is None, why or ""
                        )
                    )
    for node_id, class_type, name, named, folder in loras:
        match = _lora_matches if folder == LORA_FOLDER else _embedding_matches
        matches = sorted(f for f in listings.get(folder, set()) if match(f, named))
        if not matches:
            why = f"no file of the {folder} folder matches it, so none can have been verified"
            uses.append(ModelUse(node_id, class_type, name, folder, named, False, why))
        for listed in matches:
            why = verified.check(folder, listed, dirs.get(folder, []))
            uses.append(ModelUse(node_id, class_type, name, folder, listed, why is None, why or ""))
    # A linked combo is a model input when its options are files of a model folder (or it has
    # none: an empty model folder, or options read before a file appeared): no name to check.
    model_files = set().union(*listings.values()) if listings else set()
    for node_id, class_type, name, source in linked:
        options = combos[class_type][name]
        if not options or options & model_files:
            uses.append(ModelUse(node_id, class_type, name, "", "", False, "", source))
    return uses


def linked_text_uses(
    prompt: dict[str, Any],
    text_inputs: Mapping[str, frozenset[str]],
    unverified: list[str],
) -> list[ModelUse]:
    """Text inputs of text encoders (`text_inputs`: class -> its STRING inputs, for classes
    that take a CLIP) fed by a link. ComfyUI's tokenizer loads every `embedding:NAME` of the
    text from the embeddings folders, and a computed text is not known before the job runs: such
    a link is refused while those folders hold files the boot did not verify (`unverified`)."""
    if not unverified:
        return []
    why = (
        "a text encoder loads each `embedding:NAME` of its text, this text is computed while "
        "the job runs, and the embeddings folders hold files the boot did not verify ("
        + ", ".join(unverified[:5])
        + (" ..." if len(unverified) > 5 else "")
        + ")"
    )
    return [
        ModelUse(node_id, class_type, name, EMBEDDINGS_FOLDER, "", False, why, str(value[0]))
        for node_id, class_type, name, value in _inputs(prompt)
        if name in text_inputs.get(class_type, ()) and is_link(value)
    ]


def enforce(uses: list[ModelUse], mode: str, titles: dict[str, str]) -> None:
    """Refuse the first use the lock does not cover (locked), or log each (open)."""
    for use in uses:
        if use.allowed:
            continue
        title = f' "{titles[use.node_id]}"' if use.node_id in titles else ""
        where = f"node {use.node_id}{title} ({use.class_type}), input {use.input!r}"
        if use.linked_from is not None:
            if mode == "open":
                log.warning(
                    "%s",
                    printable(
                        f"MODEL_POLICY=open: {where} is fed by node {use.linked_from}: it "
                        "loads a model file whose name is computed while the job runs"
                    ),
                )
                continue
            if use.why:
                raise ModelPolicyError(f"{where} is fed by node {use.linked_from}: {use.why}")
            raise ModelPolicyError(
                f"{where} names a model file and is fed by node {use.linked_from}: which file "
                "it loads cannot be checked before the job runs; set it as a literal value"
            )
        if mode == "open":
            # titles and file names come from the job: escaped, they cannot forge log lines
            log.warning(
                "%s",
                printable(
                    f"MODEL_POLICY=open: {where} loads {use.name!r} from {use.folder}, which "
                    f"is not a verified lock entry: {use.why}"
                ),
            )
            continue
        raise ModelPolicyError(
            f"{where}: the model file {use.name!r} in {use.folder} is not one the models lock "
            f"holds and the boot verified ({use.why}); this endpoint runs locked models only "
            "(MODEL_POLICY=locked)"
        )


# Nodes that load checkpoints from their own folder, not from a ComfyUI model folder, and
# download a missing one at run time: Frame-Interpolation keeps them in
# ckpts/<model type>/<name>. class_type -> (input, files under ckpts/ for each value; None:
# the value itself under the given model type).
VFI_CKPTS = "custom_nodes/ComfyUI-Frame-Interpolation/ckpts"
_GMFSS = "gmfss_fortuna/GMFSS_fortuna"
NODE_CHECKPOINTS: dict[str, tuple[str, str | dict[str, tuple[str, ...]]]] = {
    "AMT VFI": ("ckpt_name", "amt"),
    "CAIN VFI": ("ckpt_name", "cain"),
    "FILM VFI": ("ckpt_name", "film"),
    "FLAVR VFI": ("ckpt_name", "flavr"),
    "IFRNet VFI": ("ckpt_name", "ifrnet"),
    "IFUnet VFI": ("ckpt_name", "ifunet"),
    "M2M VFI": ("ckpt_name", "m2m"),
    "RIFE VFI": ("ckpt_name", "rife"),
    "Sepconv VFI": ("ckpt_name", "sepconv"),
    "STMFNet VFI": ("ckpt_name", "stmfnet"),
    "GMFSS Fortuna VFI": (
        "ckpt_name",
        {
            "GMFSS_fortuna_union": (
                "rife/rife46.pth",
                f"{_GMFSS}_flownet.pkl",
                f"{_GMFSS}_union_metric.pkl",
                f"{_GMFSS}_union_feat.pkl",
                f"{_GMFSS}_union_fusionnet.pkl",
            ),
            "GMFSS_fortuna": (
                f"{_GMFSS}_flownet.pkl",
                f"{_GMFSS}_metric.pkl",
                f"{_GMFSS}_feat.pkl",
                f"{_GMFSS}_fusionnet.pkl",
            ),
        },
    ),
}


def node_checkpoint_uses(
    prompt: dict[str, Any], comfyui_dir: Path, verified: VerifiedModels
) -> list[ModelUse]:
    """The checkpoints NODE_CHECKPOINTS nodes would load (or download), with the verdict: each
    must be a lock entry (`custom_nodes/.../ckpts/...`) whose file the boot verified."""
    uses = []
    for node_id, node in prompt.items():
        class_type = node.get("class_type")
        if class_type not in NODE_CHECKPOINTS:
            continue
        name, files = NODE_CHECKPOINTS[class_type]
        value = node.get("inputs", {}).get(name)
        if is_link(value):  # ComfyUI does not check a linked combo against its options
            uses.append(
                ModelUse(node_id, class_type, name, VFI_CKPTS, "", False, "", str(value[0]))
            )
            continue
        if not isinstance(value, str):
            continue  # a wrong type: ComfyUI's validation refuses it
        wanted = [f"{files}/{value}"] if isinstance(files, str) else files.get(value, ())
        for rel in wanted:
            dest = f"{VFI_CKPTS}/{rel}"
            why = ""
            if ".." in rel.split("/") or dest not in verified.locked_dests:
                why = "the models lock has no such file (the node would download it)"
            else:
                why = verified.unverified(comfyui_dir / dest) or ""
            uses.append(ModelUse(node_id, class_type, name, VFI_CKPTS, rel, not why, why))
    return uses
