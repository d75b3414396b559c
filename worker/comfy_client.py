"""A client for ComfyUI's HTTP and websocket API (see docs/worker.md for the protocol notes).

One websocket is opened once and kept: a new socket per job costs a handshake, and a second
socket with the same clientId silently takes the events away from the first. When the socket
drops, the client reconnects and reads the outcome from /history, which ComfyUI writes before
its final `executing {node: null}` message.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
import websocket

log = logging.getLogger("worker")

ProgressCallback = Callable[[str, int, int], None]


class ComfyError(Exception):
    """A job-level failure with a message meant for the caller."""


class ComfyValidationError(ComfyError):
    def __init__(self, message: str, body: Any):
        super().__init__(message)
        self.body = body


class ComfyExecutionError(ComfyError):
    pass


class ComfyInterrupted(ComfyError):
    pass


class ComfyGone(ComfyError):
    """ComfyUI's process is gone (crashed or killed)."""


class JobTimeout(ComfyError):
    def __init__(self, message: str, stopped: bool):
        super().__init__(message)
        self.stopped = stopped  # False: the prompt kept running after the interrupt


@dataclass
class PromptResult:
    prompt_id: str
    outputs: dict[str, Any]
    cached_nodes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def format_validation_error(body: Any, titles: dict[str, str] | None = None) -> str:
    """One readable message from ComfyUI's 400 answer to POST /prompt."""
    titles = titles or {}
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return f"ComfyUI rejected the workflow: {body}"
    error = body["error"]
    lines = []
    for node_id, node in (body.get("node_errors") or {}).items():
        title = f' "{titles[node_id]}"' if titles.get(node_id) else ""
        for item in node.get("errors", []):
            input_name = (item.get("extra_info") or {}).get("input_name")
            where = f", input {input_name!r}" if input_name else ""
            detail = f": {item['details']}" if item.get("details") else ""
            lines.append(f"node {node_id}{title} ({node.get('class_type')}){where}: "
                         f"{item.get('message')}{detail}")
    if not lines:
        detail = f" ({error['details']})" if error.get("details") else ""
        lines.append(f"{error.get('message')}{detail}")
    return "Workflow validation failed: " + "; ".join(lines)


def format_execution_error(data: dict[str, Any], titles: dict[str, str] | None = None) -> str:
    node_id = str(data.get("node_id"))
    title = (titles or {}).get(node_id)
    named = f' "{title}"' if title else ""
    message = str(data.get("exception_message", "")).strip()
    return (f"ComfyUI failed while running node {node_id}{named} ({data.get('node_type')}): "
            f"{data.get('exception_type')}: {message}")


