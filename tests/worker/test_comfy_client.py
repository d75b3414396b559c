"""The ComfyUI client on its own against the fake: a dropped websocket, a websocket that
cannot be reopened and HTTP that stops answering neither lose the job nor leave the prompt
running."""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from typing import Any

import pytest
import requests
from PIL import Image
from support.fake_comfyui import FakeComfy

from worker.comfy.client import (
    ComfyClient,
    ComfyError,
    ComfyStuck,
    JobTimeout,
    format_validation_error,
)

LOAD = {"class_type": "LoadImage", "inputs": {"image": "c.png"}}
# FakeHang with seconds 0 runs until POST /fake/release (or an interrupt)
HOLD = {
    "1": LOAD,
    "2": {"class_type": "FakeHang", "inputs": {"seconds": 0, "images": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "c"}},
}
QUICK = {
    "1": LOAD,
    "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "q"}},
}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    server = FakeComfy(tmp_path_factory.mktemp("client") / "comfyui")
    yield server
    server.stop()


@pytest.fixture()
def clients(fake):
    made: list[ComfyClient] = []

    def make(**kwargs: Any) -> ComfyClient:
        c = ComfyClient(fake.url, **kwargs)
        made.append(c)
        return c

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (50, 60, 70)).save(buf, "PNG")
    assert make().upload_image("c.png", buf.getvalue()) == "c.png"
    yield make
    for c in made:
        c.close()


@pytest.fixture()
def hooks(fake):
    """The fake's test hooks; every route blocked by a test is unblocked after it."""
    blocked: list[str] = []

    class Hooks:
        def block(self, route: str, status: int | None = None) -> None:
            post(fake, "/fake/block", {"route": route, "status": status})
            blocked.append(route)

        def unblock(self, route: str) -> None:
            blocked.remove(route)
            post(fake, "/fake/unblock", {"route": route})

        def release(self) -> None:
            post(fake, "/fake/release", {})

    yield Hooks()
    for route in blocked:
        post(fake, "/fake/unblock", {"route": route})


def post(fake: FakeComfy, path: str, body: dict) -> None:
    requests.post(fake.url + path, json=body, timeout=5).raise_for_status()


