"""The job-input policy against the real ComfyUI and real locked nodes (KJNodes, Easy-Use,
VideoHelperSuite, RES4LYF), where the rules depend on what the real server and nodes do: which
inputs are combos of model files (/object_info, /models), that ComfyUI searches the volume
through the extra-model-paths file the worker writes, and where a real node writes.

One worker serves the module (the real ComfyUI takes tens of seconds to start on the CPU), booted
with a models lock verified in full: one checkpoint verified on the volume, one planted beside it.
"""

from __future__ import annotations

import json

import pytest
from support import real_comfyui
from support.fake_comfyui.runner import WorkerProcess
from support.modelfiles import blob, entry, write_lock

from bake.locks.models import UrlSource

from .test_real_jobs import INVERT, job, run_error, run_ok

pytestmark = [pytest.mark.real_comfyui, pytest.mark.slow]

NODES = ["ComfyUI-KJNodes", "ComfyUI-Easy-Use", "ComfyUI-VideoHelperSuite", "RES4LYF"]
LOCKED = blob(4096, seed=7)


@pytest.fixture(scope="module")
def policy_worker(tmp_path_factory: pytest.TempPathFactory):
    src, python = real_comfyui.source_and_interpreter()
    tmp = tmp_path_factory.mktemp("real-policy")
    comfyui_dir = real_comfyui.make_comfyui(tmp / "comfyui", src, NODES, test_nodes=False)
    checkpoints = tmp / "volume" / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "locked.safetensors").write_bytes(LOCKED)
    (checkpoints / "planted.safetensors").write_bytes(b"not in the lock")
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
        "10": {
            "class_type": "LazySwitchKJ",
            "inputs": {"switch": True, "on_false": "x", "on_true": "planted.safetensors"},
        },
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
        "invalid input: node 5 (CheckpointLoaderSimple), input 'ckpt_name' names a model file "
        "and is fed by node 10: which file it loads cannot be checked before the job runs; set "
        "it as a literal value"
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
    assert error.startswith("invalid input: node 5 (Sigmas Math1) runs code from its inputs")
