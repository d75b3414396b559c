"""The job-input policy against the real ComfyUI and real locked nodes (KJNodes, Easy-Use,
VideoHelperSuite, RES4LYF), where the rules depend on what the real server and nodes do: which
inputs are combos of model files (/object_info, /models), that ComfyUI searches the volume
through the extra-model-paths file the worker writes, and where a real node writes.

One worker serves the module (the real ComfyUI takes tens of seconds to start on the CPU), booted
with a models lock verified in full: one checkpoint verified on the volume, one planted beside it.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
from support import real_comfyui
from support.fake_comfyui.runner import WorkerProcess
from support.modelfiles import blob, entry, write_lock

from bake.locks.models import UrlSource

from .test_real_jobs import INVERT, job, run_error, run_ok

pytestmark = [pytest.mark.real_comfyui, pytest.mark.slow]

NODES = ["ComfyUI-KJNodes", "ComfyUI-Easy-Use", "ComfyUI-VideoHelperSuite", "RES4LYF"]
LOCKED = blob(4096, seed=7)
WIDENED = ("CheckpointLoaderKJ", "easy saveText", "SaveStringKJ", "VHS_LoadVideoPath")


@pytest.fixture(scope="module")
def policy_worker(tmp_path_factory: pytest.TempPathFactory):
    src, python = real_comfyui.source_and_interpreter()
    tmp = tmp_path_factory.mktemp("real-policy")
    comfyui_dir = real_comfyui.make_comfyui(tmp / "comfyui", src, NODES, test_nodes=False)
    checkpoints = tmp / "volume" / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "locked.safetensors").write_bytes(LOCKED)
    (checkpoints / "planted.safetensors").write_bytes(b"not in the lock")
    # weights a job could reach by a name no combo lists: an embedding spelled in computed
    # text, and the two files VAELoader loads for "taesd"
    for rel in (
        "embeddings/planted_embedding.safetensors",
        "vae_approx/taesd_encoder.safetensors",
        "vae_approx/taesd_decoder.safetensors",
    ):
        (tmp / "volume" / "models" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "volume" / "models" / rel).write_bytes(b"not in the lock")
    lock = write_lock(
        tmp / "models.lock.yaml",
        entry(
            "locked",
            UrlSource("https://example.com/locked.safetensors"),
            "models/checkpoints/locked.safetensors",
            LOCKED,
            placement="volume",
        ),
    )
    worker = WorkerProcess(
        tmp,
        comfyui_dir=comfyui_dir,
        comfyui_python=python,
        env={
            **real_comfyui.REAL_ENV,
            "MODEL_VERIFY": "full",
            "MODELS_LOCK": str(lock),
            "JOB_TIMEOUT": str(real_comfyui.REAL_JOB_TIMEOUT),
            # The reviewed table refuses these; allowed here by name, as an operator widens
            # the table, so the path and model rules behind it are tested on the real nodes
            "ALLOW_NODE_CLASSES": ",".join(WIDENED),
        },
    )
    worker.start()
    try:
        worker.wait_ready(timeout=300)
        yield worker
    finally:
        worker.stop()


def with_node(node_id: str, node: dict) -> dict:
    prompt = json.loads(json.dumps(INVERT))
    prompt[node_id] = node
    return job(prompt)


def test_real_comfyui_lists_the_volume_through_the_generated_paths_file(policy_worker):
    listed = policy_worker.comfy_session.get(
        policy_worker.comfy_url + "/models/checkpoints", timeout=10
    ).json()
    assert {"locked.safetensors", "planted.safetensors"} <= set(listed)


def test_a_real_loader_naming_a_planted_checkpoint_is_refused(policy_worker):
    loader = {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "planted.safetensors"},
    }
    error = run_error(policy_worker, with_node("5", loader))
    assert error.startswith(
        "invalid input: node 5 (CheckpointLoaderSimple), input 'ckpt_name': the model file "
        "'planted.safetensors' in checkpoints is not one the models lock holds"
    )


def test_a_custom_node_loader_is_covered_without_a_table(policy_worker):
    # KJNodes' loader lists the same folder: the real /object_info and /models say so
    loader = {
        "class_type": "CheckpointLoaderKJ",
        "inputs": {"ckpt_name": "planted.safetensors"},
    }
    error = run_error(policy_worker, with_node("5", loader))
    assert "(CheckpointLoaderKJ), input 'ckpt_name': the model file 'planted.safetensors'" in error


def test_a_planted_checkpoint_fed_through_a_link_is_refused(policy_worker):
    # The real validation takes a link from an any-type ("*") output into a combo without
    # looking at the value: before the policy refused links, this job loaded planted.safetensors
    # (it failed only because the planted bytes are no safetensors: "ComfyUI failed while
    # running node 5 (CheckpointLoaderSimple): SafetensorError: ... header too large")
    prompt = {
        "10": {"class_type": "PrimitiveString", "inputs": {"value": "planted.safetensors"}},
        "5": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ["10", 0]}},
        "6": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["5", 2]}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "x"}},
    }
    error = run_error(policy_worker, job(prompt))
    assert error == (
        "invalid input: node 5 (CheckpointLoaderSimple), input 'ckpt_name' is a choice from a "
        "list and is fed by node 10: a computed choice cannot be checked before the job runs; "
        "set it as a literal value"
    )


def test_the_verified_checkpoint_passes_the_policy(policy_worker):
    # not wired to an output, so ComfyUI does not load these 4 KiB of noise
    loader = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "locked.safetensors"}}
    assert run_ok(policy_worker, with_node("5", loader))["images"]


def test_easy_save_text_aimed_at_custom_nodes_is_refused_and_writes_nothing(policy_worker):
    custom_nodes = policy_worker.comfyui_dir / "custom_nodes"
    before = sorted(p.name for p in custom_nodes.iterdir())
    save = {
        "class_type": "easy saveText",
        "inputs": {
            "text": "print('runs at the next start')",
            "output_file_path": str(custom_nodes),
            "file_name": "evil",
            "file_extension": "txt",
            "overwrite": True,
        },
    }
    error = run_error(policy_worker, with_node("5", save))
    assert "(easy saveText), input 'output_file_path'" in error
    assert "is outside this job's folders" in error
    assert sorted(p.name for p in custom_nodes.iterdir()) == before


def test_save_string_kj_writes_into_the_job_folder_only(policy_worker):
    save = {
        "class_type": "SaveStringKJ",
        "inputs": {"string": "kept", "output_folder": "notes", "filename_prefix": "text"},
    }
    assert run_ok(policy_worker, with_node("5", save))["images"]
    output = policy_worker.comfyui_dir / "output"
    assert not list(output.glob("notes")) and not list(output.glob("text*"))
    bad = {**save, "inputs": {**save["inputs"], "output_folder": str(output.parent / "user")}}
    assert "is outside this job's folders" in run_error(policy_worker, with_node("5", bad))


def test_a_vhs_path_outside_the_job_is_refused(policy_worker):
    load = {
        "class_type": "VHS_LoadVideoPath",
        "inputs": {
            "video": "/etc/hostname",
            "force_rate": 0,
            "custom_width": 0,
            "custom_height": 0,
            "frame_load_cap": 0,
            "skip_first_frames": 0,
            "select_every_nth": 1,
        },
    }
    assert "(VHS_LoadVideoPath), input 'video': '/etc/hostname' is outside" in run_error(
        policy_worker, with_node("5", load)
    )


def test_sigmas_math1_of_the_real_res4lyf_is_refused(policy_worker):
    info = policy_worker.comfy_session.get(
        policy_worker.comfy_url + "/object_info/Sigmas Math1", timeout=10
    ).json()
    assert "f1" in info["Sigmas Math1"]["input"]["required"]  # the real node is loaded
    sigmas = {
        "class_type": "Sigmas Math1",
        "inputs": {"f1": "torch.os.popen('id').read()", "x": 1.0, "y": 1.0, "z": 1.0},
    }
    error = run_error(policy_worker, with_node("5", sigmas))
    assert error.startswith(
        "invalid input: node 5 (Sigmas Math1): runs text from the job as code (eval, exec, "
        "unpickling, an interpreter of its own) (eval()s its formula f1 with torch in scope"
    )


# -- default-deny on the real nodes: the last round's attacks, each a job ---------------------
def test_a_wrapped_value_is_checked_as_the_real_comfyui_unwraps_it(policy_worker):
    # ComfyUI unwraps {"__value__": X} before the node runs: this prefix once wrote outside
    # the job's folder, and this file name once made LoadImage read outside input/
    prompt = json.loads(json.dumps(INVERT))
    prompt["9"]["inputs"]["filename_prefix"] = {"__value__": "../../custom_nodes/planted"}
    error = run_error(policy_worker, job(prompt))
    assert "filename_prefix '../../custom_nodes/planted' must stay inside the output folder" in (
        error
    )
    prompt = json.loads(json.dumps(INVERT))
    prompt["1"]["inputs"]["image"] = {"__value__": "../../../etc/hostname"}
    assert "is not a plain file name" in run_error(policy_worker, job(prompt))
    loader = {"class_type": "CheckpointLoaderSimple", "inputs": {}}
    loader["inputs"]["ckpt_name"] = {"__value__": "planted.safetensors"}
    error = run_error(policy_worker, with_node("5", loader))
    assert "the model file 'planted.safetensors' in checkpoints is not one the models" in error


def test_the_real_vhs_filter_injection_is_refused(policy_worker):
    combine = {
        "class_type": "VHS_VideoCombine",
        "inputs": {
            "images": ["2", 0],
            "frame_rate": 8,
            "loop_count": 0,
            "filename_prefix": "vid",
            "format": "video/ffmpeg-gif",
            "pingpong": False,
            "save_output": True,
            "dither": "bayer,drawtext=textfile=/etc/hostname",
        },
    }
    error = run_error(policy_worker, with_node("5", combine))
    assert "node 5 (VHS_VideoCombine), input 'dither': 'bayer,drawtext=" in error
    assert "is not one of its options" in error
    combine["inputs"]["dither"] = "bayer"
    output = run_ok(policy_worker, with_node("5", combine))
    assert [v["filename"] for v in output["videos"]] == ["vid_00001.gif"]


@pytest.mark.parametrize(
    ("node", "reason"),
    [
        # reads the file its image input names
        ({"class_type": "WebcamCapture", "inputs": {"image": "x.png"}}, "opens a file"),
        ({"class_type": "LoadLatent", "inputs": {"latent": "x.latent"}}, "opens a file"),
        # expands {a|b} before it looks for <lora:...>: <{planted|x}:1.0> hid a lora name
        (
            {
                "class_type": "easy a1111Loader",
                "inputs": {"positive": "a cat <{lora|x}:planted_lora:1.0>", "negative": ""},
            },
            "refused on this endpoint",
        ),
    ],
)
def test_a_refused_real_class_is_refused_before_it_runs(policy_worker, node, reason):
    error = run_error(policy_worker, with_node("5", node))
    assert error.startswith(f"invalid input: node 5 ({node['class_type']}): "), error
    assert reason in error


def test_a_file_an_earlier_job_left_in_input_is_not_loaded(policy_worker):
    planted = policy_worker.comfyui_dir / "input" / "start_image.png"
    planted.write_bytes(b"left by an earlier job")
    prompt = json.loads(json.dumps(INVERT))
    prompt["1"]["inputs"]["image"] = "start_image.png"
    error = run_error(policy_worker, job(prompt))
    assert "'start_image.png' is neither one of this job's images" in error
    run_ok(policy_worker, job(INVERT))  # the next job: when it ends, input/ is as at boot
    deadline = time.monotonic() + 10
    while planted.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not planted.exists()


def test_the_real_comfyui_is_contained_and_says_so(policy_worker):
    output = run_ok(policy_worker, job(INVERT))
    assert output["containment"].startswith("landlock abi ")
    assert "containment: landlock abi" in policy_worker.log()
    assert requests.get(policy_worker.comfy_url + "/system_stats", timeout=10).status_code == 403


def test_taesd_stands_for_two_unverified_files_and_is_refused(policy_worker):
    loader = {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}}
    error = run_error(policy_worker, with_node("5", loader))
    assert (
        "node 5 (VAELoader), input 'vae_name': the model file 'taesd_decoder.safetensors' in "
        "vae_approx is not one the models lock holds"
    ) in error, error


def test_an_embedding_spelled_in_computed_text_is_refused(policy_worker):
    # "a cat embed" + "ding:planted_embedding": no literal names the embedding
    prompt = json.loads(json.dumps(INVERT))
    prompt["4"] = {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "locked.safetensors"},
    }
    prompt["6"] = {
        "class_type": "StringConcatenate",
        "inputs": {
            "string_a": "a cat embed",
            "string_b": "ding:planted_embedding",
            "delimiter": "",
        },
    }
    prompt["7"] = {"class_type": "CLIPTextEncode", "inputs": {"text": ["6", 0], "clip": ["4", 1]}}
    error = run_error(policy_worker, job(prompt))
    assert error.startswith(
        "invalid input: node 7 (CLIPTextEncode), input 'text' is fed by node 6: a text encoder "
        "loads each `embedding:NAME` of its text"
    ), error
    assert "planted_embedding.safetensors" in error
