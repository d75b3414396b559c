"""ComfyUI under COMFYUI_USER cannot write code, and jobs still work (the image's setup).

The worker is started as root, as in the image; ComfyUI (the fake) runs as `nobody`. The fake's
`POST /fake/write` writes a file with ComfyUI's own rights, as a node told where to write by a
job would: into custom_nodes/ and over ComfyUI's code it must fail, into output/ it must work.
"""

from __future__ import annotations

import base64
import io
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from PIL import Image
from support.fake_comfyui.runner import WorkerProcess

from worker.comfy.user import make_folder, resolve

pytestmark = pytest.mark.slow
USER = "nobody"
INVERT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "t/inv"}},
}


def as_user(user: pwd.struct_passwd) -> dict:
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def interpreter_for(user: pwd.struct_passwd, folder: Path) -> Path:
    """A `python` the user can run that imports the fake's packages (aiohttp, Pillow).

    The test environment's own interpreter may live where only root can read (a home under
    /root); this tries it first, then the system's of the same version, each with the test
    environment's site-packages on its path, and writes a wrapper script for the first that
    works.
    """
    site = sysconfig.get_paths()["purelib"]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        wrapper = folder / "python"
        wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{candidate}" "$@"\n')
        wrapper.chmod(0o755)
        probe = subprocess.run(
            [str(wrapper), "-c", "import aiohttp, PIL.Image"],
            capture_output=True,
            cwd=folder,
            **as_user(user),
        )
        if probe.returncode == 0:
            return wrapper
    raise AssertionError(
        f"no Python {version} that {user.pw_name} can run imports aiohttp and Pillow from "
        f"{site}: this test needs one"
    )


@pytest.fixture
def world_readable_tmp():
    # pytest's tmp_path lies under a folder only root may enter; ComfyUI's user must reach
    # its own ComfyUI folder.
    folder = Path(tempfile.mkdtemp(prefix="comfyui-user-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def status_ids(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def write(worker: WorkerProcess, path: Path) -> dict:
    body = {"path": str(path), "text": "import os  # loaded at the next ComfyUI start\n"}
    return worker.comfy_post("/fake/write", json=body, timeout=5).json()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (the image's case)")
def test_comfyui_runs_unprivileged_cannot_write_code_and_jobs_still_work(world_readable_tmp):
    user = pwd.getpwnam(USER)
    tmp = world_readable_tmp
    python = interpreter_for(user, tmp)
    # The wrapper's interpreter and site-packages lie outside what containment derives from a
    # venv's layout: named for it, as an operator names extra read-only folders
    readable = [str(python.parent), sysconfig.get_paths()["purelib"], sys.base_prefix, sys.prefix]
    worker = WorkerProcess(
        tmp,
        env={
            "COMFYUI_USER": USER,
            "COMFYUI_PYTHON": str(python),
            "CONTAINMENT_READ": ":".join(readable),
        },
    )
    comfyui = worker.comfyui_dir
    (comfyui / "custom_nodes" / "some_node").mkdir(parents=True)
    node_config = comfyui / "custom_nodes" / "RES4LYF" / "res4lyf.config.json"
    node_config.parent.mkdir()
    node_config.write_text("{}")  # what the build-time first start leaves, as root
    # What a build step running as root could leave behind in a writable folder ...
    (comfyui / "user" / "default").mkdir(parents=True)
    (comfyui / "user" / "default" / "comfy.settings.json").write_text("{}")
    # ... and a link planted there to turn the worker's hand-over into a chown of the code.
    (comfyui / "input" / "nodes").symlink_to(comfyui / "custom_nodes")
    with worker:
        worker.wait_ready()
        pid = worker.comfy_pid()
        assert pid is not None
        ids = status_ids(pid)
        assert ids["Uid"].split() == [str(user.pw_uid)] * 4
        assert ids["Gid"].split() == [str(user.pw_gid)] * 4
        assert ids["Groups"] == ""  # none of root's groups came along

        # The attack: a node writes a .py where the next ComfyUI start imports it.
        for target in (
            comfyui / "custom_nodes" / "evil.py",
            comfyui / "custom_nodes" / "some_node" / "__init__.py",
            comfyui / "main.py",
            node_config.parent / "evil.py",
        ):
            before = target.read_bytes() if target.exists() else None
            assert write(worker, target)["error"].startswith("PermissionError"), target
            assert (target.read_bytes() if target.exists() else None) == before
        assert "written" in write(worker, comfyui / "output" / "note.txt")
        # The one node file rewritten at every start (RES4LYF fails to import otherwise).
        assert "written" in write(worker, node_config)

        image = io.BytesIO()
        Image.new("RGB", (32, 24), (10, 200, 30)).save(image, "PNG")
        job = {
            "workflow": INVERT,
            "images": [{"name": "in.png", "image": base64.b64encode(image.getvalue()).decode()}],
        }
        done = worker.runsync(job)
        assert done["status"] == "COMPLETED", done
        assert done["output"]["images"][0]["filename"].startswith("inv")

        child_env = worker.comfy_get("/fake/env", timeout=5).json()
        assert (child_env["USER"], child_env["HOME"]) == (USER, user.pw_dir)

    settings = comfyui / "user" / "default" / "comfy.settings.json"
    assert settings.stat().st_uid == user.pw_uid  # handed over at boot
    assert (comfyui / "custom_nodes").stat().st_uid == 0  # not through the planted link
    assert (comfyui / "custom_nodes" / "some_node").stat().st_uid == 0


def test_an_unknown_comfyui_user_stops_the_boot_with_one_line(tmp_path):
    with WorkerProcess(tmp_path, env={"COMFYUI_USER": "no-such-user-for-comfyui"}) as worker:
        if os.geteuid() != 0:  # a normal user cannot switch: the setting is ignored, said so
            worker.wait_ready()
            assert "COMFYUI_USER=no-such-user-for-comfyui ignored" in worker.log()
            return
        assert worker.wait_exit() == 2
    log = worker.log()
    assert "COMFYUI_USER=no-such-user-for-comfyui: no such user on this system" in log
    assert "starting ComfyUI" not in log


@pytest.mark.skipif(os.geteuid() != 0, reason="handing folders to another user needs root")
def test_a_job_folder_the_worker_creates_belongs_to_comfyuis_user(tmp_path):
    user = resolve(USER)
    assert user is not None
    output = tmp_path / "output"
    output.mkdir()
    folder = make_folder(output / "job-1" / "texts", user)
    assert folder.is_dir()
    for created in (output / "job-1", folder):
        assert (created.stat().st_uid, created.stat().st_gid) == (user.uid, user.gid)
    assert output.stat().st_uid == 0  # what existed before stays as it was
    assert make_folder(output / "job-2", None).stat().st_uid == 0  # no user: the worker's


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (the image's case)")
def test_the_boot_refuses_a_user_that_could_write_comfyuis_code(world_readable_tmp):
    user = pwd.getpwnam(USER)
    worker = WorkerProcess(world_readable_tmp, env={"COMFYUI_USER": USER})
    node = worker.comfyui_dir / "custom_nodes" / "some_node"
    node.mkdir(parents=True)
    os.chown(node, user.pw_uid, user.pw_gid)  # a `chown -R` that went one folder too far
    models = worker.comfyui_dir / "models"
    models.chmod(0o777)  # a mount or chmod that opened the models to everyone
    with worker:
        assert worker.wait_exit() == 2
    log = worker.log()
    assert f"ComfyUI would run as {USER}, who can write {node}, {models}: a job could" in log
    assert "starting ComfyUI" not in log
