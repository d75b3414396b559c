"""The repository's nodes.lock.yaml pins the set that was proven together (upstream facts)."""

from __future__ import annotations

from pathlib import Path

from bake.locks.nodes import load_nodes_lock

LOCK = Path(__file__).resolve().parents[2] / "nodes.lock.yaml"

NINE = {
    "rgthree-comfy": "8ff50e4521881eca1fe26aec9615fc9362474931",
    "ComfyUI_essentials": "33ff89fd354d8ec3ab6affb605a79a931b445d99",
    "ComfyUI-Easy-Use": "5dfcbcf51d8a6efed947bc7bdd6797827fecab55",
    "ComfyUI-KJNodes": "c8e7f48a7f68b7a31ee336bc0be54bedbca05ffa",
    "ComfyUI-VideoHelperSuite": "993082e4f2473bf4acaf06f51e33877a7eb38960",
    "ComfyUI-Crystools": "2f18256c5b5063937106f29a8e0a7db3ae3869b7",
    "RES4LYF": "95ffaac4aed26ed240b527a14c531b5a339b5675",
    "ComfyUI-Custom-Scripts": "f2838ed5e59de4d73cde5c98354b87a8d3200190",
    "ComfyUI-Frame-Interpolation": "a969c01dbccd9e5510641be04eb51fe93f6bfc3d",
}


def test_real_lock_pins_comfyui_the_nine_nodes_and_sageattention():
    lock = load_nodes_lock(LOCK)
    assert lock.comfyui.locked.rev == "7ac999bf3069b06648a749212f59237080a75591"
    assert {n: e.locked.rev for n, e in lock.custom_nodes.items()} == NINE
    sage = lock.source_builds["sageattention"]
    assert sage.original.ref == "v2.2.0"
    assert sage.locked.rev == "eb615cf6cf4d221338033340ee2de1c37fbdba4a"
    # two-digit form: setup.py silently skips "120" or "sm_120"
    assert sage.env == {"TORCH_CUDA_ARCH_LIST": "12.0"}
    assert "ComfyUI-Manager" in lock.exclude


def test_real_lock_reads_the_right_requirement_files():
    lock = load_nodes_lock(LOCK)
    frame = lock.custom_nodes["ComfyUI-Frame-Interpolation"]
    assert frame.requirements_file == "requirements-no-cupy.txt"  # RIFE needs no cupy
    assert not any("cupy" in r for r in frame.locked.requirements)
    assert lock.custom_nodes["ComfyUI-Custom-Scripts"].locked.requirements == ()
    assert "torch" in lock.comfyui.locked.requirements
