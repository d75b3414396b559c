"""The ComfyUI client on its own against the fake: a dropped websocket does not lose the job."""

from __future__ import annotations

import io
import socket
import threading
import time

import pytest
from PIL import Image
from support.fake_comfyui import FakeComfy

from worker.comfy_client import ComfyClient, JobTimeout

GRAPH = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "c.png"}},
    "2": {"class_type": "FakeHang", "inputs": {"seconds": 1.0, "images": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "c"}},
}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    server = FakeComfy(tmp_path_factory.mktemp("client") / "comfyui")
    yield server
    server.stop()


@pytest.fixture()
def client(fake):
    c = ComfyClient(fake.url, history_poll=0.5)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (50, 60, 70)).save(buf, "PNG")
    assert c.upload_image("c.png", buf.getvalue()) == "c.png"
    yield c
    c.close()


def test_a_dropped_websocket_is_reconnected_and_the_job_still_completes(fake, client):
    before = fake.stats().get("websocket connections", 0)
    client.ensure_connected()

    def drop() -> None:
        time.sleep(0.3)
        assert client.ws is not None
        client.ws.sock.shutdown(socket.SHUT_RDWR)

    threading.Thread(target=drop, daemon=True).start()
    result = client.run(GRAPH, timeout=20)
    assert result.outputs["3"]["images"][0]["filename"].startswith("c_")
    assert fake.stats()["websocket connections"] == before + 2


def test_the_timeout_interrupts_the_prompt_by_id(fake, client):
    hang = {**GRAPH, "2": {"class_type": "FakeHang", "inputs": {"seconds": 0,
                                                                "images": ["1", 0]}}}
    started = time.monotonic()
    with pytest.raises(JobTimeout) as info:
        client.run(hang, timeout=0.5, interrupt_grace=5)
    assert info.value.stopped  # the interrupt reached the running prompt
    assert time.monotonic() - started < 5
    assert fake.stats()["POST /interrupt"] >= 1
    assert "not currently running" not in fake.read_log()
