"""The model policy's decisions, on real files: which copies ComfyUI could load, and whether
each is a verified lock entry. The attacks as jobs are in test_job_policy.py."""

from __future__ import annotations

import logging
import os

import pytest

from worker.model_paths import search_dirs
from worker.policy.models import (
    NODE_CHECKPOINTS,
    ModelPolicyError,
    VerifiedModels,
    combo_inputs,
    enforce,
    model_uses,
    node_checkpoint_uses,
)

from .test_path_inputs import object_info

DEST = "models/diffusion_models/unet.safetensors"


@pytest.fixture
def comfy(tmp_path):
    root = tmp_path / "comfyui"
    (root / "models" / "diffusion_models").mkdir(parents=True)
    (root / "models" / "unet").mkdir(parents=True)
    good = root / "models" / "diffusion_models" / "unet.safetensors"
    good.write_bytes(b"verified")
    return root, good


def uses(prompt, root, verified, listing):
    return model_uses(
        prompt,
        combos=combo_inputs(object_info()),
        folders=["diffusion_models", "custom_nodes"],
        list_folder=lambda folder: (
            listing if folder == "diffusion_models" else ["unet.safetensors"]
        ),
        dirs=search_dirs(root, None),
        verified=verified,
    )


def unet(name: str) -> dict:
    return {
        "76": {"class_type": "UNETLoader", "inputs": {"unet_name": name, "weight_dtype": "default"}}
    }


def test_a_verified_locked_file_is_allowed(comfy):
    root, good = comfy
    verified = VerifiedModels(frozenset({DEST}), frozenset({os.path.realpath(good)}))
    [use] = uses(unet("unet.safetensors"), root, verified, ["unet.safetensors"])
    assert use.allowed and use.folder == "diffusion_models"  # custom_nodes is no model folder


def test_an_unverified_copy_in_the_legacy_folder_is_refused(comfy):
    # ComfyUI searches models/unet before models/diffusion_models: that copy could be loaded
    root, good = comfy
    (root / "models" / "unet" / "unet.safetensors").write_bytes(b"swapped")
    verified = VerifiedModels(frozenset({DEST}), frozenset({os.path.realpath(good)}))
    [use] = uses(unet("unet.safetensors"), root, verified, ["unet.safetensors"])
    assert not use.allowed and use.why.endswith("unet.safetensors was not verified at boot")


def test_with_verification_off_the_lock_names_decide(comfy):
    root, _ = comfy
    (root / "models" / "diffusion_models" / "other.safetensors").write_bytes(b"x")
    verified = VerifiedModels(frozenset({DEST}), None)
    listing = ["other.safetensors", "unet.safetensors"]
    assert uses(unet("unet.safetensors"), root, verified, listing)[0].allowed
    [other] = uses(unet("other.safetensors"), root, verified, listing)
    assert other.why == "the models lock has no such file"


def test_values_that_are_no_model_files_are_not_checked(comfy):
    root, _ = comfy
    prompt = {
        "1": {"class_type": "KSampler", "inputs": {"sampler_name": "euler", "seed": 1}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "unet.safetensors"}},  # no combo
    }
    listed = []
    found = model_uses(
        prompt,
        combos=combo_inputs(object_info()),
        folders=["diffusion_models"],
        list_folder=lambda folder: listed.append(folder) or ["unet.safetensors"],
        dirs=search_dirs(root, None),
        verified=VerifiedModels(frozenset(), frozenset()),
    )
    assert found == [] and listed == ["diffusion_models"]


def test_open_logs_each_use_on_one_line_and_locked_refuses(comfy, caplog):
    root, _ = comfy
    verified = VerifiedModels(frozenset(), frozenset())
    found = uses(unet("unet.safetensors"), root, verified, ["unet.safetensors"])
    titles = {"76": "High\n[worker] 2026 ERROR forged"}
    with caplog.at_level(logging.WARNING, logger="worker"):
        enforce(found, "open", titles)
    [record] = caplog.records
    assert "\n" not in record.getMessage() and "High\\n[worker]" in record.getMessage()
    with pytest.raises(ModelPolicyError, match="input 'unet_name': the model file"):
        enforce(found, "locked", titles)


RIFE47 = "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife/rife47.pth"


def vfi(class_type: str, ckpt: str) -> dict:
    return {"5": {"class_type": class_type, "inputs": {"ckpt_name": ckpt, "frames": ["1", 0]}}}


def test_frame_interpolation_checkpoints_must_be_locked_and_verified(tmp_path):
    rife47 = tmp_path / RIFE47
    rife47.parent.mkdir(parents=True)
    rife47.write_bytes(b"locked")
    verified = VerifiedModels(frozenset({RIFE47}), frozenset({os.path.realpath(rife47)}))
    [ok] = node_checkpoint_uses(vfi("RIFE VFI", "rife47.pth"), tmp_path, verified)
    assert ok.allowed and ok.name == "rife/rife47.pth"
    [download] = node_checkpoint_uses(vfi("RIFE VFI", "rife49.pth"), tmp_path, verified)
    assert download.why == "the models lock has no such file (the node would download it)"
    gmfss = node_checkpoint_uses(
        vfi("GMFSS Fortuna VFI", "GMFSS_fortuna_union"), tmp_path, verified
    )
    assert len(gmfss) == 5 and not any(use.allowed for use in gmfss)
    unverified = VerifiedModels(frozenset({RIFE47}), frozenset())
    [late] = node_checkpoint_uses(vfi("RIFE VFI", "rife47.pth"), tmp_path, unverified)
    assert late.why.endswith("rife47.pth was not verified at boot")


def test_every_checkpoint_node_exists_with_its_input():
    info = object_info()
    for class_type, (name, _) in NODE_CHECKPOINTS.items():
        assert name in info[class_type]["input"]["required"], class_type
