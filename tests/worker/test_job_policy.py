"""The job-input policy, attacked as a caller would: jobs through RunPod's local API (/runsync)
against the worker and the fake ComfyUI, with real files planted where an attacker would want
them read, written or loaded.

`locked` boots with a real models lock verified in full (one file verified on the volume, one
planted beside it that the lock does not hold); `named` accepts only named workflows and runs
MODEL_POLICY=open.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from support.fake_comfyui import stub_models
from support.fake_comfyui.runner import REPO, WorkerProcess
from support.modelfiles import blob, entry, write_lock

from bake.locks.models import UrlSource
from worker.outputs import collect_outputs

from .test_jobs import INVERT, b64, png, run_error, run_ok

URL = UrlSource("https://example.com/m.safetensors")
LOCKED = blob(4096, seed=1)
WAN_TEST_INPUT = json.loads((REPO / "test_input.json").read_text())["input"]


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("locked")
    checkpoints = tmp / "volume" / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "locked.safetensors").write_bytes(LOCKED)
    (checkpoints / "planted.safetensors").write_bytes(b"not in any lock")
    (checkpoints / "shared.safetensors").write_bytes(LOCKED)
    loras = tmp / "volume" / "models" / "loras"
    loras.mkdir(parents=True)
    (loras / "planted_lora.safetensors").write_bytes(b"not in any lock")
    embeddings = tmp / "volume" / "models" / "embeddings"
    embeddings.mkdir(parents=True)
    (embeddings / "planted_embedding.pt").write_bytes(b"not in any lock")
    lock = write_lock(
        tmp / "models.lock.yaml",
        entry("locked", URL, "models/checkpoints/locked.safetensors", LOCKED, placement="volume"),
        entry("late", URL, "models/checkpoints/late.safetensors", LOCKED, placement="volume"),
        entry("shared", URL, "models/checkpoints/shared.safetensors", LOCKED, placement="volume"),
    )
    w = WorkerProcess(
        tmp,
        env={
            "MODEL_VERIFY": "full",
            "MODELS_LOCK": str(lock),
            # Every installed class, as an endpoint that widens the class table runs: the
            # model, path and file-name rules below still hold there (test_default_deny.py
            # attacks the default, reviewed classes)
            "NODE_CLASSES": "all",
            "MAX_INPUT_IMAGE_BYTES": "2000",
            "JOB_TIMEOUT": "10",
        },
    )
    w.start()
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("named")
    w = WorkerProcess(
        tmp,
        env={
            "ALLOW_RAW_WORKFLOWS": "0",
            "MODEL_POLICY": "open",
            "FAKE_COMFYUI_STEP_DELAY": "0",
            "JOB_TIMEOUT": "10",
        },
    )
    stub_models(w.comfyui_dir)
    planted = tmp / "volume" / "models" / "diffusion_models" / "planted_unet.safetensors"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"not in the lock")
    w.start()
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()


def invert_job(*extra_nodes: tuple[str, dict]) -> dict:
    prompt = json.loads(json.dumps(INVERT))
    for node_id, node in extra_nodes:
        prompt[node_id] = node
    return {"workflow": prompt, "images": [{"name": "in.png", "image": b64(png())}]}


def checkpoint(name: str) -> tuple[str, dict]:
    return (
        "9",
        {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": name},
            "_meta": {"title": "Model"},
        },
    )


def prompts_queued(worker: WorkerProcess) -> int:

    return worker.comfy_get("/fake/stats", timeout=5).json().get("POST /prompt", 0)


# -- 1. model policy ------------------------------------------------------------------------
def test_a_planted_model_the_lock_does_not_hold_is_refused_before_queueing(locked):
    before = prompts_queued(locked)
    error = run_error(locked, invert_job(checkpoint("planted.safetensors")))
    assert error == (
        "invalid input: node 9 \"Model\" (CheckpointLoaderSimple), input 'ckpt_name': the model "
        "file 'planted.safetensors' in checkpoints is not one the models lock holds and the "
        "boot verified (the models lock has no such file); this endpoint runs locked models "
        "only (MODEL_POLICY=locked)"
    )
    assert prompts_queued(locked) == before


def test_the_verified_model_is_accepted(locked):
    output = run_ok(locked, invert_job(checkpoint("locked.safetensors")))
    assert output["images"][0]["filename"] == "inv_00001_.png"


def test_a_locked_name_placed_after_the_boot_was_not_verified_and_is_refused(locked):
    late = locked.tmp / "volume" / "models" / "checkpoints" / "late.safetensors"
    late.write_bytes(LOCKED)  # the right bytes even, but nobody checked them
    try:
        error = run_error(locked, invert_job(checkpoint("late.safetensors")))
    finally:
        late.unlink()
    assert "input 'ckpt_name': the model file 'late.safetensors' in checkpoints" in error
    assert f"({late} was not verified at boot)" in error


def test_a_verified_model_changed_in_place_after_the_boot_is_refused(locked):
    # A network volume is shared (other workers, pods): a hard link to the verified file, made
    # elsewhere on the volume, rewrites its bytes after the boot; the path, inode and (put
    # back) mtime are the verified file's, only the kernel's ctime tells.
    shared = locked.tmp / "volume" / "models" / "checkpoints" / "shared.safetensors"
    run_ok(locked, invert_job(checkpoint("shared.safetensors")))  # verified: accepted
    link = locked.tmp / "volume" / "elsewhere.bin"
    os.link(shared, link)
    before = shared.stat()
    with open(link, "r+b") as f:
        f.write(b"\x00" * 64)  # same size, other bytes
    os.utime(shared, ns=(before.st_atime_ns, before.st_mtime_ns))
    error = run_error(locked, invert_job(checkpoint("shared.safetensors")))
    assert "input 'ckpt_name': the model file 'shared.safetensors' in checkpoints" in error
    assert f"({shared} changed after the boot verified it)" in error


def test_a_planted_model_fed_through_a_link_is_refused(locked):
    # ComfyUI checks a combo's value against its options only when it is a literal; a link from
    # a node with an any-type ("*") output passes its type check, and the loader opens whatever
    # name arrives. The any-type switch cannot even take the name as a literal (it declares a
    # `*` input), and a link into a combo is refused whatever feeds it.
    before = prompts_queued(locked)
    reroute = {
        "class_type": "LazySwitchKJ",
        "inputs": {"switch": True, "on_false": "x", "on_true": "planted.safetensors"},
    }
    loader = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ["10", 0]}}
    error = run_error(locked, invert_job(("10", reroute), ("9", loader)))
    assert error == (
        "invalid input: node 10 (LazySwitchKJ), input 'on_false' takes a connection from "
        "another node (type '*'), not a value"
    )
    name = {"class_type": "PrimitiveString", "inputs": {"value": "planted.safetensors"}}
    error = run_error(locked, invert_job(("10", name), ("9", loader)))
    assert error == (
        "invalid input: node 9 (CheckpointLoaderSimple), input 'ckpt_name' is a choice from a "
        "list and is fed by node 10: a computed choice cannot be checked before the job runs; "
        "set it as a literal value"
    )
    assert prompts_queued(locked) == before


@pytest.mark.parametrize(
    ("node", "where"),
    [
        # rgthree's Power Lora Loader: each lora is a dict input, no combo in /object_info
        (
            {
                "class_type": "Power Lora Loader (rgthree)",
                "inputs": {"LORA_1": {"on": True, "lora": "planted_lora", "strength": 1.0}},
            },
            "input 'LORA_1': the class does not declare it",
        ),
        # Easy-Use's loaders (and rgthree's Power Prompt) load the loras a prompt's text names
        (
            {
                "class_type": "easy a1111Loader",
                "inputs": {"positive": "a cat <lora:planted_lora:0.8>", "negative": ""},
            },
            "input 'positive'",
        ),
    ],
)
def test_a_planted_lora_named_in_text_or_a_dict_is_refused(locked, node, where):
    before = prompts_queued(locked)
    error = run_error(locked, invert_job(("7", node)))
    assert error.startswith(f"invalid input: node 7 ({node['class_type']}), {where}")
    # the loosely declared loader is refused for its undeclared key before its lora is looked at
    if "does not declare" not in where:
        assert "the model file 'planted_lora.safetensors' in loras is not one the models" in error
    assert prompts_queued(locked) == before


def test_a_planted_embedding_named_in_a_prompt_is_refused(locked):
    # ComfyUI's text encoders load `embedding:NAME` from the embeddings folder, any node's text
    encode = {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "a cat, (embedding:planted_embedding:1.2)", "clip": ["9", 1]},
    }
    error = run_error(locked, invert_job(checkpoint("locked.safetensors"), ("7", encode)))
    assert error.startswith(
        "invalid input: node 7 (CLIPTextEncode), input 'text': the model file "
        "'planted_embedding.pt' in embeddings is not one the models lock holds"
    )


def test_an_override_naming_a_planted_model_is_refused(locked):
    job = invert_job(checkpoint("locked.safetensors"))
    job["overrides"] = {"Model.ckpt_name": "planted.safetensors"}
    assert "the model file 'planted.safetensors'" in run_error(locked, job)


def test_open_policy_loads_other_files_and_logs_each_use(named):
    job = json.loads(json.dumps(WAN_TEST_INPUT))
    job["overrides"]["High Noise Model.unet_name"] = "planted_unet.safetensors"
    output = run_ok(named, job)
    assert output["videos"][0]["filename"] == "wan_flf_00001.mp4"
    assert (
        "MODEL_POLICY=open: node 76 \"High Noise Model\" (UNETLoader), input 'unet_name' loads "
        "'planted_unet.safetensors' from diffusion_models, which is not a verified lock entry"
    ) in named.log()


def test_the_shipped_wan_job_uses_only_locked_models(named):
    logged = named.log().count("MODEL_POLICY=open")
    run_ok(named, WAN_TEST_INPUT)
    assert named.log().count("MODEL_POLICY=open") == logged


def test_a_frame_interpolation_checkpoint_the_lock_does_not_hold_is_refused(locked):
    # RIFE VFI would download rife49.pth from GitHub at run time: an unpinned model
    rife = {
        "class_type": "RIFE VFI",
        "inputs": {"ckpt_name": "rife49.pth", "frames": ["2", 0], "multiplier": 2},
    }
    error = run_error(locked, invert_job(("5", rife)))
    assert error == (
        "invalid input: node 5 (RIFE VFI), input 'ckpt_name': the model file "
        "'rife/rife49.pth' in custom_nodes/ComfyUI-Frame-Interpolation/ckpts is not one the "
        "models lock holds and the boot verified (the models lock has no such file (the node "
        "would download it)); this endpoint runs locked models only (MODEL_POLICY=locked)"
    )


def test_a_frame_interpolation_checkpoint_fed_through_a_link_is_refused(locked):
    name = {"class_type": "PrimitiveString", "inputs": {"value": "rife49.pth"}}
    rife = {"class_type": "RIFE VFI", "inputs": {"ckpt_name": ["10", 0], "frames": ["2", 0]}}
    error = run_error(locked, invert_job(("10", name), ("5", rife)))
    assert error.startswith(
        "invalid input: node 5 (RIFE VFI), input 'ckpt_name' is a choice from a list and is fed "
        "by node 10"
    )


# -- 2. path inputs -------------------------------------------------------------------------
def test_easy_save_text_cannot_write_into_custom_nodes(locked):
    custom_nodes = locked.comfyui_dir / "custom_nodes"
    custom_nodes.mkdir(exist_ok=True)
    save = {
        "class_type": "easy saveText",
        "inputs": {
            "text": "import os  # runs at the next start",
            "output_file_path": str(custom_nodes),
            "file_name": "evil",
            "file_extension": "txt",
            "overwrite": True,
        },
    }
    error = run_error(locked, invert_job(("7", save)))
    assert error == (
        f"invalid input: node 7 (easy saveText), input 'output_file_path': '{custom_nodes}' is "
        "outside this job's folders; a path input must stay inside the job's input or output "
        "folder (relative paths are taken there)"
    )
    assert list(custom_nodes.iterdir()) == []


@pytest.mark.parametrize(
    ("inputs", "bad"),
    [
        ({"output_folder": "../../custom_nodes"}, "output_folder"),
        ({"output_folder": "/tmp"}, "output_folder"),
        ({"output_folder": "notes", "file_extension": "/../../x.py"}, "file_extension"),
    ],
)
def test_save_string_kj_stays_in_the_job_folder(locked, inputs, bad):
    node = {
        "class_type": "SaveStringKJ",
        "inputs": {"string": "x", "filename_prefix": "text", **inputs},
    }
    error = run_error(locked, invert_job(("7", node)))
    assert error.startswith(f"invalid input: node 7 (SaveStringKJ), input {bad!r}: ")


def test_a_folder_read_outside_the_job_is_refused(locked):
    node = {
        "class_type": "LoadImagesFromFolderKJ",
        "inputs": {"folder": "/etc", "width": 64, "height": 64, "keep_aspect_ratio": "crop"},
    }
    assert "input 'folder': '/etc' is outside this job's folders" in run_error(
        locked, invert_job(("7", node))
    )


def test_a_filename_prefix_fed_by_a_link_is_refused(locked):
    job = invert_job(("7", {"class_type": "PrimitiveString", "inputs": {"value": "/tmp/x"}}))
    job["workflow"]["3"]["inputs"]["filename_prefix"] = ["7", 0]
    assert run_error(locked, job).startswith(
        "invalid input: node 3 (SaveImage), input 'filename_prefix' is a path and is fed by node 7"
    )


# -- 4. inline images -----------------------------------------------------------------------
def test_an_inline_image_over_the_cap_is_refused_naming_it(locked):
    big = b64(b"\0" * 6000)
    error = run_error(locked, {"workflow": INVERT, "images": [{"name": "in.png", "image": big}]})
    assert error == (
        "invalid input: input.images[0].image is about 6,000 bytes, over the limit of 2,000 "
        "(MAX_INPUT_IMAGE_BYTES)"
    )


# -- 5. file-name inputs --------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "../custom_nodes/x/example.png",
        "/etc/passwd",
        "x.png [output]",
        "sub\\..\\x.png",
        # ComfyUI drops the 9 characters before a final "[output]" whatever they are, so
        # "secret.png_[output]" reads output/secret.png: no space is needed
        "secret.png_[output]",
        "secret.png_[temp]",
    ],
)
def test_load_image_overrides_cannot_leave_the_input_folder(named, name):
    job = {**WAN_TEST_INPUT, "overrides": {"Start Image.image": name}}
    error = run_error(named, job)
    assert error.startswith(
        f"invalid input: node 80 (LoadImage), input 'image': {name!r} is not a plain file name"
    )


def test_a_video_loader_cannot_reach_the_output_folder_through_a_quoted_annotation(locked):
    # VideoHelperSuite strips whitespace and one quote off each end, then reads the annotation
    video = {
        "class_type": "VHS_LoadVideo",
        "inputs": {"video": 'secret.mp4 [output]"', "force_rate": 0, "custom_width": 0},
    }
    error = run_error(locked, invert_job(("7", video)))
    assert error.startswith(
        "invalid input: node 7 (VHS_LoadVideo), input 'video': 'secret.mp4 [output]\"' is not "
        "a plain file name"
    )


def test_raw_workflow_load_image_cannot_name_an_absolute_path(locked):
    job = invert_job()
    job["workflow"]["1"]["inputs"]["image"] = str(REPO / "README.md")
    assert run_error(locked, job).startswith("invalid input: node 1 (LoadImage), input 'image': ")


# -- 6. linear time, no log forging, odd node ids -------------------------------------------
def test_deep_nesting_is_an_input_error_not_a_crash(locked):
    deep: list = []
    for _ in range(900):
        deep = [deep]
    job = invert_job()
    job["workflow"]["1"]["_meta"] = {"title": "x", "deep": deep}
    assert run_error(locked, job) == "invalid input: input is nested more than 64 levels deep"


def test_a_carriage_return_cannot_forge_a_worker_log_line(locked):
    forged = "[worker] 2026-12-02 03:00:00,000 ERROR forged by the job"
    job = invert_job(("7", {"class_type": f"Nope\r{forged}", "inputs": {}}))
    error = run_error(locked, job)  # the worker refuses the class before ComfyUI sees it
    assert "ComfyUI has no node class 'Nope\\r[worker]" in error
    time.sleep(0.5)  # whatever the refusal logs has been written
    lines = locked.log().splitlines()  # as a log viewer splits: \r ends a line too
    assert not [line for line in lines if line.startswith("[worker]") and "forged" in line]


def test_a_superscript_node_id_keeps_its_outputs(locked):
    prompt = json.loads(json.dumps(INVERT))
    prompt["³"] = prompt.pop("3")
    output = run_ok(
        locked, {"workflow": prompt, "images": [{"name": "in.png", "image": b64(png())}]}
    )
    assert output["images"][0]["node_id"] == "³"


def test_collect_outputs_orders_odd_node_ids_without_failing():
    files = collect_outputs(
        {
            "³": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]},
            "10": {"images": [{"filename": "b.png", "subfolder": "", "type": "output"}]},
            "2": {"images": [{"filename": "c.png", "subfolder": "", "type": "output"}]},
        }
    )
    assert [f.node_id for f in files] == ["2", "10", "³"]
