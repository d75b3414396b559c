"""The fake ComfyUI follows the real one: the same requests, the same shapes of answer.

Every worker test that runs against tests/support/fake_comfyui trusts it to answer as ComfyUI
does. Here the same conversation (the routes and websocket messages the worker uses) is held
with the fake and with the real server, and the two transcripts are compared by shape: keys,
types, status codes, message order, never values. When ComfyUI is updated and answers
differently, this test names the difference, and the fake is what gets fixed.
"""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
import requests
import websocket
from PIL import Image
from support.fake_comfyui import FakeComfy

pytestmark = [pytest.mark.real_comfyui, pytest.mark.slow]

# The websocket messages the worker reads or may meet; others (progress_state, feature flags,
# binary previews) are ComfyUI's business and left out of the comparison.
MESSAGES = (
    "status",
    "execution_start",
    "execution_cached",
    "executing",
    "executed",
    "execution_success",
    "execution_error",
    "execution_interrupted",
    "progress",
)


def shape(value: Any) -> Any:
    """Keys and types of a JSON value: dicts by key, lists by the set of their items' shapes."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        shapes: list[Any] = []
        for item in value:
            if shape(item) not in shapes:
                shapes.append(shape(item))
        return sorted(shapes, key=json.dumps)
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, int | float):
        return "number"  # ComfyUI itself mixes them (1 and 1.0 for the same field)
    return type(value).__name__


def png(color: tuple[int, int, int] = (5, 6, 7)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 8), color).save(buf, "PNG")
    return buf.getvalue()


# Both servers are talked to on one session: the real one through the worker answers only the
# worker's key (worker/comfy/api_guard.py), which `transcript` puts on it.
HTTP = requests.Session()
HTTP.trust_env = False


class Conversation:
    """One ComfyUI, talked to as the worker talks to it."""

    def __init__(self, url: str):
        self.url = url
        self.client_id = str(uuid.uuid4())
        ws_url = url.replace("http://", "ws://") + f"/ws?clientId={self.client_id}"
        headers = [f"{k}: {v}" for k, v in HTTP.headers.items() if k == "Authorization"]
        self.ws = websocket.create_connection(ws_url, timeout=60, header=headers)
        self.first = json.loads(self.ws.recv())

    def close(self) -> None:
        self.ws.close()

    def upload(self, name: str, data: bytes) -> requests.Response:
        return HTTP.post(
            self.url + "/upload/image",
            files={"image": (name, data)},
            data={"type": "input", "overwrite": "true"},
            timeout=30,
        )

    def queue(self, prompt: dict) -> requests.Response:
        return HTTP.post(
            self.url + "/prompt", json={"prompt": prompt, "client_id": self.client_id}, timeout=30
        )

    def wait_for_node(self, prompt_id: str, node: str) -> None:
        """Until ComfyUI reports `node` of the prompt running (its messages so far dropped)."""
        while True:
            raw = self.ws.recv()
            message = json.loads(raw) if isinstance(raw, str) else {}
            data = message.get("data") or {}
            if (
                message.get("type") == "executing"
                and data.get("prompt_id") == prompt_id
                and data.get("node") == node
            ):
                return

    def messages_until_done(self, prompt_id: str) -> list[tuple[str, Any]]:
        """The prompt's messages of interest, up to and including `executing` with node null."""
        seen: list[tuple[str, Any]] = []
        while True:
            raw = self.ws.recv()
            if not isinstance(raw, str):
                continue  # binary preview frames
            message = json.loads(raw)
            kind, data = message["type"], message.get("data") or {}
            if kind not in MESSAGES:
                continue
            if "prompt_id" in data and data["prompt_id"] != prompt_id:
                continue
            seen.append((kind, data))
            if kind == "executing" and data.get("node") is None:
                return seen