def wait_for(predicate, what: str, timeout: float = 30):
    """Until `predicate` is true; the timeout only guards against a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def running_prompt(fake: FakeComfy) -> str | None:
    running = requests.get(fake.url + "/queue", timeout=5).json()["queue_running"]
    return running[0][1] if running else None


def finished(fake: FakeComfy, prompt_id: str) -> bool:
    entry = requests.get(f"{fake.url}/history/{prompt_id}", timeout=5).json().get(prompt_id)
    return bool(entry and entry["status"]["status_str"])


class InBackground:
    """client.run on a thread, so the test can act on the fake while the job is followed."""

    def __init__(self, fn, *args, **kwargs) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the test by join()
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self) -> Any:
        self.thread.join(60)  # a hang guard only
        assert not self.thread.is_alive(), "the job never ended"
        if self.error is not None:
            raise self.error
        return self.result


def drop(client: ComfyClient) -> None:
    assert client.ws is not None
    client.ws.sock.shutdown(socket.SHUT_RDWR)


def test_the_outcome_missed_while_disconnected_is_read_from_history_after_the_reconnect(
    fake, clients, hooks
):
    client = clients(history_poll=3600)  # no periodic poll can be what finds the outcome
    client.ensure_connected()
    reads: list[str] = []
    history = client.history
    client.history = lambda prompt_id, timeout=None: (
        reads.append(prompt_id),
        history(prompt_id, timeout),
    )[1]
    before = fake.stats()
    job = InBackground(client.run, HOLD, timeout=60)
    prompt_id = wait_for(lambda: running_prompt(fake), "the prompt to run")
    hooks.block("GET /ws", status=503)
    drop(client)
    hooks.release()
    wait_for(lambda: finished(fake, prompt_id), "the prompt to finish")  # its end is missed
    wait_for(lambda: fake.stats()["GET /ws"] > before["GET /ws"], "a refused reconnect")
    hooks.unblock("GET /ws")
    result = job.join()
    assert result.prompt_id == prompt_id
    assert result.outputs["3"]["images"][0]["filename"].startswith("c_")
    after = fake.stats()
    assert after["websocket connections"] == before["websocket connections"] + 1
    assert reads == [prompt_id]  # the one history check made once the socket was back


def test_a_new_socket_gets_a_new_client_id(fake, clients):
    client = clients()
    client.ensure_connected()
    first = client.client_id
    drop(client)
    client.ws = None
    client.ensure_connected()
    assert client.client_id != first
    assert client.run(QUICK, timeout=20).outputs["3"]["images"]


def test_when_the_socket_cannot_be_reopened_the_job_completes_through_history(fake, clients, hooks):
    client = clients(history_poll=0.1, reconnect_timeout=0.5)
    client.ensure_connected()
    job = InBackground(client.run, HOLD, timeout=60)
    prompt_id = wait_for(lambda: running_prompt(fake), "the prompt to run")
    hooks.block("GET /ws", status=503)  # for the rest of the test
    drop(client)
    hooks.release()
    result = job.join()
    assert result.prompt_id == prompt_id
    assert result.outputs["3"]["images"][0]["filename"].startswith("c_")
    assert client.ws is None


def test_a_socket_that_cannot_be_opened_for_the_job_does_not_stop_it(fake, clients, hooks):
    client = clients(history_poll=0.1, reconnect_timeout=0.3)
    hooks.block("GET /ws", status=503)
    result = client.run(QUICK, timeout=20)
    assert result.outputs["3"]["images"][0]["filename"].startswith("q_")
    assert client.ws is None


def test_a_socket_that_will_not_open_does_not_hold_the_prompt_back(fake, clients, hooks):
    # The reconnect window and the job's timeout are an hour: only a brief first attempt lets
    # the prompt be queued while the websocket is still refused.
    client = clients(history_poll=0.1, reconnect_timeout=3600)
    hooks.block("GET /ws", status=503)
    before = fake.stats()
    job = InBackground(client.run, HOLD, timeout=3600)
    prompt_id = wait_for(lambda: running_prompt(fake), "the prompt to be queued and run")
    refused = fake.stats()["GET /ws"]
    assert refused > before.get("GET /ws", 0)  # it was queued with the socket still refused
    # following the prompt, the client keeps trying, and gets the socket once it opens
    wait_for(lambda: fake.stats()["GET /ws"] > refused, "a retry while the prompt runs")
    hooks.unblock("GET /ws")
    wait_for(
        lambda: fake.stats()["websocket connections"] > before["websocket connections"],
        "the socket to be reopened during the job",
    )
    hooks.release()
    assert job.join().prompt_id == prompt_id


def test_a_hung_prompt_with_the_socket_gone_is_interrupted_at_the_timeout(fake, clients, hooks):
    client = clients(history_poll=0.1, reconnect_timeout=0.5)
    client.ensure_connected()
    interrupts = fake.stats().get("POST /interrupt", 0)
    last_entry = {}  # the history entry as it was just before the client deleted it
    forget = client.forget

    def read_then_forget(prompt_id: str) -> None:
        last_entry.update(requests.get(f"{fake.url}/history/{prompt_id}", timeout=5).json())
        forget(prompt_id)

    client.forget = read_then_forget
    job = InBackground(client.run, HOLD, timeout=3, interrupt_grace=10)
    prompt_id = wait_for(lambda: running_prompt(fake), "the prompt to run")
    hooks.block("GET /ws", status=503)
    drop(client)
    with pytest.raises(JobTimeout) as info:
        job.join()
    assert info.value.stopped
    assert fake.stats()["POST /interrupt"] == interrupts + 1
    assert running_prompt(fake) is None
    assert last_entry[prompt_id]["status"]["messages"][-1][0] == "execution_interrupted"
    assert client.wait_forgotten()
    assert not requests.get(f"{fake.url}/history/{prompt_id}", timeout=5).json()


def test_http_that_stops_answering_is_a_comfy_error_that_asks_for_a_restart(fake, clients, hooks):
    client = clients(request_timeout=0.5)
    hooks.block("GET /history/{id}")  # hangs: the prompt runs, its outcome cannot be read
    with pytest.raises(ComfyStuck, match=r"did not answer GET /history/.*could not be stopped"):
        client.run(QUICK, timeout=10, interrupt_grace=0.5)
    hooks.block("GET /view")
    with pytest.raises(ComfyError, match="did not answer GET /view"):
        client.view("x.png", "", "output")  # any call, not only the history


def test_the_timeout_interrupts_the_prompt_by_id(fake, clients):
    client = clients()
    interrupts, logged = fake.stats().get("POST /interrupt", 0), len(fake.read_log())
    with pytest.raises(JobTimeout) as info:
        client.run(HOLD, timeout=0.5, interrupt_grace=5)
    assert info.value.stopped  # the interrupt reached the running prompt
    assert fake.stats()["POST /interrupt"] == interrupts + 1
    assert "not currently running" not in fake.read_log()[logged:]


def pending_prompts(fake: FakeComfy) -> list[str]:
    return [
        item[1] for item in requests.get(fake.url + "/queue", timeout=5).json()["queue_pending"]
    ]


def test_a_prompt_that_times_out_while_pending_counts_as_stopped_once_removed(fake, clients, hooks):
    # Removed from the queue before it ran, it never gets a history entry: that must not be
    # taken for a prompt that would not stop (which restarts ComfyUI).
    hung = InBackground(clients().run, HOLD, timeout=60)
    running = wait_for(lambda: running_prompt(fake), "the first prompt to run")
    try:
        with pytest.raises(JobTimeout) as info:
            clients().run(QUICK, timeout=0.5, interrupt_grace=5)
        assert info.value.stopped
        assert pending_prompts(fake) == []  # removed from the queue
        assert running_prompt(fake) == running  # the other job's prompt was left alone
    finally:
        hooks.release()
    assert hung.join().prompt_id == running


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        # ComfyUI's answer to an unknown class: the node is named only in `details`
        (
            {
                "type": "invalid_prompt",
                "details": "Node ID '#7'",
                "extra_info": {},
                "message": "Cannot execute because node NoSuchNode does not exist.",
            },
            'node 7 "Upscale": Cannot execute because node NoSuchNode does not exist.',
        ),
        (
            {
                "type": "prompt_no_outputs",
                "details": "",
                "extra_info": {},
                "message": "Prompt has no outputs",
            },
            "Prompt has no outputs",
        ),
    ],
)
def test_a_prompt_level_refusal_names_its_node(error, expected):
    body = {"error": error, "node_errors": {}}
    assert format_validation_error(body, {"7": "Upscale"}) == "Workflow validation failed: " + (
        expected
    )


def test_an_output_read_only_up_to_its_limit_is_not_the_next_calls_answer(clients):
    # The client keeps its connections to ComfyUI between calls; a /view cut short at its limit
    # leaves the rest of the file on that connection, which must never be read as an answer.
    client = clients()
    noise = Image.frombytes("RGB", (1024, 1024), os.urandom(1024 * 1024 * 3))  # > one 1 MiB read
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    client.upload_image("noise.png", buf.getvalue())
    cut = io.BytesIO()
    assert client.view_into("noise.png", "", "input", cut, limit=100) > 100
    whole = io.BytesIO()
    assert client.view_into("noise.png", "", "input", whole) == len(buf.getvalue())
    assert whole.getvalue() == buf.getvalue()
    assert client.history("no-such-prompt") is None


def test_an_output_cut_short_by_comfyui_is_an_error_not_a_smaller_file():
    # ComfyUI killed while it sends a file: the answer announces its length and ends early.
    # A truncated image or video must never be returned or uploaded as the job's result.
    announced, sent = 3_000_000, 1_500_000
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_once() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
                + f"Content-Length: {announced}\r\n\r\n".encode()
                + b"\x89" * sent
            )

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    client = ComfyClient(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(ComfyError, match=r"broke off sending 'job-1/out_00001_\.png'"):
            client.view_into("out_00001_.png", "job-1", "output", io.BytesIO())
    finally:
        client.close()
        server.close()
        thread.join(5)
