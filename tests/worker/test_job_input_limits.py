"""Job input costs time linear in its size and fails with an input error, never a crash."""

from __future__ import annotations

import base64

import pytest

from worker.job_input import JobInputError, apply_overrides, decode_base64, parse_job_input
from worker.log_text import log_lines, printable

from .test_job_input import GRAPH, WORKFLOWS


def titled_graph(n: int) -> dict:
    prompt = {
        str(i): {"class_type": "PrimitiveInt", "inputs": {"value": 0}, "_meta": {"title": f"N{i}"}}
        for i in range(n)
    }
    prompt["dup-a"] = {
        "class_type": "PrimitiveInt",
        "inputs": {"value": 0},
        "_meta": {"title": "D"},
    }
    prompt["dup-b"] = {
        "class_type": "PrimitiveInt",
        "inputs": {"value": 0},
        "_meta": {"title": "D"},
    }
    return prompt


def test_twenty_thousand_overrides_by_title_each_reach_their_node():
    # benchmarks/job_input_scaling.py measures that the time grows linearly
    prompt = titled_graph(20_000)
    result = apply_overrides(prompt, {f"N{i}.value": i for i in range(20_000)})
    assert all(result[str(i)]["inputs"]["value"] == i for i in range(20_000))
    with pytest.raises(JobInputError, match="the title 'D' names nodes dup-a, dup-b"):
        apply_overrides(prompt, {"D.value": 1})


def test_deep_nesting_is_an_input_error():
    deep: list = []
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = [deep]
    graph = {**GRAPH, "1": {**GRAPH["1"], "_meta": {"title": "x", "deep": deep}}}
    with pytest.raises(JobInputError, match="nested more than 64 levels deep"):
        parse_job_input({"workflow": graph}, workflows_dir=WORKFLOWS, allow_raw=True)


def test_the_image_cap_is_checked_before_decoding():
    # not even valid base64: refused for its size before any decoding is tried
    with pytest.raises(JobInputError) as info:
        decode_base64("%" * 4000, "input.images[0].image", max_bytes=2000)
    assert str(info.value) == (
        "input.images[0].image is about 3,000 bytes, over the limit of 2,000 "
        "(MAX_INPUT_IMAGE_BYTES)"
    )
    exact = base64.b64encode(b"x" * 2000).decode()
    assert decode_base64("data:image/png;base64," + exact, "i", max_bytes=2000) == b"x" * 2000


def test_text_from_a_job_stays_on_one_log_line():
    assert printable("t\n[worker] x ERROR\r\u2028y") == "t\\n[worker] x ERROR\\r\\u2028y"


@pytest.mark.parametrize(
    ("raw", "lines"),
    [
        ("got prompt\n", ["got prompt"]),
        ("a.png\r[worker] x ERROR forged\n", ["a.png", "[worker] x ERROR forged"]),
        (" 10%|#\r 20%|##\r\n", [" 10%|#", " 20%|##"]),
        ("bell\x07 esc\x1b[2J tab\tkept\n", ["bell\\x07 esc\\x1b[2J tab\tkept"]),
        ("\n", [""]),
    ],
)
def test_comfyui_log_lines_are_split_at_carriage_returns_and_escaped(raw, lines):
    assert log_lines(raw) == lines