def transcript(url: str, tag: str, hang_class: str, key: str | None = None) -> dict[str, Any]:
    """The shapes of every answer the worker relies on, from one server. `hang_class` names
    a node that runs until interrupted (the fake's own, or the test node pack's); `key`, the
    API key the server demands."""
    HTTP.headers.pop("Authorization", None)
    if key is not None:
        HTTP.headers["Authorization"] = f"Bearer {key}"
    talk = Conversation(url)
    out: dict[str, Any] = {"first message": shape(talk.first)}
    try:
        stats = HTTP.get(url + "/system_stats", timeout=30)
        out["GET /system_stats"] = (stats.status_code, shape(stats.json()))
        up = talk.upload(f"parity-{tag}.png", png())
        out["POST /upload/image"] = (up.status_code, shape(up.json()))
        name = up.json()["name"]

        # a prompt that runs: LoadImage -> ImageInvert -> SaveImage
        prompt = {
            "1": {"class_type": "LoadImage", "inputs": {"image": name}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {
                "class_type": "SaveImage",
                "inputs": {"images": ["2", 0], "filename_prefix": f"parity/{tag}"},
            },
        }
        queued = talk.queue(prompt)
        out["POST /prompt"] = (queued.status_code, shape(queued.json()))
        prompt_id = queued.json()["prompt_id"]
        messages = talk.messages_until_done(prompt_id)
        out["messages, success"] = _message_shapes(messages)
        history = HTTP.get(f"{url}/history/{prompt_id}", timeout=30)
        entry = history.json()[prompt_id]
        out["GET /history/<id>, success"] = (history.status_code, _entry_shape(entry))
        [saved] = entry["outputs"]["3"]["images"]
        view = HTTP.get(url + "/view", params=saved, timeout=30)
        out["GET /view"] = (view.status_code, view.headers.get("Content-Type"), view.content[:8])

        # a prompt that fails while running: LoadImage of a file that is no image
        bad = talk.upload(f"parity-{tag}-bad.png", b"this is not a png").json()["name"]
        failing = {**prompt, "1": {"class_type": "LoadImage", "inputs": {"image": bad}}}
        prompt_id = talk.queue(failing).json()["prompt_id"]
        out["messages, error"] = _message_shapes(talk.messages_until_done(prompt_id))
        entry = HTTP.get(f"{url}/history/{prompt_id}", timeout=30).json()[prompt_id]
        out["GET /history/<id>, error"] = _entry_shape(entry)

        # prompts the server refuses
        invalid = {
            **prompt,
            "4": {
                "class_type": "ImageScale",
                "inputs": {
                    "image": ["2", 0],
                    "upscale_method": "nearest-exact",
                    "width": 99999,
                    "height": 8,
                    "crop": "disabled",
                },
            },
        }
        invalid["1"] = {"class_type": "LoadImage", "inputs": {"image": "absent.png"}}
        invalid["3"] = {
            "class_type": "SaveImage",
            "inputs": {"images": ["4", 0], "filename_prefix": "parity/x"},
        }
        refused = talk.queue(invalid)
        out["POST /prompt, invalid inputs"] = (
            refused.status_code,
            shape(refused.json()),
            _error_types(refused.json()),
        )
        unknown = talk.queue({**prompt, "2": {"class_type": "NoSuchNode", "inputs": {}}})
        out["POST /prompt, unknown class"] = (
            unknown.status_code,
            shape(unknown.json()),
            unknown.json()["error"]["type"],
        )

        # a prompt interrupted while its node runs
        hanging = {
            **prompt,
            "2": {"class_type": hang_class, "inputs": {"images": ["1", 0], "seconds": 0}},
        }
        hanging["3"] = {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": "parity/h"},
        }
        prompt_id = talk.queue(hanging).json()["prompt_id"]
        talk.wait_for_node(prompt_id, "2")
        stop = HTTP.post(url + "/interrupt", json={"prompt_id": prompt_id}, timeout=30)
        out["POST /interrupt"] = stop.status_code
        out["messages, interrupted"] = _message_shapes(talk.messages_until_done(prompt_id))
        entry = HTTP.get(f"{url}/history/{prompt_id}", timeout=30).json()[prompt_id]
        out["GET /history/<id>, interrupted"] = _entry_shape(entry)

        unknown_history = HTTP.get(f"{url}/history/{uuid.uuid4()}", timeout=30)
        out["GET /history/<unknown>"] = (unknown_history.status_code, unknown_history.json())
        queue = HTTP.get(url + "/queue", timeout=30)
        out["GET /queue"] = (queue.status_code, shape(queue.json()))
        delete = HTTP.post(url + "/queue", json={"delete": [prompt_id]}, timeout=30)
        out["POST /queue delete"] = delete.status_code
        api = HTTP.get(url + "/api/system_stats", timeout=30)
        out["GET /api/system_stats"] = api.status_code
    finally:
        talk.close()
    return out


def _message_shapes(messages: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Kinds in order (a repeated `status` counted once) with the shape of their data."""
    result: list[tuple[str, Any]] = []
    for kind, data in messages:
        if kind == "status" and result and result[-1][0] == "status":
            continue
        if kind == "status":
            data = {k: v for k, v in data.items() if k != "sid"}
        result.append((kind, shape(data)))
    return result


def _entry_shape(entry: dict[str, Any]) -> Any:
    status = entry.get("status") or {}
    return {
        "entry": shape({k: v for k, v in entry.items() if k not in ("prompt", "outputs", "meta")}),
        "keys": sorted(entry),
        "outputs": shape(entry.get("outputs")),
        "status messages": [(kind, shape(data)) for kind, data in status.get("messages", [])],
    }


def _error_types(body: dict[str, Any]) -> dict[str, list[tuple[str, str | None]]]:
    return {
        node: [(e["type"], (e.get("extra_info") or {}).get("input_name")) for e in detail["errors"]]
        for node, detail in sorted(body.get("node_errors", {}).items())
    }


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory):
    server = FakeComfy(tmp_path_factory.mktemp("parity-fake") / "comfyui")
    yield server
    server.stop()


def test_the_fake_answers_in_the_real_servers_shapes(real_worker, fake):
    real = transcript(real_worker.comfy_url, "real", "BakeTestHang", real_worker.api_key)
    ours = transcript(fake.url, "fake", "FakeHang")
    differences = [
        f"{key}:\n  real: {real[key]!r}\n  fake: {ours.get(key)!r}"
        for key in real
        if real[key] != ours.get(key)
    ]
    assert not differences, "the fake ComfyUI has drifted from the real one:\n" + "\n".join(
        differences
    )
