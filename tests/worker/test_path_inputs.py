"""The path-input tables cover the locked node set, and confinement resolves `..` and symlinks.

object_info() is the real server's /object_info with the locked node set (the fake ComfyUI
serves the same file).
"""

from __future__ import annotations

import os
import re
from functools import cache
from typing import Any

import pytest
from support.fake_comfyui import object_info as _object_info

from worker.job_input import scope_outputs
from worker.policy.paths import (
    FILE_NAMES,
    NAME,
    NOT_PATHS,
    PATH_INPUTS,
    PathInputError,
    check_file_names,
    confine_paths,
    is_prefix,
)

PATH_LIKE = re.compile(
    r"path|folder|dir|file|output|save|load|prefix|postfix|extension|location", re.I
)


@cache
def object_info() -> dict[str, Any]:
    return _object_info()


def inputs_of(info: dict[str, Any]):
    for class_type, spec in info.items():
        for category in ("required", "optional"):
            for name, entry in (spec["input"].get(category) or {}).items():
                yield class_type, name, entry


def test_every_path_like_string_input_is_classified():
    unclassified = [
        f"{class_type}.{name}"
        for class_type, name, entry in inputs_of(object_info())
        if entry[0] == "STRING"
        and PATH_LIKE.search(name)
        and (class_type, name) not in PATH_INPUTS
        and (class_type, name) not in NOT_PATHS
        and not is_prefix(class_type, name)
    ]
    assert unclassified == [], (
        "path-like inputs of the locked nodes that worker/policy/paths.py does not classify "
        "(PATH_INPUTS, or NOT_PATHS with why)"
    )


def test_every_combo_that_uploads_names_a_file_name_input():
    uploads = [
        f"{class_type}.{name}"
        for class_type, name, entry in inputs_of(object_info())
        if len(entry) > 1
        and isinstance(entry[1], dict)
        and any(k.endswith("_upload") and v for k, v in entry[1].items())
        and (class_type, name) not in FILE_NAMES
    ]
    assert uploads == []


def test_the_table_names_only_inputs_that_exist():
    existing = {(c, n) for c, n, _ in inputs_of(object_info())}
    for table in (PATH_INPUTS, FILE_NAMES, NOT_PATHS):
        assert [key for key in table if key not in existing] == []


@pytest.fixture
def job(tmp_path):
    comfy = tmp_path / "comfyui"
    for kind in ("input", "output"):
        (comfy / kind / "job-1").mkdir(parents=True)
    (comfy / "custom_nodes").mkdir()
    return comfy / "input" / "job-1", comfy / "output" / "job-1", comfy


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"7": {"class_type": class_type, "inputs": inputs}}


def test_relative_paths_go_into_the_job_folders(job):
    input_dir, output_dir, _ = job
    prompt = confine_paths(
        {
            **node("SaveStringKJ", output_folder="notes", file_extension=".txt"),
            "8": {"class_type": "VHS_LoadImagesPath", "inputs": {"directory": ""}},
        },
        input_dir,
        output_dir,
    )
    assert prompt["7"]["inputs"]["output_folder"] == str(output_dir.resolve() / "notes")
    assert prompt["8"]["inputs"]["directory"] == str(input_dir.resolve())


def test_a_symlink_out_of_the_job_folder_is_followed_and_refused(job):
    input_dir, output_dir, comfy = job
    os.symlink(comfy / "custom_nodes", output_dir / "innocent")
    with pytest.raises(PathInputError) as info:
        confine_paths(node("SaveStringKJ", output_folder="innocent"), input_dir, output_dir)
    assert str(info.value) == (
        "node 7 (SaveStringKJ), input 'output_folder': 'innocent' is outside this job's "
        "folders; a path input must stay inside the job's input or output folder (relative "
        "paths are taken there)"
    )


@pytest.mark.parametrize(
    "value",
    ["../job-2", "../../custom_nodes", "/etc", "sub/../../../x", "a\x00b", "https://x.test/v"],
)
def test_escapes_are_refused(job, value):
    input_dir, output_dir, _ = job
    with pytest.raises(PathInputError, match="input 'directory'"):
        confine_paths(node("VHS_LoadImagesPath", directory=value), input_dir, output_dir)


def test_name_parts_and_links(job):
    input_dir, output_dir, _ = job
    assert PATH_INPUTS[("SaveStringKJ", "file_extension")] == NAME
    with pytest.raises(PathInputError, match="must be a plain name"):
        confine_paths(node("SaveStringKJ", file_extension=".py/../x"), input_dir, output_dir)
    with pytest.raises(PathInputError, match="is fed by node 3"):
        confine_paths(node("easy saveText", output_file_path=["3", 0]), input_dir, output_dir)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("in.png", True), ("../in.png", False), ("/etc/passwd", False), ("x.png [temp]", False)],
)
def test_file_name_combos_hold_plain_names(value, ok):
    prompt = node("LoadImage", image=value)
    if ok:
        check_file_names(prompt)
    else:
        with pytest.raises(PathInputError, match="is not a plain file name"):
            check_file_names(prompt)


def test_a_node_writing_into_its_own_folder_keeps_its_prefix_there(job):
    # SaveStringKJ joins its prefix to output_folder: a job folder in front of it would name
    # a folder that does not exist (seen on the real node)
    input_dir, output_dir, _ = job
    prompt = node("SaveStringKJ", output_folder="notes", filename_prefix="text")
    prompt["8"] = {"class_type": "SaveImage", "inputs": {"filename_prefix": "img"}}
    prompt = scope_outputs(confine_paths(prompt, input_dir, output_dir), "job-1")
    assert prompt["7"]["inputs"]["filename_prefix"] == "text"
    assert prompt["8"]["inputs"]["filename_prefix"] == "job-1/img"
