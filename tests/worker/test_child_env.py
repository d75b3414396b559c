"""The rules of ComfyUI's environment (worker/comfy/environment.py), one case per rule.

The end-to-end attacks (the fake's and the real ComfyUI's own environment) are in
test_sandbox.py and test_sandbox_real.py; this pins the table itself.
"""

from __future__ import annotations

import pytest

from worker.comfy.environment import EnvPassError, child_environment
from worker.config import Config, ConfigError

WORKER_ENV = {
    "PATH": "/opt/venv/bin:/usr/bin",
    "LC_ALL": "C.UTF-8",
    "CUDA_VISIBLE_DEVICES": "0",
    "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
    "TRITON_CACHE_DIR": "/cache/triton",
    "PYTHONUNBUFFERED": "1",
    "HF_TOKEN": "test-only",
    "HUGGING_FACE_HUB_TOKEN": "test-only",
    "BUCKET_SECRET_ACCESS_KEY": "test-only",
    "AWS_ACCESS_KEY_ID": "test-only",
    "RUNPOD_AI_API_KEY": "test-only",
    "RUNPOD_POD_ID": "test-only",
    "COMFYUI_DIR": "/comfyui",
    "HF_HUB_OFFLINE": "0",
}


def test_only_allowed_names_reach_comfyui_and_offline_is_forced():
    child = child_environment(WORKER_ENV)
    assert child == {
        "PATH": "/opt/venv/bin:/usr/bin",
        "LC_ALL": "C.UTF-8",
        "CUDA_VISIBLE_DEVICES": "0",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "TRITON_CACHE_DIR": "/cache/triton",
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "PIP_NO_INDEX": "1",
        "UV_OFFLINE": "1",
    }


def test_a_switched_user_gets_its_own_home_and_caches_unless_the_operator_set_them():
    child = child_environment({**WORKER_ENV, "HOME": "/root"}, home="/home/comfy", user="comfy")
    assert (child["HOME"], child["USER"], child["LOGNAME"]) == ("/home/comfy", "comfy", "comfy")
    assert child["XDG_CACHE_HOME"] == "/home/comfy/.cache"
    assert child["TORCHINDUCTOR_CACHE_DIR"] == "/home/comfy/.cache/torchinductor"
    assert child["TRITON_CACHE_DIR"] == "/cache/triton"  # set by the operator: kept


def test_operators_pass_further_names_but_never_a_credential():
    child = child_environment({"MY_NODE_SETTING": "x", "OTHER": "y"}, extra=["MY_NODE_SETTING"])
    assert child["MY_NODE_SETTING"] == "x" and "OTHER" not in child
    for name in ("HF_TOKEN", "BUCKET_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "RUNPOD_AI_API_KEY"):
        with pytest.raises(EnvPassError, match=name):
            child_environment(WORKER_ENV, extra=[name])


def test_a_secret_under_an_allowed_prefix_passes_only_when_named():
    env = {"NVIDIA_API_KEY": "k", "TORCH_HUB_TOKEN": "t", "NVIDIA_VISIBLE_DEVICES": "all"}
    assert child_environment(env).get("NVIDIA_API_KEY") is None
    assert "TORCH_HUB_TOKEN" not in child_environment(env)
    assert child_environment(env)["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert child_environment(env, extra=["NVIDIA_API_KEY"])["NVIDIA_API_KEY"] == "k"


def test_the_settings_are_read_from_the_environment():
    config = Config.from_env({"COMFYUI_USER": " comfy ", "COMFYUI_ENV_PASS": "A_B, C_D"})
    assert config.comfyui_user == "comfy"
    assert config.comfyui_env_pass == ("A_B", "C_D")
    with pytest.raises(ConfigError, match="COMFYUI_ENV_PASS: aws_secret_access_key cannot"):
        Config.from_env({"COMFYUI_ENV_PASS": "aws_secret_access_key"})
