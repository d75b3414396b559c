"""Job input validation: what a caller may send, and the one clear error for each mistake."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from worker.job_input import (
    JobInputError,
    apply_overrides,
    parse_job_input,
    rename_references,
    scope_outputs,
)

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "worker" / "workflows"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
GRAPH = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}, "_meta": {"title": "Start"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {
        "class_type": "SaveImage",
        "inputs": {"images": ["2", 0], "filename_prefix": "acc/x"},
        "_meta": {"title": "Save"},
    },
}


def parse(raw, allow_raw=True):
    return parse_job_input(raw, workflows_dir=WORKFLOWS, allow_raw=allow_raw)


def test_worker_comfyui_input_is_accepted():
    spec = parse({"workflow": GRAPH, "images": [{"name": "in.png", "image": PNG}]})
    assert spec.prompt == GRAPH and spec.prompt is not GRAPH
    assert spec.images[0].name == "in.png"
    assert spec.images[0].data == base64.b64decode(PNG)


def test_data_uri_and_url_images():
    spec = parse(
        {
            "workflow": GRAPH,
            "images": [
                {"name": "a.png", "image": "data:image/png;base64," + PNG},
                {"name": "b.png", "image": "https://example.com/b.png"},
            ],
        }
    )
    assert spec.images[0].data == base64.b64decode(PNG)
    assert spec.images[1].url == "https://example.com/b.png" and spec.images[1].data is None


def test_named_workflow_with_overrides_by_title_and_id():
    spec = parse(
        {
            "workflow": "wan_flf_i2v",
            "overrides": {"Prompt.text": "a cat", "Seed.noise_seed": 7, "81.length": 33},
        }
    )
    assert spec.prompt["90"]["inputs"]["text"] == "a cat"
    assert spec.prompt["84"]["inputs"]["noise_seed"] == 7
    assert spec.prompt["81"]["inputs"]["length"] == 33
    shipped = json.loads((WORKFLOWS / "wan_flf_i2v_api.json").read_text())
    assert shipped["90"]["inputs"]["text"] != "a cat"  # the file itself is untouched


def test_the_repo_test_input_is_valid():
    raw = json.loads((REPO / "test_input.json").read_text())
    spec = parse(raw["input"], allow_raw=False)
    assert {i.name for i in spec.images} == {"start_image.png", "end_image.png"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("not an object", "input must be an object"),
        ({}, "input.workflow is missing"),
        ({"workflow": GRAPH, "prompt": 1}, "unknown input field(s) 'prompt'"),
        ({"workflow": 12}, "must be an object (API format) or a workflow name"),
        ({"workflow": "no_such_flow"}, "unknown workflow 'no_such_flow'; available: wan_flf_i2v"),
        ({"workflow": "../etc/passwd"}, "not a valid workflow name"),
        ({"workflow": {"nodes": [], "links": []}}, "UI format"),
        ({"workflow": {"1": {"inputs": {}}}}, "input.workflow['1'] has no class_type"),
        ({"workflow": GRAPH, "images": {"name": "x"}}, "input.images must be a list"),
        (
            {"workflow": GRAPH, "images": [{"name": "../x.png", "image": PNG}]},
            "input.images[0].name '../x.png' is not a safe file name",
        ),
        (
            {"workflow": GRAPH, "images": [{"name": "a/b.png", "image": PNG}]},
            "not a safe file name",
        ),
        (
            {"workflow": GRAPH, "images": [{"name": ".hidden", "image": PNG}]},
            "not a safe file name",
        ),
        (
            {"workflow": GRAPH, "images": [{"name": "x.png", "image": "!!!not base64!!!"}]},
            "input.images[0].image is not valid base64",
        ),
        (
            {"workflow": GRAPH, "images": [{"name": "x.png", "image": "data:image/png,abc"}]},
            "must be base64-encoded",
        ),
        (
            {"workflow": GRAPH, "images": [{"name": "x.png", "image": "file:///etc/passwd"}]},
            "only http and https URLs",
        ),
        (
            {
                "workflow": GRAPH,
                "images": [{"name": "x.png", "image": PNG}, {"name": "x.png", "image": PNG}],
            },
            "'x.png' is used twice",
        ),
        ({"workflow": GRAPH, "overrides": ["x"]}, "input.overrides must be an object"),
        (
            {"workflow": GRAPH, "overrides": {"Nope.image": "a"}},
            "no node has the id or title 'Nope' (titles: Save, Start)",
        ),
        (
            {"workflow": GRAPH, "overrides": {"Start.bogus": "a"}},
            "node 1 (LoadImage) has no input 'bogus' (inputs: image)",
        ),
        ({"workflow": GRAPH, "overrides": {"2.image": "a"}}, "is connected to node 1"),
        ({"workflow": GRAPH, "overrides": {"Start": "a"}}, "must look like"),
        ({"workflow": GRAPH, "overrides": {"Start.image": {"a": 1}}}, "must be a string, number"),
        (
            {"workflow": GRAPH, "overrides": {"Save.filename_prefix": "../../x"}},
            "input.workflow['3'] filename_prefix '../../x' must stay inside the output folder",
        ),
        (
            {"workflow": GRAPH, "overrides": {"Save.filename_prefix": "a/../../x"}},
            "must stay inside the output folder",
        ),
        (
            {"workflow": GRAPH, "overrides": {"Save.filename_prefix": "/etc/x"}},
            "must stay inside the output folder: no leading '/' and no '..'",
        ),
    ],
)
def test_each_mistake_gets_one_clear_error(raw, expected):
    with pytest.raises(JobInputError) as info:
        parse(raw)
    assert expected in str(info.value)


def test_an_escaping_prefix_in_a_named_workflow_is_refused_too(tmp_path):
    (tmp_path / "esc_api.json").write_text(
        json.dumps(
            {
                "1": {
                    "class_type": "SaveImage",
                    "inputs": {"filename_prefix": "..", "images": ["2", 0]},
                }
            }
        )
    )
    with pytest.raises(JobInputError, match="must stay inside the output folder"):
        parse_job_input({"workflow": "esc"}, workflows_dir=tmp_path, allow_raw=False)
    with pytest.raises(JobInputError, match="must stay inside the output folder"):
        scope_outputs(
            {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "a/../.."}}}, "job-1"
        )
    # dots inside a name are not a parent folder
    assert (
        scope_outputs(
            {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "a..b/c"}}}, "job-1"
        )["1"]["inputs"]["filename_prefix"]
        == "job-1/a..b/c"
    )


def test_a_broken_named_workflow_is_a_clear_error(tmp_path):
    (tmp_path / "broken_api.json").write_text("{not json")
    (tmp_path / "listed_api.json").write_text("[1, 2]")
    with pytest.raises(
        JobInputError,
        match=r"the workflow 'broken' \(broken_api.json\) cannot "
        "be read: Expecting property name",
    ):
        parse_job_input({"workflow": "broken"}, workflows_dir=tmp_path, allow_raw=False)
    with pytest.raises(
        JobInputError,
        match=r"the workflow 'listed' \(listed_api.json\) is not "
        "an API-format graph",
    ):
        parse_job_input({"workflow": "listed"}, workflows_dir=tmp_path, allow_raw=False)


def test_duplicate_titles_need_an_id():
    graph = {
        **GRAPH,
        "4": {"class_type": "LoadImage", "inputs": {"image": "b.png"}, "_meta": {"title": "Start"}},
    }
    with pytest.raises(JobInputError, match="names nodes 1, 4; use a node id"):
        apply_overrides(graph, {"Start.image": "c.png"})


def test_raw_workflows_can_be_refused():
    with pytest.raises(JobInputError, match="only named workflows"):
        parse({"workflow": GRAPH}, allow_raw=False)
    assert parse({"workflow": "wan_flf_i2v"}, allow_raw=False).prompt


def test_uploads_renamed_by_comfyui_are_referenced_by_their_new_name():
    prompt = rename_references(json.loads(json.dumps(GRAPH)), {"in.png": "in (1).png"})
    assert prompt["1"]["inputs"]["image"] == "in (1).png"


def test_outputs_are_scoped_to_a_job_folder_and_links_are_left_alone():
    graph = json.loads(json.dumps(GRAPH))
    graph["4"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["2", 0], "filename_prefix": ["9", 0]},
    }
    scope_outputs(graph, "job-1")
    assert graph["3"]["inputs"]["filename_prefix"] == "job-1/acc/x"
    assert graph["4"]["inputs"]["filename_prefix"] == ["9", 0]
