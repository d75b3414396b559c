"""Which files of a prompt are results, and how they travel back."""

from __future__ import annotations

import base64
import json

import pytest

from worker.outputs import (
    OutputError,
    OutputFile,
    check_response_size,
    collect_outputs,
    inline_entry,
    response_size,
)

HISTORY_OUTPUTS = {
    "9": {"images": [{"filename": "b_00001_.png", "subfolder": "job", "type": "output"}]},
    "10": {"images": [{"filename": "ComfyUI_temp_x_00001_.png", "subfolder": "", "type": "temp"}]},
    "4": {
        "gifs": [
            {
                "filename": "v_00001.mp4",
                "subfolder": "job",
                "type": "output",
                "format": "video/h264-mp4",
                "frame_rate": 16.0,
                "workflow": "v_00001.png",
                "fullpath": "/comfyui/output/job/v_00001.mp4",
            }
        ],
        "text": ["not a file"],
    },
    "5": {
        "audio": [{"filename": "a.flac", "subfolder": "", "type": "output"}],
        "3d": [{"filename": "m.glb", "subfolder": "", "type": "output"}],
    },
}


def test_every_saved_file_is_collected_with_its_kind():
    files = collect_outputs(HISTORY_OUTPUTS)
    assert [(f.node_id, f.kind, f.filename) for f in files] == [
        ("4", "videos", "v_00001.mp4"),
        ("5", "audio", "a.flac"),
        ("5", "files", "m.glb"),
        ("9", "images", "b_00001_.png"),
    ]
    assert files[0].content_type == "video/mp4"
    assert files[3].content_type == "image/png"


def test_previews_in_temp_are_not_results():
    assert not any(f.type == "temp" for f in collect_outputs(HISTORY_OUTPUTS))


def test_inline_entries_are_plain_base64():
    entry = inline_entry(OutputFile("9", "images", "x.png", "", "output"), b"abc")
    assert entry == {
        "filename": "x.png",
        "type": "base64",
        "data": base64.b64encode(b"abc").decode(),
        "content_type": "image/png",
        "node_id": "9",
    }


def test_the_whole_response_counts_against_the_payload_limit():
    # names, timings and provenance travel with the files: a 9.9 MB result was 10.6 MB
    data = base64.b64encode(b"\x00" * 3000).decode()
    output = {
        "images": [{"filename": "é_00001_.png", "type": "base64", "data": data, "node_id": "9"}],
        "videos": [],
        "prompt_id": "p",
        "provenance": {"image": "registry.example/worker@sha256:" + "0" * 64},
    }
    posted = json.dumps({"output": output}, ensure_ascii=False).encode()  # as the SDK posts it
    assert response_size(output) == len(posted)
    check_response_size(output, len(posted))
    with pytest.raises(OutputError, match=f"the response is {len(posted):,} bytes, over the"):
        check_response_size(output, len(posted) - 1)


def test_a_response_too_large_with_a_bucket_does_not_advise_a_bucket():
    # thousands of saved files are thousands of URLs: a bucket is no cure for that
    urls = [
        {"filename": f"f_{n:05}_.png", "type": "s3_url", "data": "https://b.example/" + "k" * 200}
        for n in range(100)
    ]
    output = {"images": urls, "prompt_id": "p"}
    with pytest.raises(OutputError) as info:
        check_response_size(output, 10_000, bucket=True)
    assert "save fewer files per job" in str(info.value)
    assert "Configure an S3/R2 bucket" not in str(info.value)


def test_only_files_the_jobs_own_saving_nodes_wrote_are_results():
    # a loader/preview pair reported a file of ComfyUI's input root, which the job did not make
    outputs = {
        "1": {"images": [{"filename": "example.png", "subfolder": "", "type": "input"}]},
        "2": {"images": [{"filename": "x.png", "subfolder": "job-other", "type": "output"}]},
        "3": {"images": [{"filename": "y.png", "subfolder": "job-a/../x", "type": "output"}]},
        "4": {"images": [{"filename": "inv.png", "subfolder": "job-a/t", "type": "output"}]},
        "5": {"gifs": [{"filename": "v.mp4", "subfolder": "job-a", "type": "output"}]},
    }
    assert [(f.node_id, f.filename) for f in collect_outputs(outputs, "job-a")] == [
        ("4", "inv.png"),
        ("5", "v.mp4"),
    ]