class ComfyClient:
    def __init__(self, base_url: str, *, alive: Callable[[], bool] = lambda: True,
                 reconnect_timeout: float = 30.0, history_poll: float = 5.0):
        self.base_url = base_url.rstrip("/")
        self.ws_url = "ws" + self.base_url[4:] + "/ws"
        self.client_id = uuid.uuid4().hex
        self.alive = alive
        self.reconnect_timeout = reconnect_timeout
        self.history_poll = history_poll
        self.session = requests.Session()
        # Loopback only: no proxy or netrc lookups (they walk the environment on every call).
        self.session.trust_env = False
        self.ws: websocket.WebSocket | None = None

    # -- HTTP ------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        try:
            return self.session.request(method, self.base_url + path, **kwargs)
        except requests.ConnectionError as exc:
            if not self.alive():
                raise ComfyGone("ComfyUI is not running") from exc
            raise ComfyError(f"ComfyUI did not answer {method} {path}: {exc}") from exc

    def upload_image(self, name: str, data: bytes, subfolder: str = "") -> str:
        """Upload to input/<subfolder>; returns the name to give LoadImage (ComfyUI may
        store it under another name)."""
        resp = self._request("POST", "/upload/image", files={"image": (name, data)},
                             data={"type": "input", "overwrite": "true",
                                   "subfolder": subfolder})
        if resp.status_code != 200:
            raise ComfyError(f"ComfyUI refused the upload of {name!r}: HTTP {resp.status_code} "
                             f"{resp.text[:200]}")
        body = resp.json()
        return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else body["name"]

    def queue_prompt(self, prompt: dict[str, Any], *, extra_data: dict[str, Any] | None = None,
                     titles: dict[str, str] | None = None) -> str:
        payload: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id}
        if extra_data:
            payload["extra_data"] = extra_data
        resp = self._request("POST", "/prompt", json=payload)
        if resp.status_code == 400:
            try:
                body = resp.json()
            except ValueError:
                body = resp.text
            raise ComfyValidationError(format_validation_error(body, titles), body)
        if resp.status_code != 200:
            raise ComfyError(f"ComfyUI could not queue the workflow: HTTP {resp.status_code} "
                             f"{resp.text[:300].strip()}")
        body = resp.json()
        if body.get("node_errors"):
            log.warning("ComfyUI queued the prompt but reported node errors: %s",
                        json.dumps(body["node_errors"])[:2000])
        return str(body["prompt_id"])

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        resp = self._request("GET", f"/history/{prompt_id}")
        resp.raise_for_status()
        return resp.json().get(prompt_id)

    def view(self, filename: str, subfolder: str, type_: str) -> bytes:
        resp = self._request("GET", "/view", params={"filename": filename,
                                                     "subfolder": subfolder, "type": type_})
        if resp.status_code != 200:
            raise ComfyError(f"ComfyUI could not return the output {subfolder}/{filename} "
                             f"({type_}): HTTP {resp.status_code}")
        return resp.content

    def interrupt(self, prompt_id: str) -> None:
        self._request("POST", "/interrupt", json={"prompt_id": prompt_id}, timeout=10)
        self._request("POST", "/queue", json={"delete": [prompt_id]}, timeout=10)

    # -- websocket ------------------------------------------------------------------------
    def _connect(self, deadline: float) -> websocket.WebSocket:
        delay = 0.05
        while True:
            try:
                # ComfyUI sends JSON it encoded itself; validating every frame's UTF-8 in
                # pure Python costs more than the rest of the message handling.
                ws = websocket.create_connection(f"{self.ws_url}?clientId={self.client_id}",
                                                 timeout=10, enable_multithread=False,
                                                 skip_utf8_validation=True)
                return ws
            except (OSError, websocket.WebSocketException) as exc:
                if not self.alive():
                    raise ComfyGone("ComfyUI is not running") from exc
                if time.monotonic() + delay > deadline:
                    raise ComfyError(f"could not open ComfyUI's websocket: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def ensure_connected(self, timeout: float | None = None) -> None:
        if self.ws is None or not self.ws.connected:
            timeout = self.reconnect_timeout if timeout is None else timeout
            self.ws = self._connect(time.monotonic() + timeout)

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None
        self.session.close()

    def run(self, prompt: dict[str, Any], *, timeout: float,
            on_progress: ProgressCallback | None = None,
            extra_data: dict[str, Any] | None = None,
            titles: dict[str, str] | None = None, interrupt_grace: float = 15.0
            ) -> PromptResult:
        """Queue `prompt`, follow it to the end and return its outputs from /history."""
        started = time.monotonic()
        deadline = started + timeout
        self.ensure_connected()
        prompt_id = self.queue_prompt(prompt, extra_data=extra_data, titles=titles)
        outcome = self._follow(prompt_id, deadline, on_progress)
        if outcome is None:
            stopped = self._stop_prompt(prompt_id, interrupt_grace)
            raise JobTimeout(f"the job did not finish within {timeout:g} s (JOB_TIMEOUT); the "
                             f"prompt was interrupted", stopped)
        entry = outcome
        status = entry.get("status") or {}
        for kind, data in status.get("messages", []):
            if kind == "execution_error":
                raise ComfyExecutionError(format_execution_error(data, titles))
            if kind == "execution_interrupted":
                raise ComfyInterrupted(f"the prompt was interrupted at node {data.get('node_id')}"
                                       f" ({data.get('node_type')})")
        if status.get("status_str") not in (None, "success"):
            raise ComfyExecutionError(f"ComfyUI reported status {status.get('status_str')!r}")
        cached: list[str] = []
        for kind, data in status.get("messages", []):
            if kind == "execution_cached":
                cached = list(data.get("nodes", []))
        return PromptResult(prompt_id, entry.get("outputs") or {}, cached,
                            time.monotonic() - started)

    def _follow(self, prompt_id: str, deadline: float,
                on_progress: ProgressCallback | None) -> dict[str, Any] | None:
        """The prompt's history entry once it is done, or None at the deadline."""
        next_poll = time.monotonic() + self.history_poll
        while True:
            now = time.monotonic()
            if now >= deadline:
                return None
            if now >= next_poll:
                # A missed final message (a dropped socket) must not stall the job.
                next_poll = now + self.history_poll
                if (entry := self._finished_entry(prompt_id)) is not None:
                    return entry
            try:
                if self.ws is None:
                    self.ensure_connected(min(self.reconnect_timeout, deadline - now))
                    if (entry := self._finished_entry(prompt_id)) is not None:
                        return entry
                assert self.ws is not None
                self.ws.settimeout(max(0.01, min(1.0, deadline - now)))
                raw = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                if not self.alive():
                    raise ComfyGone("ComfyUI exited while running the job") from None
                continue
            except (OSError, websocket.WebSocketException) as exc:
                self.ws = None
                if not self.alive():
                    raise ComfyGone("ComfyUI exited while running the job") from exc
                log.warning("ComfyUI websocket dropped (%s); reconnecting", exc)
                continue
            if not isinstance(raw, str):
                continue  # binary preview frames
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            data = message.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            kind = message.get("type")
            if kind == "progress" and on_progress is not None:
                on_progress(str(data.get("node")), int(data.get("value", 0)),
                            int(data.get("max", 0)))
            elif kind == "executing" and data.get("node") is None:
                return self._wait_history(prompt_id)

    def _finished_entry(self, prompt_id: str) -> dict[str, Any] | None:
        entry = self.history(prompt_id)
        if entry and (entry.get("status") or {}).get("status_str") is not None:
            return entry
        return None

    def _wait_history(self, prompt_id: str) -> dict[str, Any]:
        for _ in range(100):
            if (entry := self.history(prompt_id)) is not None:
                return entry
            time.sleep(0.02)
        raise ComfyError(f"ComfyUI finished prompt {prompt_id} but has no history for it")

    def _stop_prompt(self, prompt_id: str, grace: float) -> bool:
        """Interrupt the prompt; True once ComfyUI has let go of it within `grace` s."""
        log.warning("interrupting prompt %s after the job timeout", prompt_id)
        try:
            self.interrupt(prompt_id)
            return self._follow(prompt_id, time.monotonic() + grace, None) is not None
        except ComfyError:
            return False
