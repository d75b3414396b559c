"""Configuration from the environment: defaults, the derived values and refusing bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.modelfiles import entry

from bake.locks.models import HfSource, S3Source
from worker.comfy.process import comfy_command
from worker.config import Config, ConfigError
from worker.models_check import fetch_blocker

REPO = Path(__file__).resolve().parents[2]


def test_defaults():
    config = Config.from_env({})
    assert config.comfyui_dir == Path("/comfyui")
    assert config.comfyui_port == 8188
    assert config.mode == "serverless" and config.listen == "127.0.0.1"
    assert config.sage_attention and config.model_verify == "full"
    assert config.volume_roots == (Path("/workspace"), Path("/runpod-volume"))
    assert not config.fetch_missing and config.allow_raw_workflows
    assert config.bucket is None
    assert config.extra_model_paths is None  # written at boot from VOLUME_ROOTS
    assert config.model_policy == "locked" and not config.allow_code_nodes
    assert config.max_input_image_bytes == 50 * 1024 * 1024


def test_the_exact_comfyui_command_line():
    config = Config.from_env(
        {
            "COMFYUI_DIR": "/c",
            "COMFYUI_PYTHON": "/py",
            "COMFYUI_EXTRA_ARGS": "--cpu --verbose DEBUG",
            "EXTRA_MODEL_PATHS": "/e.yaml",
        }
    )
    assert comfy_command(config, sage=True) == [
        "/py",
        "/c/main.py",
        "--listen",
        "127.0.0.1",
        "--port",
        "8188",
        "--fast",
        "fp16_accumulation",
        "--preview-method",
        "none",
        "--use-sage-attention",
        "--extra-model-paths-config",
        "/e.yaml",
        "--cpu",
        "--verbose",
        "DEBUG",
    ]
    assert "--use-sage-attention" not in comfy_command(config, sage=False)


def test_pod_mode_listens_on_all_interfaces():
    assert Config.from_env({"WORKER_MODE": "pod"}).listen == "0.0.0.0"


BUCKET = {"BUCKET_ENDPOINT_URL": "http://127.0.0.1:9000", "BUCKET_NAME": "outputs"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SAGE_ATTENTION": "maybe"}, "SAGE_ATTENTION='maybe': expected one of on, off"),
        ({"MODEL_VERIFY": "quick"}, "MODEL_VERIFY='quick': expected one of full, fast, off"),
        ({"COMFYUI_PORT": "http"}, "COMFYUI_PORT='http': expected a number"),
        ({"JOB_TIMEOUT": "-1"}, "JOB_TIMEOUT='-1': must be at least"),
        ({"BUCKET_ENDPOINT_URL": "http://127.0.0.1:9000"}, "set BUCKET_NAME"),
        ({"MODEL_POLICY": "loose"}, "MODEL_POLICY='loose': expected one of locked, open"),
        ({"ALLOW_CODE_NODES": "sure"}, "ALLOW_CODE_NODES='sure': expected one of on, off"),
        ({"MAX_INPUT_IMAGE_BYTES": "0"}, "MAX_INPUT_IMAGE_BYTES='0': must be at least 1"),
        ({**BUCKET, "BUCKET_URL_EXPIRES": "604801"}, "sign URLs for at most 604800 seconds"),
        ({**BUCKET, "BUCKET_PREFIX": "a..b"}, "BUCKET_PREFIX='a..b': expected folder names"),
        ({**BUCKET, "BUCKET_PREFIX": "out/../x"}, "without empty, '.' or '..' parts"),
        ({"NODE_CLASSES": "some"}, "NODE_CLASSES='some': expected one of reviewed, all"),
        ({"CONTAINMENT": "maybe"}, "CONTAINMENT='maybe': expected one of required, auto, off"),
        ({"COMFYUI_API_KEY": "short"}, "COMFYUI_API_KEY: expected 16 to 256 printable"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env, expected):
    with pytest.raises(ConfigError) as info:
        Config.from_env(env)
    assert expected in str(info.value)


def test_switches_accept_the_usual_spellings():
    assert not Config.from_env({"SAGE_ATTENTION": "0"}).sage_attention
    assert Config.from_env({"FETCH_MISSING": "1"}).fetch_missing
    assert not Config.from_env({"ALLOW_RAW_WORKFLOWS": "false"}).allow_raw_workflows


def test_bucket_name_from_a_virtual_host_endpoint():
    bucket = Config.from_env(
        {
            "BUCKET_ENDPOINT_URL": "https://outs.s3.eu-west-1.amazonaws.com",
            "BUCKET_ACCESS_KEY_ID": "testing",
        }
    ).bucket
    assert bucket is not None and bucket.bucket == "outs" and bucket.access_key_id == "testing"


@pytest.mark.parametrize(
    ("endpoint", "name", "expected"),
    [
        # AWS's virtual-host names: the bucket read from the host, the service host addressed
        (
            "https://outs.s3.eu-west-1.amazonaws.com",
            "",
            ("outs", "https://s3.eu-west-1.amazonaws.com", "virtual"),
        ),
        ("https://outs.s3.amazonaws.com", "outs", ("outs", "https://s3.amazonaws.com", "virtual")),
        (
            "https://outs.s3-eu-west-1.amazonaws.com",
            "",
            ("outs", "https://s3-eu-west-1.amazonaws.com", "virtual"),
        ),
        (
            "https://outs.s3.dualstack.us-east-2.amazonaws.com",
            "",
            ("outs", "https://s3.dualstack.us-east-2.amazonaws.com", "virtual"),
        ),
        # dots in the bucket's name: path-style on the service host (the wildcard certificate)
        (
            "https://my.outs.s3.us-east-1.amazonaws.com",
            "",
            ("my.outs", "https://s3.us-east-1.amazonaws.com", "path"),
        ),
        # R2's first label is the account, not a bucket: the endpoint stays, path-style
        (
            "https://0123abcd.r2.cloudflarestorage.com",
            "outs",
            ("outs", "https://0123abcd.r2.cloudflarestorage.com", "path"),
        ),
        ("http://127.0.0.1:9000", "outs", ("outs", "http://127.0.0.1:9000", "path")),
        (
            "https://s3.us-east-1.amazonaws.com",
            "outs",
            ("outs", "https://s3.us-east-1.amazonaws.com", "path"),
        ),
        # a bucket whose own name holds ".s3-" or ".s3.": the last s3 label is the service's
        (
            "https://company.s3-backups.s3.eu-west-1.amazonaws.com",
            "company.s3-backups",
            ("company.s3-backups", "https://s3.eu-west-1.amazonaws.com", "path"),
        ),
        # a fully qualified name's final dot
        ("https://outs.s3.amazonaws.com.", "", ("outs", "https://s3.amazonaws.com", "virtual")),
        # PrivateLink's endpoint names an endpoint, not a bucket: used as given
        (
            "https://vpce-1a2b3c4d-5e6f.s3.us-east-1.vpce.amazonaws.com",
            "outs",
            ("outs", "https://vpce-1a2b3c4d-5e6f.s3.us-east-1.vpce.amazonaws.com", "path"),
        ),
        # another provider's host that starts with the bucket named: its service host
        (
            "https://outs.nyc3.digitaloceanspaces.com",
            "outs",
            ("outs", "https://nyc3.digitaloceanspaces.com", "virtual"),
        ),
    ],
)
def test_the_bucket_endpoint_as_given_by_the_operator(endpoint, name, expected):
    env = {"BUCKET_ENDPOINT_URL": endpoint}
    if name:
        env["BUCKET_NAME"] = name
    bucket = Config.from_env(env).bucket
    assert bucket is not None
    assert (bucket.bucket, bucket.endpoint_url, bucket.addressing_style) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        # R2's account id is not a bucket: never guessed from it
        ({"BUCKET_ENDPOINT_URL": "https://0123abcd.r2.cloudflarestorage.com"}, "set BUCKET_NAME"),
        (
            {
                "BUCKET_ENDPOINT_URL": "https://outs.s3.eu-west-1.amazonaws.com",
                "BUCKET_NAME": "other",
            },
            "BUCKET_NAME='other' but BUCKET_ENDPOINT_URL names the bucket 'outs'",
        ),
    ],
)
def test_a_bucket_endpoint_that_contradicts_itself_is_refused(env, expected):
    with pytest.raises(ConfigError) as info:
        Config.from_env(env)
    assert expected in str(info.value)


def test_what_keeps_a_volume_model_from_being_fetched():

    s3 = entry("m", S3Source("b", "k"), "models/vae/m.safetensors", b"x", placement="volume")
    hf = entry(
        "h",
        HfSource("org/repo", "m.safetensors"),
        "models/vae/h.safetensors",
        b"x",
        placement="volume",
    )
    keys = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
    }
    assert fetch_blocker(s3, keys) is None
    assert (
        fetch_blocker(s3, {"AWS_ACCESS_KEY_ID": "testing"})
        == "AWS_ENDPOINT_URL, AWS_SECRET_ACCESS_KEY not set"
    )
    assert fetch_blocker(hf, {}) is None
    assert fetch_blocker(hf, {"HF_HUB_OFFLINE": "1"}) == "HF_HUB_OFFLINE is set"
