"""Default-deny and containment, attacked as a caller would: jobs through RunPod's local API
(/runsync) against the worker and the fake ComfyUI, started exactly as the image starts ComfyUI
(behind its API key, under the Landlock ruleset: this machine's kernel has it).

Each test sends what an attacker sent against the deny-list that came before: an unreviewed
class, an input the class never declared, a `{"__value__": ...}` wrapper around a value every
string check would have refused, a VideoHelperSuite format widget carrying an ffmpeg filter, a
file left in input/ for the next job; and, from inside ComfyUI (the fake's hooks do what a
misbehaving node would), a write outside its folders, a TCP connection, a request to ComfyUI's
own port without the key.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import sys
import threading
import time

import pytest
from support.fake_comfyui.runner import REPO, WorkerProcess

from worker.job_files import BootFiles
from worker.policy.inputs import InputChecker
from worker.policy.paths import FILE_NAMES

from .test_jobs import INVERT, b64, png, run_error, run_ok

IMAGE = [{"name": "in.png", "image": b64(png())}]
OBJECT_INFO = REPO / "tests" / "support" / "fake_comfyui" / "object_info.json.gz"


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("default-deny")
    (tmp / "volume" / "models" / "checkpoints").mkdir(parents=True)
    (tmp / "volume" / "models" / "checkpoints" / "planted.safetensors").write_bytes(b"planted")
    w = WorkerProcess(tmp, env={"JOB_TIMEOUT": "10"})
    w.start()
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()


def invert_with(node_id: str, node: dict) -> dict:
    prompt = json.loads(json.dumps(INVERT))
    prompt[node_id] = node
    return {"workflow": prompt, "images": IMAGE}


def test_a_legitimate_job_runs_and_says_what_contains_comfyui(worker):
    output = run_ok(worker, {"workflow": INVERT, "images": IMAGE})
    assert output["containment"] == "landlock abi 7 (fs, net, scope), same user as the worker"
    assert "containment: landlock abi 7 (fs, net, scope)" in worker.log()
    assert "node classes: " in worker.log() and "installed node classes allowed" in worker.log()


@pytest.mark.parametrize(
    ("class_type", "inputs", "reason"),
    [
        ("WebcamCapture", {"image": "../../secret.png", "width": 64, "height": 64}, "opens a"),
        ("LoadLatent", {"latent": "x.latent"}, "opens a"),
        ("easy simpleMath", {"value": "().__class__"}, "runs text from the job as code"),
        ("VHS_LoadVideoFFmpeg", {"video": "in.mp4"}, "ffmpeg"),
        # the code nodes: RES4LYF evaluates f1 with torch in scope, rgthree interprets Python
        ("Sigmas Math1", {"f1": "torch.os.popen('id').read()"}, "ALLOW_CODE_NODES=1"),
        ("Power Puter (rgthree)", {"code": "''.__class__.__mro__"}, "ALLOW_CODE_NODES=1"),
    ],
)
def test_a_refused_class_is_refused_before_anything_is_queued(worker, class_type, inputs, reason):
    before = worker.comfy_get("/fake/stats", timeout=5).json().get("POST /prompt", 0)
    error = run_error(worker, invert_with("9", {"class_type": class_type, "inputs": inputs}))
    assert error.startswith(f"invalid input: node 9 ({class_type}): "), error
    assert reason in error and "refused on this endpoint" in error
    assert worker.comfy_get("/fake/stats", timeout=5).json().get("POST /prompt", 0) == before


def test_an_input_the_class_does_not_declare_is_refused(worker):
    prompt = json.loads(json.dumps(INVERT))
    prompt["2"]["inputs"]["ffmpeg_args"] = "-i /etc/passwd"
    error = run_error(worker, {"workflow": prompt, "images": IMAGE})
    assert error.startswith(
        "invalid input: node 2 (ImageInvert), input 'ffmpeg_args': the class does not declare it"
    ), error


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        # each value passed every string check while it was wrapped
        (
            {"3": {"images": ["2", 0], "filename_prefix": {"__value__": "../../custom_nodes/x"}}},
            "must stay inside the output folder",
        ),
        ({"1": {"image": {"__value__": "../../etc/passwd"}}}, "is not a plain file name"),
        ({"1": {"image": {"__value__": ["..", "x"]}}}, "names a file: expected a string"),
        ({"2": {"image": ["1", 0], "extra": {"__value__": 1}}}, "does not declare it"),
    ],
)
def test_a_wrapped_value_is_checked_as_the_node_gets_it(worker, node, expected):
    prompt = json.loads(json.dumps(INVERT))
    for node_id, inputs in node.items():
        prompt[node_id]["inputs"] = inputs
    error = run_error(worker, {"workflow": prompt, "images": IMAGE})
    assert expected in error, error


def test_a_wrapped_checkpoint_name_meets_the_model_policy(worker):
    loader = {"class_type": "CheckpointLoaderSimple", "inputs": {}}
    loader["inputs"]["ckpt_name"] = {"__value__": "planted.safetensors"}
    error = run_error(worker, invert_with("9", loader))
    assert "node 9 (CheckpointLoaderSimple), input 'ckpt_name'" in error
    assert "'planted.safetensors'" in error and "MODEL_POLICY=locked" in error


def test_a_value_outside_its_declaration_is_refused(worker):
    scale = {
        "class_type": "ImageScale",
        "inputs": {
            "image": ["2", 0],
            "upscale_method": "nearest-exact; rm -rf /",
            "width": 64,
            "height": 64,
            "crop": "disabled",
        },
    }
    error = run_error(worker, invert_with("9", scale))
    assert "input 'upscale_method': 'nearest-exact; rm -rf /' is not one of its options" in error
    scale["inputs"]["upscale_method"] = "nearest-exact"
    scale["inputs"]["width"] = 10**9
    assert "above its maximum" in run_error(worker, invert_with("9", scale))
    scale["inputs"]["width"] = 64
    scale["inputs"]["image"] = "a literal where an IMAGE connects"
    assert "takes a connection from another node (type 'IMAGE')" in run_error(
        worker, invert_with("9", scale)
    )


def test_a_combo_fed_by_a_link_is_refused(worker):
    prompt = json.loads(json.dumps(INVERT))
    prompt["8"] = {"class_type": "PrimitiveString", "inputs": {"value": "nearest-exact"}}
    prompt["9"] = {
        "class_type": "ImageScale",
        "inputs": {
            "image": ["2", 0],
            "upscale_method": ["8", 0],
            "width": 64,
            "height": 64,
            "crop": "disabled",
        },
    }
    error = run_error(worker, {"workflow": prompt, "images": IMAGE})
    assert "input 'upscale_method' is a choice from a list and is fed by node 8" in error


def video_combine(**extra) -> dict:
    return {
        "class_type": "VHS_VideoCombine",
        "inputs": {
            "images": ["2", 0],
            "frame_rate": 8,
            "loop_count": 0,
            "filename_prefix": "vid",
            "format": "video/ffmpeg-gif",
            "pingpong": False,
            "save_output": True,
            **extra,
        },
    }


def test_a_format_widget_carrying_an_ffmpeg_filter_is_refused(worker):
    injected = "bayer,drawtext=textfile=/proc/self/environ;movie=filename=http\\://127.0.0.1/x"
    error = run_error(worker, invert_with("9", video_combine(dither=injected)))
    assert "node 9 (VHS_VideoCombine), input 'dither': " in error
    assert "is not one of its options" in error
    error = run_error(worker, invert_with("9", video_combine(manual_format_widgets={"x": 1})))
    assert "input 'manual_format_widgets': the class does not declare it" in error


def test_the_format_widgets_a_format_declares_pass(worker):
    output = run_ok(worker, invert_with("9", video_combine(dither="bayer")))
    assert output["videos"] or output["images"]


def test_a_class_nobody_reviewed_is_refused(tmp_path):
    # FakeHang is installed (the fake registers it) but in no pack of the reviewed table
    with WorkerProcess(tmp_path, env={"ALLOW_NODE_CLASSES": ""}) as w:
        w.wait_ready()
        hang = {"class_type": "FakeHang", "inputs": {"seconds": 0.1}}
        error = run_error(w, invert_with("9", hang))
    assert error == (
        "invalid input: node 9 (FakeHang): it is not in the reviewed class table "
        "(node-classes.yaml): a class that a node update added, refused until it is reviewed"
    )


def test_a_file_left_in_input_is_never_loaded_and_is_gone_after_the_next_job(worker):
    before = sorted(p.name for p in (worker.comfyui_dir / "input").iterdir())
    # What a node of an earlier job left behind: the Wan workflow's default start image
    planted = worker.comfyui_dir / "input" / "start_image.png"
    planted.write_bytes(png(color=(255, 0, 0)))
    prompt = json.loads(json.dumps(INVERT))
    prompt["1"]["inputs"]["image"] = "start_image.png"
    error = run_error(worker, {"workflow": prompt})
    assert "'start_image.png' is neither one of this job's images" in error
    run_ok(worker, {"workflow": INVERT, "images": IMAGE})
    # The removal runs on the worker's background thread after the result goes out: the
    # planted file may go with the first job, the second job's folder a moment after its result.
    deadline = time.monotonic() + 5
    listing = sorted(p.name for p in (worker.comfyui_dir / "input").iterdir())
    while listing != before and time.monotonic() < deadline:
        time.sleep(0.05)
        listing = sorted(p.name for p in (worker.comfyui_dir / "input").iterdir())
    assert not planted.exists()
    assert listing == before


def test_comfyuis_api_answers_only_the_worker(worker):
    import requests

    for method, path in (("GET", "/system_stats"), ("POST", "/prompt"), ("GET", "/history")):
        answer = requests.request(method, worker.comfy_url + path, timeout=5)
        assert answer.status_code == 403, (method, path)
    # the websocket too
    with socket.create_connection(("127.0.0.1", worker.comfy_port), timeout=5) as sock:
        sock.sendall(
            b"GET /ws?clientId=x HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert sock.recv(64).startswith(b"HTTP/1.1 403")


def test_comfyui_cannot_write_outside_its_folders(worker):
    for path in (
        worker.comfyui_dir / "planted.py",
        worker.comfyui_dir / "models" / "checkpoints" / "x.safetensors",
        worker.tmp / "volume" / "models" / "checkpoints" / "x.safetensors",
    ):
        answer = worker.comfy_post("/fake/write", json={"path": str(path), "text": "x"}).json()
        assert answer.get("error", "").startswith("PermissionError"), (path, answer)
        assert not path.exists()
    inside = worker.comfyui_dir / "output" / "allowed.txt"
    assert worker.comfy_post("/fake/write", json={"path": str(inside)}).json() == {
        "written": str(inside)
    }
    inside.unlink()


def test_comfyui_cannot_read_the_workers_files_or_environment(worker):
    for path in (worker.log_path, f"/proc/{worker.proc.pid}/environ"):
        answer = worker.comfy_post("/fake/read", json={"path": str(path)}).json()
        assert answer.get("error", "").startswith("PermissionError"), (path, answer)


def test_comfyui_opens_no_tcp_connection_not_even_to_its_own_port(worker):
    accepted = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(3)
        port = listener.getsockname()[1]

        def accept() -> None:
            with contextlib.suppress(OSError):
                accepted.append(listener.accept())

        thread = threading.Thread(target=accept)
        thread.start()
        for target in (port, worker.comfy_port):
            answer = worker.comfy_post("/fake/connect", json={"port": target}).json()
            assert answer.get("error", "").startswith("PermissionError"), (target, answer)
        thread.join()
    assert accepted == []


def test_a_chain_too_long_for_comfyui_is_refused_before_it_wedges_it(worker):
    # 1,500 nodes in a chain that feeds no output: ComfyUI never validates them, but its cache
    # walks them recursively, and the RecursionError ended its prompt thread for good
    prompt = json.loads(json.dumps(INVERT))
    previous = "1"
    for i in range(100, 1600):
        prompt[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [previous, 0]}}
        previous = str(i)
    error = run_error(worker, {"workflow": prompt, "images": IMAGE})
    assert error == "invalid input: the workflow has 1503 nodes, more than 1000"
    for i in range(300, 1600):
        del prompt[str(i)]
    error = run_error(worker, {"workflow": prompt, "images": IMAGE})
    assert "ends a chain of links 201 nodes deep, deeper than 200" in error
    prompt = json.loads(json.dumps(INVERT))
    prompt["4"] = {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}}
    prompt["2"]["inputs"] = {"image": ["4", 0]}  # two nodes, each fed by the other
    assert "a cycle" in run_error(worker, {"workflow": prompt, "images": IMAGE})
    run_ok(worker, {"workflow": INVERT, "images": IMAGE})


def test_a_node_carries_only_its_class_inputs_and_title_to_comfyui():
    # ComfyUI reads `is_changed` from the prompt in place of the class's IS_CHANGED
    info = json.loads(gzip.decompress(OBJECT_INFO.read_bytes()))
    prompt = json.loads(json.dumps(INVERT))
    prompt["1"]["is_changed"] = ["pinned"]
    prompt["1"]["_meta"] = {"title": "Source"}
    sent = InputChecker(info, file_names=frozenset(FILE_NAMES)).normalise(prompt, {})
    assert sent["1"] == {
        "class_type": "LoadImage",
        "inputs": {"image": "in.png"},
        "_meta": {"title": "Source"},
    }


NO_LANDLOCK = (sys.executable, str(REPO / "tests" / "support" / "no_landlock.py"), "--")


def test_without_landlock_auto_boots_and_every_job_says_it_is_not_contained(tmp_path):
    # the container runtime's seccomp profile answers the Landlock calls with ENOSYS
    with WorkerProcess(tmp_path, prefix=NO_LANDLOCK) as w:
        w.wait_ready()
        output = run_ok(w, {"workflow": INVERT, "images": IMAGE})
    assert output["containment"].startswith("none (landlock unavailable: ")
    assert "ENOSYS" in output["containment"]
    assert output["containment"].endswith(", same user as the worker")


def test_without_landlock_required_refuses_to_boot(tmp_path):
    with WorkerProcess(tmp_path, env={"CONTAINMENT": "required"}, prefix=NO_LANDLOCK) as w:
        assert w.wait_exit() == 2
    log = w.log()
    assert "ERROR containment: " in log and "ENOSYS" in log
    assert "starting ComfyUI" not in log


def test_two_jobs_at_once_keep_their_folders_and_the_last_one_out_restores_the_boot_state(
    tmp_path,
):
    comfy = tmp_path / "comfyui"
    for folder in ("input", "output", "temp"):
        (comfy / folder).mkdir(parents=True)
    (comfy / "input" / "example.png").write_bytes(b"shipped")
    boot = BootFiles.take(comfy)
    boot.begin("job-a")
    boot.begin("job-b")
    for job in ("job-a", "job-b"):
        (comfy / "output" / job).mkdir()
        (comfy / "output" / job / "out.png").write_bytes(b"x")
    (comfy / "input" / "left-by-a-node.png").write_bytes(b"x")
    # a ends while b runs: only a's own folders go, b's and the stray stay for now
    assert boot.end("job-a") == [comfy / f / "job-a" for f in ("input", "output", "temp")]
    # b ends last: everything the boot did not see goes, the shipped file stays
    assert sorted(boot.end("job-b")) == sorted(
        [
            comfy / "input" / "left-by-a-node.png",
            comfy / "output" / "job-a",
            comfy / "output" / "job-b",
        ]
    )
    assert boot.names("input") == frozenset({"example.png"})
