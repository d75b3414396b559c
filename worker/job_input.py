"""Job input: validate what a caller sent and turn it into a ComfyUI prompt.

Accepts runpod-workers/worker-comfyui's shape (`workflow` as an API-format graph, `images` as
`[{name, image}]` with base64 or data-URI images) and adds named workflows, `overrides` and
image URLs. Everything here is pure; fetching URLs lives in image_fetch.py.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.log_text import excerpt
from worker.policy.inputs import is_link
from worker.policy.paths import PathInputError, check_file_names, is_prefix, writes_to_own_folder

KNOWN_KEYS = ("workflow", "images", "overrides", "comfy_org_api_key")
WORKFLOW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
MAX_NAME = 200
MAX_DEPTH = 64  # an API graph nests 4 levels deep; more is an attack on the recursion limit
DEFAULT_MAX_IMAGE_BYTES = 50 * 1024 * 1024


class JobInputError(ValueError):
    """The job's input is wrong; the message says which field and why."""


@dataclass(frozen=True)
class InputImage:
    name: str
    data: bytes | None = None
    url: str | None = None


@dataclass
class JobSpec:
    prompt: dict[str, Any]
    images: list[InputImage] = field(default_factory=list)
    extra_data: dict[str, Any] = field(default_factory=dict)

    @property
    def titles(self) -> dict[str, str]:
        return node_titles(self.prompt)


def node_titles(prompt: dict[str, Any]) -> dict[str, str]:
    return {
        nid: str(node["_meta"]["title"])
        for nid, node in prompt.items()
        if isinstance(node, dict)
        and isinstance(node.get("_meta"), dict)
        and node["_meta"].get("title")
    }


def parse_job_input(
    raw: Any,
    *,
    workflows_dir: Path,
    allow_raw: bool,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
) -> JobSpec:
    if not isinstance(raw, dict):
        raise JobInputError(
            f"input must be an object with a `workflow`, found {type(raw).__name__}"
        )
    unknown = sorted(set(raw) - set(KNOWN_KEYS))
    if unknown:
        raise JobInputError(
            f"unknown input field(s) {', '.join(map(repr, unknown))}; known "
            f"fields: {', '.join(KNOWN_KEYS)}"
        )
    if "workflow" not in raw:
        raise JobInputError(
            "input.workflow is missing: give an API-format workflow or the name "
            f"of one of: {', '.join(available_workflows(workflows_dir)) or '-'}"
        )
    check_depth(raw, "input")
    workflow = raw["workflow"]
    if isinstance(workflow, str):
        prompt = load_named_workflow(workflow, workflows_dir)
    elif isinstance(workflow, dict):
        if not allow_raw:
            raise JobInputError(
                "this endpoint accepts only named workflows "
                "(ALLOW_RAW_WORKFLOWS=0): set input.workflow to one of: "
                f"{', '.join(available_workflows(workflows_dir)) or '-'}"
            )
        prompt = copy_json(workflow)
    else:
        raise JobInputError(
            f"input.workflow must be an object (API format) or a workflow name, "
            f"found {type(workflow).__name__}"
        )
    check_graph(prompt)
    if "overrides" in raw:
        prompt = apply_overrides(prompt, raw["overrides"])
    check_output_prefixes(prompt)
    try:
        check_file_names(prompt)
    except PathInputError as exc:
        raise JobInputError(str(exc)) from None
    images = parse_images(raw.get("images", []), max_image_bytes)
    extra: dict[str, Any] = {}
    if raw.get("comfy_org_api_key") is not None:
        if not isinstance(raw["comfy_org_api_key"], str):
            raise JobInputError("input.comfy_org_api_key must be a string")
        extra["api_key_comfy_org"] = raw["comfy_org_api_key"]
    return JobSpec(prompt, images, extra)


