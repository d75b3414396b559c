"""The fake ComfyUI keeps the promises the recorded API makes (shared notes: comfyui-api.md),
so code that passes against it meets the same behaviour on a real server."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import pytest
import requests
import websocket
from PIL import Image
from support.fake_comfyui import FakeComfy, free_port, install

GRAPH = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "acc_in.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "acc/t"}},
}


def png(color=(1, 2, 3)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    server = FakeComfy(tmp_path_factory.mktemp("fake") / "comfyui")
    yield server
    server.stop()


def upload(fake, name: str, data: bytes, **form) -> dict:
    resp = requests.post(
        fake.url + "/upload/image", files={"image": (name, data)}, data=form, timeout=5
    )
    resp.raise_for_status()
    return resp.json()


def run(fake, prompt: dict, client_id: str = "cid") -> tuple[str, list[tuple[str, dict]]]:
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{fake.port}/ws?clientId={client_id}", timeout=10
    )
    try:
        first = json.loads(ws.recv())
        assert first["type"] == "status" and first["data"]["sid"] == client_id
        resp = requests.post(
            fake.url + "/prompt", json={"prompt": prompt, "client_id": client_id}, timeout=5
        )
        assert resp.status_code == 200, resp.text
        prompt_id = resp.json()["prompt_id"]
        messages = []
        while True:
            msg = json.loads(ws.recv())
            messages.append((msg["type"], msg["data"]))
            if msg["type"] == "executing" and msg["data"]["node"] is None:
                return prompt_id, messages
    finally:
        ws.close()


def test_sage_flag_without_sageattention_exits_255_with_comfyuis_message(tmp_path):
    comfy = install(tmp_path / "comfyui")
    proc = subprocess.run(
        [
            sys.executable,
            str(comfy / "main.py"),
            "--port",
            str(free_port()),
            "--use-sage-attention",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 255
    assert (
        "To use the `--use-sage-attention` feature, the `sageattention` package must be "
        "installed first."
    ) in proc.stdout


def test_message_order_history_and_the_cache_serving_old_file_names(fake):
    upload(fake, "acc_in.png", png(), overwrite="true")
    prompt_id, messages = run(fake, GRAPH)
    kinds = [k for k, _ in messages if k != "progress_state"]
    assert kinds == [
        "status",
        "status",
        "execution_start",
        "execution_cached",
        "executing",
        "executing",
        "executing",
        "executed",
        "execution_success",
        "status",
        "executing",
    ]
    entry = requests.get(f"{fake.url}/history/{prompt_id}", timeout=5).json()[prompt_id]
    assert entry["outputs"] == {
        "3": {"images": [{"filename": "t_00001_.png", "subfolder": "acc", "type": "output"}]}
    }
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"]
    assert entry["prompt"][1] == prompt_id and entry["prompt"][4] == ["3"]
    (fake.dir / "output" / "acc" / "t_00001_.png").unlink()
    again_id, again = run(fake, GRAPH)
    cached = next(d for k, d in again if k == "execution_cached")
    assert cached["nodes"] == ["1", "2", "3"]
    history = requests.get(f"{fake.url}/history/{again_id}", timeout=5).json()[again_id]
    assert history["outputs"] == entry["outputs"]  # the old, now missing, file
    assert not (fake.dir / "output" / "acc" / "t_00001_.png").exists()
    assert requests.get(f"{fake.url}/history/unknown", timeout=5).json() == {}


def test_upload_renames_different_content_under_a_taken_name(fake):
    assert upload(fake, "dup.png", png((9, 9, 9)))["name"] == "dup.png"
    assert upload(fake, "dup.png", png((9, 9, 9)))["name"] == "dup.png"
    assert upload(fake, "dup.png", png((8, 8, 8)))["name"] == "dup (1).png"
    assert requests.post(fake.url + "/upload/image", timeout=5).status_code == 400


def test_validation_error_shapes(fake):
    bad = {**GRAPH, "3": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}}
    resp = requests.post(fake.url + "/prompt", json={"prompt": bad}, timeout=5)
    assert resp.status_code == 400
    assert resp.json() == {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "Required input is missing: images",
            "extra_info": {},
        },
        "node_errors": {
            "3": {
                "errors": [
                    {
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": "images",
                        "extra_info": {"input_name": "images"},
                    }
                ],
                "dependent_outputs": ["3"],
                "class_type": "SaveImage",
            }
        },
    }
    unknown = requests.post(
        fake.url + "/prompt",
        json={"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}},
        timeout=5,
    ).json()
    assert unknown["error"]["message"] == "Cannot execute because node NoSuchNode does not exist."
    assert (
        requests.post(fake.url + "/prompt", json={"prompt": {}}, timeout=5).json()["error"]["type"]
        == "prompt_no_outputs"
    )
    broken = requests.post(fake.url + "/prompt", data=b"{", timeout=5)
    assert broken.status_code == 500 and broken.headers["Content-Type"].startswith("text/plain")
    ckpt = requests.post(
        fake.url + "/prompt",
        json={
            "prompt": {
                "1": {
                    "class_type": "CheckpointLoaderSimple",
                    "inputs": {"ckpt_name": "sd.safetensors"},
                },
                "2": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["1", 2]}},
                "3": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["2", 0], "filename_prefix": "x"},
                },
            }
        },
        timeout=5,
    ).json()["node_errors"]
    assert ckpt["1"]["errors"][0]["details"] == "ckpt_name: 'sd.safetensors' not in []"
    assert ckpt["2"]["errors"][0]["type"] == "return_type_mismatch"


def test_execution_error_and_interrupt(fake):
    upload(fake, "corrupt.png", b"not an image", overwrite="true")
    bad = json.loads(json.dumps(GRAPH))
    bad["1"]["inputs"]["image"] = "corrupt.png"
    _, messages = run(fake, bad)
    error = next(d for k, d in messages if k == "execution_error")
    assert error["node_type"] == "LoadImage"
    assert error["exception_type"] == "PIL.UnidentifiedImageError"
    assert "execution_success" not in [k for k, _ in messages]

    hang = json.loads(json.dumps(GRAPH))
    hang["4"] = {"class_type": "FakeHang", "inputs": {"seconds": 0, "images": ["2", 0]}}
    hang["3"]["inputs"]["images"] = ["4", 0]
    ws = websocket.create_connection(f"ws://127.0.0.1:{fake.port}/ws?clientId=int", timeout=10)
    prompt_id = requests.post(
        fake.url + "/prompt", json={"prompt": hang, "client_id": "int"}, timeout=5
    ).json()["prompt_id"]
    kinds = []
    while kinds[-1:] != ["executing 4"]:  # until the hanging node runs
        msg = json.loads(ws.recv())
        kinds.append(f"{msg['type']} {msg['data'].get('node')}")
    requests.post(fake.url + "/interrupt", json={"prompt_id": "someone-else"}, timeout=5)
    assert "Prompt someone-else is not currently running, skipping interrupt" in fake.read_log()
    queue = requests.get(fake.url + "/queue", timeout=5).json()
    assert queue["queue_running"][0][1] == prompt_id  # the wrong id interrupted nothing
    requests.post(fake.url + "/interrupt", json={"prompt_id": prompt_id}, timeout=5)
    while not kinds or kinds[-1] != "executing-null":
        msg = json.loads(ws.recv())
        null = msg["type"] == "executing" and msg["data"]["node"] is None
        kinds.append("executing-null" if null else msg["type"])
    ws.close()
    assert "execution_interrupted" in kinds
    status = requests.get(f"{fake.url}/history/{prompt_id}", timeout=5).json()[prompt_id]["status"]
    assert (status["status_str"], status["completed"]) == ("error", False)
    assert status["messages"][-1][0] == "execution_interrupted"


def test_a_closing_socket_unregisters_its_client_id_even_after_a_replacement(fake):
    # ComfyUI's websocket handler ends with `sockets.pop(sid, None)`, whichever socket it was
    disconnects = fake.stats().get("websocket disconnects", 0)
    url = f"ws://127.0.0.1:{fake.port}/ws?clientId=same"
    old = websocket.create_connection(url, timeout=10)
    new = websocket.create_connection(url, timeout=10)  # takes the events over
    try:
        old.recv(), new.recv()
        assert "same" in requests.get(fake.url + "/fake/sockets", timeout=5).json()
        old.close()
        deadline = time.monotonic() + 10  # a hang guard
        while fake.stats().get("websocket disconnects", 0) == disconnects:
            assert time.monotonic() < deadline, "the fake never saw the close"
            time.sleep(0.02)
        # the replacement is still open, but nothing is sent to it any more
        assert new.connected
        assert "same" not in requests.get(fake.url + "/fake/sockets", timeout=5).json()
    finally:
        new.close()


def test_vhs_reports_videos_under_gifs(fake):
    upload(fake, "acc_in.png", png(), overwrite="true")
    prompt = json.loads(json.dumps(GRAPH))
    prompt["3"] = {
        "class_type": "VHS_VideoCombine",
        "inputs": {
            "images": ["2", 0],
            "frame_rate": 8.0,
            "loop_count": 0,
            "filename_prefix": "vid/clip",
            "format": "video/h264-mp4",
            "pingpong": False,
            "save_output": True,
        },
    }
    prompt_id, messages = run(fake, prompt)
    assert ("progress", {"value": 1, "max": 1, "prompt_id": prompt_id, "node": "3"}) in messages
    [entry] = requests.get(f"{fake.url}/history/{prompt_id}", timeout=5).json()[prompt_id][
        "outputs"
    ]["3"]["gifs"]
    assert entry["filename"] == "clip_00001.mp4" and entry["format"] == "video/h264-mp4"
    assert entry["workflow"] == "clip_00001.png" and entry["subfolder"] == "vid"
    view = requests.get(
        fake.url + "/view",
        params={"filename": entry["filename"], "subfolder": "vid", "type": "output"},
        timeout=5,
    )
    assert view.headers["Content-Type"] == "video/mp4"


def test_view_and_origin_rules(fake):
    def view(**params):
        return requests.get(fake.url + "/view", params=params, timeout=5).status_code

    assert view(filename="missing.png", type="output") == 404
    assert view(filename="../x.png", type="output") == 400
    assert view(filename="x.png", type="bogus") == 400
    assert view(filename="x.png", subfolder="../..", type="output") == 403
    foreign = requests.get(
        fake.url + "/system_stats", timeout=5, headers={"Origin": "http://evil.example.com"}
    )
    assert foreign.status_code == 403
    assert requests.get(fake.url + "/api/system_stats", timeout=5).ok
