"""The shipped Wan 2.2 first/last-frame workflow against the locked node set's /object_info."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import pytest
from support.fake_comfyui import object_info

from bake.locks.models import load_models_lock
from worker.config import WORKER_DIR

REPO = WORKER_DIR.parent
WORKFLOW = json.loads((WORKER_DIR / "workflows" / "wan_flf_i2v_api.json").read_text())
# Lists that depend on the files of the server that answered: model folders (empty there) and
# ComfyUI's input folder (the job uploads its images).
FILE_LISTS = {
    ("UNETLoader", "unet_name"),
    ("CLIPLoader", "clip_name"),
    ("VAELoader", "vae_name"),
    ("LoraLoaderModelOnly", "lora_name"),
    ("LoadImage", "image"),
}


@pytest.fixture(scope="module")
def info():
    return object_info()


def combo_options(spec):
    if spec[0] == "COMBO":
        return spec[1].get("options", [])
    return spec[0] if isinstance(spec[0], list) else None


def test_every_node_and_input_exists_with_legal_values(info):
    for nid, node in WORKFLOW.items():
        cls = info.get(node["class_type"])
        assert cls is not None, f"node {nid}: {node['class_type']} is not in the node set"
        inputs = node["inputs"]
        required = cls["input"]["required"]
        missing = set(required) - set(inputs)
        assert not missing, f"node {nid} ({node['class_type']}) lacks {missing}"
        known = {**required, **cls["input"].get("optional", {})}
        for name, value in inputs.items():
            if isinstance(value, list):
                src = WORKFLOW[value[0]]
                produced = info[src["class_type"]]["output"][value[1]]
                assert known[name][0] == produced, f"node {nid}.{name}: {produced} link"
                continue
            if name not in known:
                continue  # VHS's per-format options (pix_fmt, crf, ...)
            spec = known[name]
            options = combo_options(spec)
            if options is not None and (node["class_type"], name) not in FILE_LISTS:
                assert value in options, f"node {nid}.{name}={value!r} not in {options}"
            elif spec[0] in ("INT", "FLOAT"):
                limits = spec[1] if len(spec) > 1 else {}
                assert limits.get("min", value) <= value <= limits.get("max", value)


def test_it_uses_exactly_the_locked_model_files():
    lock = load_models_lock(REPO / "models.lock.yaml")
    locked = {
        PurePosixPath(e.dest).name: PurePosixPath(e.dest).parts[1]
        for e in lock.entries()
        if e.dest.startswith("models/")
    }
    folders = {
        "unet_name": "diffusion_models",
        "clip_name": "text_encoders",
        "vae_name": "vae",
        "lora_name": "loras",
    }
    used = {
        (node["class_type"], name, value)
        for node in WORKFLOW.values()
        for name, value in node["inputs"].items()
        if name in folders
    }
    assert used == {
        ("UNETLoader", "unet_name", "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"),
        ("UNETLoader", "unet_name", "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"),
        ("CLIPLoader", "clip_name", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
        ("VAELoader", "vae_name", "wan_2.1_vae.safetensors"),
    }
    for _, name, value in used:
        assert locked.get(value) == folders[name], f"{value} is not locked in {folders[name]}"


def test_template_settings_and_an_mp4_output():
    by_title = {node["_meta"]["title"]: node for node in WORKFLOW.values()}
    video = by_title["Video"]["inputs"]
    assert (video["width"], video["height"], video["length"]) == (640, 640, 81)
    high, low = by_title["Seed"]["inputs"], by_title["Low Noise Sampler"]["inputs"]
    assert (high["steps"], high["cfg"], high["start_at_step"], high["end_at_step"]) == (
        20,
        4.0,
        0,
        10,
    )
    assert low["start_at_step"] == 10 and low["add_noise"] == "disable"
    assert by_title["High Noise Shift"]["inputs"]["shift"] == 8.0
    out = by_title["Video Output"]
    assert out["class_type"] == "VHS_VideoCombine"
    assert out["inputs"]["format"] == "video/h264-mp4" and out["inputs"]["frame_rate"] == 16.0


def test_titles_make_overrides_readable():
    titles = {node["_meta"]["title"] for node in WORKFLOW.values()}
    assert {"Start Image", "End Image", "Prompt", "Negative Prompt", "Seed", "Video"} <= titles
    assert len(titles) == len(WORKFLOW), "titles must be unique to be usable in overrides"
