"""`placement: cache`: a Hugging Face file that RunPod's model cache puts on the host.

The cache is laid out by huggingface_hub itself (`hf_hub_download(..., cache_dir=...)` against the
local Hub stand-in): `models--ORG--NAME/refs/main`, `snapshots/COMMIT/PATH` symlinked into
`blobs/`. The worker boots with HF_CACHE_ROOTS pointing there, finds the locked commit's file,
verifies it and shows it to ComfyUI; a missing, wrong or other-commit file stops the boot with
one line naming the entry, where it looked and the endpoint setting that provides it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download
from support.fake_comfyui.runner import WorkerProcess
from support.hfserver import HubServer
from support.modelfiles import blob, entry, write_lock

from bake.locks.models import HfSource

from .test_job_policy import checkpoint, invert_job
from .test_jobs import run_error, run_ok

REPO_ID = "acme/cached-models"
FILE = "split_files/checkpoints/cached.safetensors"
DEST = "models/checkpoints/cached.safetensors"
DATA = blob(5000, seed=7)
SOURCE = HfSource(REPO_ID, FILE, "main")


@pytest.fixture()
def hub():
    with HubServer() as server:
        yield server


def hub_cache(tmp_path: Path, hub: HubServer, revision: str) -> Path:
    """A Hub cache holding FILE at `revision`, downloaded the way RunPod's cache does it, where
    RunPod puts it: under the network volume's mount."""
    root = tmp_path / "volume" / "huggingface-cache" / "hub"
    hf_hub_download(REPO_ID, FILE, revision=revision, cache_dir=root, endpoint=hub.endpoint)
    return root


def boot_env(tmp_path: Path, commit: str, cache_root: Path, **extra: str) -> dict[str, str]:
    lock = write_lock(
        tmp_path / "models.lock.yaml",
        entry("cached", SOURCE, DEST, DATA, placement="cache", revision=commit),
    )
    return {
        "MODEL_VERIFY": "full",
        "MODELS_LOCK": str(lock),
        "HF_CACHE_ROOTS": str(cache_root),
        "JOB_TIMEOUT": "10",
        **extra,
    }


def pod_boot(tmp_path: Path, env: dict[str, str]) -> tuple[int | None, str]:
    """Boot in pod mode (models verified before ComfyUI starts): the exit code (None: it came
    up) and the log."""
    with WorkerProcess(tmp_path, env={**env, "WORKER_MODE": "pod"}, serve_api=False) as worker:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            log = worker.log()
            if "ready in" in log:
                return None, log
            if worker.proc is not None and worker.proc.poll() is not None:
                return worker.proc.returncode, worker.log()
            time.sleep(0.05)
        raise AssertionError(f"the boot neither failed nor came up:\n{worker.log()}")


def test_a_cached_model_is_verified_and_loadable_by_a_job(tmp_path, hub):
    commit = hub.add_file(REPO_ID, FILE, DATA)
    root = hub_cache(tmp_path, hub, "main")
    snapshot = root / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / commit / FILE
    assert snapshot.is_symlink()  # huggingface_hub's own layout: snapshots link into blobs/
    with WorkerProcess(tmp_path, env=boot_env(tmp_path, commit, root)) as worker:
        worker.wait_ready()
        # ComfyUI lists it in its checkpoints folder, as the loader's choices offer it
        listed = worker.comfy_session.get(
            worker.comfy_url + "/models/checkpoints", timeout=5
        ).json()
        assert listed == ["cached.safetensors"]
        output = run_ok(worker, invert_job(checkpoint("cached.safetensors")))
        assert output["images"][0]["filename"].endswith(".png")
        # a file of that name planted on the volume is a copy ComfyUI could load instead: refused
        planted = tmp_path / "volume" / DEST
        planted.parent.mkdir(parents=True)
        planted.write_bytes(b"planted")
        error = run_error(worker, invert_job(checkpoint("cached.safetensors")))
        assert f"{planted} was not verified at boot" in error
        log = worker.log()
    assert "models: 1 verified" in log
    assert not (worker.comfyui_dir / DEST).exists()  # nothing was copied into ComfyUI's tree


def test_a_model_missing_from_the_cache_stops_the_boot_naming_the_endpoint_setting(tmp_path, hub):
    commit = hub.add_file(REPO_ID, FILE, DATA)
    root = tmp_path / "empty-cache"
    root.mkdir()
    code, log = pod_boot(tmp_path, boot_env(tmp_path, commit, root))
    assert code == 1
    assert (
        f"cached: not in RunPod's model cache: looked for {FILE} of {REPO_ID} at commit "
        f"{commit} in {root} (HF_CACHE_ROOTS); the cache holds no {REPO_ID}. Set the "
        f"endpoint's model to {REPO_ID}"
    ) in log
    assert "starting ComfyUI" not in log


def test_the_cache_holding_another_commit_is_named(tmp_path, hub):
    old = hub.add_file(REPO_ID, FILE, b"an older version of the file")
    root = hub_cache(tmp_path, hub, "main")  # the cache was filled before the repo moved on
    new = hub.add_file(REPO_ID, FILE, DATA)
    code, log = pod_boot(tmp_path, boot_env(tmp_path, new, root))
    assert code == 1
    assert f"the cache holds {REPO_ID} at {old} only, not the locked commit" in log


def test_a_tampered_cached_file_stops_the_boot(tmp_path, hub):
    commit = hub.add_file(REPO_ID, FILE, DATA)
    root = hub_cache(tmp_path, hub, "main")
    # whoever can write the volume rewrites the blob behind the snapshot link, same size
    (blob_path,) = (root / f"models--{REPO_ID.replace('/', '--')}" / "blobs").iterdir()
    blob_path.write_bytes(DATA[:-1] + b"X")
    code, log = pod_boot(tmp_path, boot_env(tmp_path, commit, root))
    assert code == 1
    assert "cached: " in log and ": wrong blake3: expected " in log
    assert "came from RunPod's model cache" in log


def test_fetch_missing_downloads_a_model_the_cache_lacks_to_the_volume(tmp_path, hub):
    commit = hub.add_file(REPO_ID, FILE, DATA)
    root = tmp_path / "empty-cache"
    root.mkdir()
    env = boot_env(tmp_path, commit, root, FETCH_MISSING="1", HF_ENDPOINT=hub.endpoint)
    code, log = pod_boot(tmp_path, env)
    assert code is None, log
    assert (tmp_path / "volume" / DEST).read_bytes() == DATA
    assert "fetching missing volume models: cached" in log and "models: 1 verified" in log