def check_depth(value: Any, where: str) -> None:
    """Refuse input nested deeper than MAX_DEPTH, walking it without recursion (copying or
    reading a deeper structure would end in RecursionError)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise JobInputError(f"{where} is nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def copy_json(value: Any) -> Any:
    """A copy of a JSON value (what a job's input is) that shares no dict or list with it,
    so that what the worker changes in a prompt never reaches the caller's job. A third of
    copy.deepcopy's time: JSON holds no shared or cyclic parts for its memo to find, and its
    other values (str, int, float, bool, None) are immutable. Recursive, like deepcopy: call
    it on input that check_depth has bounded."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value


def available_workflows(workflows_dir: Path) -> list[str]:
    if not workflows_dir.is_dir():
        return []
    return sorted(
        p.name.removesuffix(".json").removesuffix("_api") for p in workflows_dir.glob("*.json")
    )


def load_named_workflow(name: str, workflows_dir: Path) -> dict[str, Any]:
    if name.lstrip().startswith("{"):
        try:
            parsed = json.loads(name)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            raise JobInputError(
                f"input.workflow is a JSON string ({len(name):,} characters) holding a workflow:"
                " send the workflow as an object, not a JSON string"
            )
    if not WORKFLOW_NAME.fullmatch(name) or ".." in name:
        raise JobInputError(
            f"input.workflow {excerpt(name)} is not a valid workflow name (letters, digits, "
            "'_', '-', '.')"
        )
    base = name.removesuffix(".json")
    for candidate in (f"{base}_api.json", f"{base}.json"):
        path = workflows_dir / candidate
        if path.is_file():
            try:
                prompt = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:  # a broken file in the image, not the caller's mistake
                raise JobInputError(
                    f"the workflow {excerpt(name)} ({candidate}) cannot be read: {exc}"
                ) from None
            if not isinstance(prompt, dict):
                raise JobInputError(
                    f"the workflow {excerpt(name)} ({candidate}) is not an API-format "
                    f"graph (an object), found {type(prompt).__name__}"
                )
            return prompt
    raise JobInputError(
        f"unknown workflow {excerpt(name)}; available: "
        f"{', '.join(available_workflows(workflows_dir)) or '-'}"
    )


def check_graph(prompt: dict[str, Any]) -> None:
    if "nodes" in prompt and "links" in prompt:
        raise JobInputError(
            "input.workflow is in ComfyUI's UI format (it has `nodes` and "
            "`links`); export it with 'Export (API)' and send that"
        )
    if not prompt:
        raise JobInputError("input.workflow is empty")
    for nid, node in prompt.items():
        if not isinstance(node, dict):
            raise JobInputError(
                f"input.workflow[{excerpt(nid)}] must be an object with class_type "
                f"and inputs, found {type(node).__name__}"
            )
        if not isinstance(node.get("class_type"), str):
            raise JobInputError(f"input.workflow[{excerpt(nid)}] has no class_type")
        if not isinstance(node.get("inputs", {}), dict):
            raise JobInputError(f"input.workflow[{excerpt(nid)}].inputs must be an object")


def apply_overrides(prompt: dict[str, Any], overrides: Any) -> dict[str, Any]:
    """Set node inputs by `"<node id>.<input>"` or `"<node title>.<input>"`."""
    if not isinstance(overrides, dict):
        raise JobInputError(
            f'input.overrides must be an object of "<node id or title>.<input>"'
            f": value, found {type(overrides).__name__}"
        )
    prompt = copy_json(prompt)
    titles = node_titles(prompt)
    by_title: dict[str, list[str]] = {}  # built once: a lookup per override stays O(1)
    for nid, title in titles.items():
        by_title.setdefault(title, []).append(nid)
    for key, value in overrides.items():
        target, dot, input_name = str(key).rpartition(".")
        if not dot or not target or not input_name:
            raise JobInputError(
                f'input.overrides key {excerpt(key)} must look like "<node id or title>.<input>"'
            )
        if target in prompt:
            node_id = target
        else:
            matches = by_title.get(target, [])
            if not matches:
                shown = ", ".join(sorted(set(titles.values()))) or "-"
                if len(shown) > 200:
                    shown = f"{shown[:200]}... ({len(titles)} titles)"
                raise JobInputError(
                    f"input.overrides {excerpt(key)}: no node has the id or title "
                    f"{excerpt(target)} (titles: {shown})"
                )
            if len(matches) > 1:
                raise JobInputError(
                    f"input.overrides {excerpt(key)}: the title {excerpt(target)} names "
                    f"nodes {', '.join(matches)}; use a node id"
                )
            node_id = matches[0]
        inputs = prompt[node_id].setdefault("inputs", {})
        if input_name not in inputs:
            raise JobInputError(
                f"input.overrides {excerpt(key)}: node {node_id} "
                f"({prompt[node_id]['class_type']}) has no input {excerpt(input_name)}"
                f" (inputs: {', '.join(sorted(inputs)) or '-'})"
            )
        if is_link(inputs[input_name]):
            raise JobInputError(
                f"input.overrides {excerpt(key)}: input {excerpt(input_name)} of node "
                f"{node_id} is connected to node {inputs[input_name][0]}; "
                "only widget values can be overridden"
            )
        if not isinstance(value, str | int | float | bool) or value is None:
            raise JobInputError(
                f"input.overrides {excerpt(key)}: the value must be a string, number "
                f"or boolean, found {type(value).__name__}"
            )
        inputs[input_name] = value
    return prompt


def safe_name(name: Any, where: str) -> str:
    """An input file name that cannot leave ComfyUI's input folder."""
    if not isinstance(name, str) or not name.strip():
        raise JobInputError(f"{where} must be a non-empty file name")
    if (
        "/" in name
        or "\\" in name
        or name in (".", "..")
        or ".." in name
        or name.startswith(".")
        or "\x00" in name
        or len(name) > MAX_NAME
        or any(ord(c) < 32 for c in name)
    ):
        raise JobInputError(
            f"{where} {excerpt(name)} is not a safe file name: no path separators, "
            f"no '..', no leading '.', at most {MAX_NAME} characters"
        )
    return name


def parse_images(raw: Any, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> list[InputImage]:
    if not isinstance(raw, list):
        raise JobInputError(
            f"input.images must be a list of {{name, image}}, found {type(raw).__name__}"
        )
    images: list[InputImage] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"input.images[{i}]"
        if not isinstance(item, dict) or set(item) - {"name", "image"}:
            raise JobInputError(f"{where} must be an object with exactly `name` and `image`")
        name = safe_name(item.get("name"), f"{where}.name")
        if name in seen:
            raise JobInputError(f"{where}.name {excerpt(name)} is used twice")
        seen.add(name)
        value = item.get("image")
        if not isinstance(value, str) or not value:
            raise JobInputError(f"{where}.image must be base64, a data URI or an http(s) URL")
        if value.startswith(("http://", "https://")):
            images.append(InputImage(name, url=value))
        elif re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value):
            raise JobInputError(f"{where}.image: only http and https URLs are accepted")
        else:
            images.append(InputImage(name, data=decode_base64(value, f"{where}.image", max_bytes)))
    return images


def decode_base64(value: str, where: str, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> bytes:
    if value.startswith("data:"):
        header, comma, value = value.partition(",")
        if not comma or ";base64" not in header:
            raise JobInputError(
                f"{where}: a data URI must be base64-encoded (data:<type>;base64,...)"
            )
    # Checked on the text, before anything is decoded or copied: 4 characters carry 3 bytes
    # (line breaks, if any, count as characters, so the cap errs on the strict side).
    size = len(value) * 3 // 4 - len(value[-2:]) + len(value[-2:].rstrip("="))
    if size > max_bytes:
        raise JobInputError(
            f"{where} is about {size:,} bytes, over the limit of {max_bytes:,} "
            "(MAX_INPUT_IMAGE_BYTES)"
        )
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise JobInputError(f"{where} is not valid base64") from None
    if not data:
        raise JobInputError(f"{where} is empty")
    return data


def rename_references(prompt: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """Point inputs at the names ComfyUI actually stored uploads under."""
    if not renames or all(a == b for a, b in renames.items()):
        return prompt
    for node in prompt.values():
        for key, value in node.get("inputs", {}).items():
            if isinstance(value, str) and value in renames:
                node["inputs"][key] = renames[value]
    return prompt


def scope_outputs(prompt: dict[str, Any], folder: str) -> dict[str, Any]:
    """Write this job's files into their own output subfolder.

    ComfyUI answers an identical resubmission from its cache with the previous job's file
    names, and those files are deleted after each job. A per-job folder in `filename_prefix`
    re-runs only the saving nodes (everything upstream stays cached), gives every job files of
    its own, and lets the worker remove them all (VideoHelperSuite's side PNGs included).
    """
    check_output_prefixes(prompt)
    for node in prompt.values():
        inputs = node.get("inputs", {})
        if writes_to_own_folder(node.get("class_type")):
            continue  # e.g. SaveStringKJ: its prefix is inside its output_folder, confined
        for name, prefix in inputs.items():
            if isinstance(prefix, str) and is_prefix(node.get("class_type"), name):
                inputs[name] = f"{folder}/{prefix}"
    return prompt


def check_output_prefixes(prompt: dict[str, Any]) -> None:
    """An output prefix (from the workflow or an override) stays in the job's folder."""
    for node_id, node in prompt.items():
        for name, prefix in node.get("inputs", {}).items():
            if not isinstance(prefix, str) or not is_prefix(node.get("class_type"), name):
                continue
            if (
                prefix.startswith(("/", "\\"))
                or ".." in re.split(r"[/\\]", prefix)
                or any(ord(c) < 32 for c in prefix)
            ):
                raise JobInputError(
                    f"input.workflow[{excerpt(node_id)}] {name} {excerpt(prefix)} must "
                    "stay inside the output folder: no leading '/' and no '..' (and no "
                    "control characters)"
                )
