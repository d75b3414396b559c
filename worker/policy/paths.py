"""Every input of the locked node set that names a file or folder, and how a job may set it.

A job's files live in its own folders, `input/job-<id>/` and `output/job-<id>/`. The tables
below classify each input that takes a file-system path:

- READ / WRITE: a path the node reads or writes. The value must be a literal (not a link: a
  computed path cannot be checked before it runs); a relative value is taken inside the job's
  input folder (READ) or output folder (WRITE); either way, once `..` and symlinks are resolved
  it must lie inside the job's input or output folder, and the node is given that absolute path.
- NAME: one part of a file name (a name or an extension) that the node joins to a folder: no
  separators, no `..`, no control characters.
- PREFIX: an output file-name prefix, relative to ComfyUI's output folder; the worker puts the
  job's folder in front of it (job_input.scope_outputs). Any input named `filename_prefix` or
  `save_prefix` is one.
- FILE_NAMES: a combo whose value is a file (or folder) in ComfyUI's input or output folder,
  such as LoadImage.image: a plain name, checked like `images[].name`.

NOT_PATHS lists inputs whose names look like paths but are not, with why, so that
tests/worker/test_path_inputs.py can fail when a locked node gains a path-like input that no
table classifies.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from worker.policy.inputs import is_link

READ = "read"
WRITE = "write"
NAME = "name"

PATH_INPUTS: dict[tuple[str, str], str] = {
    ("CameraPoseVisualizer", "pose_file_path"): READ,
    ("CreateAudioMask", "audio_path"): READ,
    ("DiTBlockLoraLoader", "opt_lora_path"): READ,
    ("DiffusionModelLoaderKJ", "extra_state_dict"): READ,
    ("EndRecordCUDAMemoryHistory", "output_path"): WRITE,
    ("LoadImagesFromFolderKJ", "folder"): READ,
    ("LoadTrainingDataset", "folder_name"): READ,
    ("LoadVideosFromFolder", "video"): READ,
    ("Preview3D", "model_file"): READ,
    ("Read JSON file [Crystools]", "path_to_json"): READ,
    ("SaveImageDataSetToFolder", "folder_name"): WRITE,
    ("SaveImageKJ", "output_folder"): WRITE,
    ("SaveImageKJ", "caption_file_extension"): NAME,
    ("SaveImageTextDataSetToFolder", "folder_name"): WRITE,
    ("SaveStringKJ", "output_folder"): WRITE,
    ("SaveStringKJ", "file_extension"): NAME,
    ("SaveText|pysssss", "file"): NAME,
    ("SaveTrainingDataset", "folder_name"): WRITE,
    ("VHS_LoadAudio", "audio_file"): READ,
    ("VHS_LoadImagePath", "image"): READ,
    ("VHS_LoadImagesPath", "directory"): READ,
    ("VHS_LoadVideoFFmpegPath", "video"): READ,
    ("VHS_LoadVideoPath", "video"): READ,
    ("VHS_SelectLatest", "filename_prefix"): READ,  # a path below ComfyUI's folder, not output/
    ("VHS_SelectLatest", "filename_postfix"): NAME,
    ("VisualizeCUDAMemoryHistory", "snapshot_path"): READ,
    ("easy imagesCountInDirectory", "directory"): READ,
    ("easy isFileExist", "file_path"): READ,
    ("easy isFileExist", "file_name"): NAME,
    ("easy isFileExist", "file_extension"): NAME,
    ("easy loadImagesForLoop", "directory"): READ,
    ("easy poseEditor", "image"): READ,
    ("easy removeLocalImage", "file_name"): NAME,
    ("easy saveText", "output_file_path"): WRITE,
    ("easy saveText", "file_name"): NAME,
    ("easy saveTextLazy", "output_file_path"): WRITE,
    ("easy saveTextLazy", "file_name"): NAME,
}

# Output prefixes, relative to ComfyUI's output folder (the worker scopes them per job).
PREFIX_NAMES = ("filename_prefix", "save_prefix")
PREFIX_INPUTS: set[tuple[str, str]] = {("SaveLoRA", "prefix")}

# Combos naming a file or folder in ComfyUI's input (or output) folder.
FILE_NAMES: dict[tuple[str, str], str] = {
    ("LoadImage", "image"): "input",
    ("LoadImageMask", "image"): "input",
    ("LoadImageOutput", "image"): "output",
    ("LoadAndResizeImage", "image"): "input",
    ("Load image with metadata [Crystools]", "image"): "input",
    ("Mask Sketch", "image"): "input",
    ("ImagePreviewFromLatent+", "image"): "input",
    ("Load3D", "model_file"): "input",
    ("LoadVideo", "file"): "input",
    ("TextLoadFile", "text_file"): "input",
    ("GeminiInputFiles", "file"): "input",
    ("OpenAIInputFiles", "file"): "input",
    ("LoadText|pysssss", "file"): "input",
    ("VHS_LoadAudioUpload", "audio"): "input",
    ("VHS_LoadVideo", "video"): "input",
    ("VHS_LoadVideoFFmpeg", "video"): "input",
    ("VHS_LoadImages", "directory"): "input",
    ("LoadImageDataSetFromFolder", "folder"): "input",
    ("LoadImageTextDataSetFromFolder", "folder"): "input",
}

NOT_PATHS: dict[tuple[str, str], str] = {
    ("AddTextPrefix", "prefix"): "text put before each string of a list",
    ("ConsoleDebug+", "prefix"): "text printed before a value in the log",
    ("ModelSaveKJ", "model_key_prefix"): "a prefix of state-dict keys",
    ("PlaySound|pysssss", "file"): "a sound the browser plays; the server never opens it",
    ("Show any [Crystools]", "prefix"): "text shown before a value",
    ("SomethingToString", "prefix"): "text put before the string",
}

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# An annotated name makes ComfyUI read from another folder. ComfyUI only asks whether the
# name ends in "[output]" (then drops the 9 characters before it, whatever they are:
# "x.png_[output]" is output/x.png), and VideoHelperSuite first strips whitespace and one
# quote off each end ('x.mp4 [output]"'); so any such ending counts, quotes and spaces aside.
_ANNOTATION = re.compile(r"\[(input|output|temp)\]$", re.IGNORECASE)
_STRIPPED = " \t\r\n\v\f\"'"


class PathInputError(ValueError):
    """A path input a job may not set; the message names node, input and value."""


def _where(node_id: str, node: dict[str, Any], name: str) -> str:
    return f"node {node_id} ({node.get('class_type')}), input {name!r}"


_WRITERS = frozenset(c for (c, _), kind in PATH_INPUTS.items() if kind == WRITE)


def writes_to_own_folder(class_type: Any) -> bool:
    """Whether the node has a WRITE path input: its output prefix is then relative to that
    (confined) folder, not to ComfyUI's output folder, and is not given the job's folder."""
    return class_type in _WRITERS


def is_prefix(class_type: Any, name: str) -> bool:
    """Whether this input is an output prefix (relative to ComfyUI's output folder)."""
    if (class_type, name) in PATH_INPUTS:
        return False
    return name in PREFIX_NAMES or (class_type, name) in PREFIX_INPUTS


def plain_name_problem(value: str) -> str | None:
    """Why `value` is not a plain file name, or None."""
    if value in (".", "..") or ".." in value:
        return "'..' is not allowed"
    if "/" in value or "\\" in value:
        return "path separators are not allowed"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "control characters are not allowed"
    return None


def check_file_names(
    prompt: dict[str, Any], known: Mapping[str, Collection[str]] | None = None
) -> None:
    """Combo inputs naming a file in ComfyUI's input/output folder hold plain names; with
    `known` (folder -> the names a job may load from it: its own uploads and the files the
    folder held at boot), only those: a file another job left behind is never loaded."""
    for node_id, node in prompt.items():
        inputs = node.get("inputs", {})
        for name, value in inputs.items():
            if (node.get("class_type"), name) not in FILE_NAMES:
                continue
            where = _where(node_id, node, name)
            if is_link(value):
                raise PathInputError(
                    f"{where} names a file and is fed by node {value[0]}: a file name must be "
                    "a literal value"
                )
            if not isinstance(value, str):
                continue  # ComfyUI's own validation names the wrong type
            problem = plain_name_problem(value)
            if problem is None and (
                value.startswith(".") or _ANNOTATION.search(value.strip(_STRIPPED))
            ):
                problem = "no leading '.' and no '[output]'/'[input]'/'[temp]' folder suffix"
            if problem is not None:
                raise PathInputError(f"{where}: {value!r} is not a plain file name: {problem}")
            folder = FILE_NAMES[(node.get("class_type"), name)]
            if known is not None and value not in known.get(folder, ()):
                raise PathInputError(
                    f"{where}: {value!r} is neither one of this job's images (input.images) nor "
                    f"a file the image ships in ComfyUI's {folder} folder"
                )


def confine_paths(prompt: dict[str, Any], input_dir: Path, output_dir: Path) -> dict[str, Any]:
    """Check every path input against the job's folders, and give nodes absolute paths.

    `input_dir` and `output_dir` are the job's own folders. Returns `prompt`, changed in
    place: READ/WRITE values become the resolved absolute path.
    """
    roots: list[Path] = []  # resolved on first use: most prompts have no path input
    for node_id, node in prompt.items():
        class_type = node.get("class_type")
        inputs = node.get("inputs", {})
        for name, value in list(inputs.items()):
            kind = PATH_INPUTS.get((class_type, name))
            prefix = kind is None and is_prefix(class_type, name)
            if kind is None and not prefix:
                continue
            where = _where(node_id, node, name)
            if is_link(value):
                raise PathInputError(
                    f"{where} is a path and is fed by node {value[0]}: a computed path cannot "
                    "be checked before the job runs; set it as a literal value"
                )
            if not isinstance(value, str) or prefix:
                continue  # prefixes are checked and scoped by job_input.scope_outputs
            if kind == NAME:
                problem = plain_name_problem(value)
                if problem is not None:
                    raise PathInputError(f"{where}: {value!r} must be a plain name: {problem}")
                continue
            if "\x00" in value or any(ord(c) < 32 for c in value):
                raise PathInputError(f"{where}: {value!r} contains control characters")
            if _URL.match(value):  # VHS's path loaders would download it (and follow anything)
                raise PathInputError(
                    f"{where}: {value!r} is a URL; a path input takes a path in the job's "
                    "folders (send images as input.images)"
                )
            if not roots:
                roots += [Path(os.path.realpath(input_dir)), Path(os.path.realpath(output_dir))]
            base = roots[0] if kind == READ else roots[1]
            resolved = Path(os.path.realpath(base / value))  # an absolute value replaces base
            if not any(resolved == root or root in resolved.parents for root in roots):
                raise PathInputError(
                    f"{where}: {value!r} is outside this job's folders; a path input must stay "
                    "inside the job's input or output folder (relative paths are taken there)"
                )
            inputs[name] = str(resolved)
    return prompt
