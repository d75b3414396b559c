"""A client for ComfyUI's HTTP and websocket API (see docs/worker.md for the protocol notes).

One websocket is opened once and kept: a new socket per job costs a handshake. When it drops,
the client reconnects under a new clientId: ComfyUI unregisters a clientId when any socket of
that id closes, so the old socket's late close would silently take the new one's events away.
ComfyUI routes a prompt's execution messages to the clientId it was queued with, so a prompt
queued before the reconnect is followed through /history instead: right after the reconnect,
on every broadcast `status` message (sent when a prompt leaves the queue), and every
`history_poll` seconds. While the socket cannot be reopened, /history is polled alone. Any
failure after a prompt was queued interrupts it, so the next job does not wait behind it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import queue
import re
import select
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlencode, urlsplit

import requests
import websocket
from requests.utils import requote_uri
from urllib3.fields import RequestField
from urllib3.filepost import encode_multipart_formdata

from worker.log_text import excerpt

log = logging.getLogger("worker")

ProgressCallback = Callable[[str, int, int], None]

# Seconds a job spends on opening a closed websocket before its prompt is queued anyway.
JOB_START_CONNECT = 1.0
# Longest a job's thread waits on the websocket before it looks at its cancel token again.
CANCEL_CHECK = 0.25


class ComfyError(Exception):
    """A job-level failure with a message meant for the caller."""


class ComfyExecutionError(ComfyError):
    pass


class ComfyInterrupted(ComfyError):
    pass


class ComfyGone(ComfyError):
    """ComfyUI's process is gone (crashed or killed)."""


class ComfyStuck(ComfyError):
    """A prompt failed and could not be stopped (ComfyUI did not answer): restart ComfyUI."""


class JobCancelled(ComfyError):
    """The job was stopped from outside (RunPod's cancel or execution timeout)."""


class CancelToken:
    """Shared by a job's handler coroutine (which sets it when RunPod stops the job) and the
    thread that runs the job's blocking ComfyUI calls (which records the prompt it queued and
    gives up at its next check)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.prompt_id: str | None = None

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class JobTimeout(ComfyError):
    def __init__(self, message: str, stopped: bool):
        super().__init__(message)
        self.stopped = stopped  # False: the prompt kept running after the interrupt


@dataclass
class PromptResult:
    prompt_id: str
    outputs: dict[str, Any]


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
            lines.append(
                f"node {node_id}{title} ({node.get('class_type')}){where}: "
                f"{item.get('message')}{detail}"
            )
    if not lines:
        # a prompt-level refusal (unknown class, missing class_type) names its node only in
        # `details`, as "Node ID '#<id>'": put it first, with its title, like the others
        details = str(error.get("details") or "")
        named = re.fullmatch(r"Node ID '#(.+)'", details)
        if named:
            node_id = named.group(1)
            title = f' "{titles[node_id]}"' if titles.get(node_id) else ""
            lines.append(f"node {node_id}{title}: {error.get('message')}")
        else:
            lines.append(f"{error.get('message')}" + (f" ({details})" if details else ""))
    return "Workflow validation failed: " + "; ".join(lines)


# A kept connection idle longer than this is not reused: an HTTP server closes an idle one
# after its keep-alive timeout (aiohttp's is 75 s under web.run_app, an hour under the runner
# ComfyUI uses), and a request sent at that instant would fail on a healthy ComfyUI. A new
# connection on loopback costs a fraction of a millisecond.
KEEP_IDLE = 60.0


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle kept connection was closed by the other end (it reads as readable:
    the end of the stream, or bytes nobody asked for); one that never connected is not."""
    if conn.sock is None:
        return False
    poll = select.poll()
    poll.register(conn.sock, select.POLLIN)
    return bool(poll.poll(0))


def _text(body: bytes) -> str:
    """An answer's body for a message (ComfyUI writes UTF-8)."""
    return body.decode("utf-8", "replace")


def format_execution_error(data: dict[str, Any], titles: dict[str, str] | None = None) -> str:
    node_id = str(data.get("node_id"))
    title = (titles or {}).get(node_id)
    named = f' "{title}"' if title else ""
    message = str(data.get("exception_message", "")).strip()
    return (
        f"ComfyUI failed while running node {node_id}{named} ({data.get('node_type')}): "
        f"{data.get('exception_type')}: {message}"
    )


class ComfyClient:
    def __init__(
        self,
        base_url: str,
        *,
        alive: Callable[[], bool] = lambda: True,
        reconnect_timeout: float = 30.0,
        history_poll: float = 5.0,
        request_timeout: float = 60.0,
        headers: dict[str, str] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        # The API key ComfyUI demands in serverless mode (worker/comfy/api_guard.py)
        self.headers = dict(headers or {})
        self.ws_url = "ws" + self.base_url[4:] + "/ws"
        self.client_id = uuid.uuid4().hex
        self.alive = alive
        self.reconnect_timeout = reconnect_timeout
        self.history_poll = history_poll
        self.request_timeout = request_timeout
        self.session = requests.Session()
        # Loopback only: no proxy or netrc lookups (they walk the environment on every call).
        self.session.trust_env = False
        self.session.headers.update(self.headers)
        # Kept connections for the calls every job makes (see _call), one per concurrent caller
        url = urlsplit(self.base_url)
        self._host, self._port = url.hostname or "127.0.0.1", url.port
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []  # and when kept
        self._idle_lock = threading.Lock()
        self.ws: websocket.WebSocket | None = None
        # Prompts whose /history entry is still to be deleted (see forget)
        self._to_forget: queue.Queue[str] = queue.Queue()
        self._forgetting = 0
        self._forgotten = threading.Condition()
        self._forgetter: threading.Thread | None = None

    # -- HTTP ------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.request_timeout)
        try:
            return self.session.request(method, self.base_url + path, **kwargs)
        except requests.RequestException as exc:  # refused, reset, timed out, ...
            if not self._alive_after_drop(exc):
                raise ComfyGone("ComfyUI is not running") from exc
            raise ComfyError(f"ComfyUI did not answer {method} {path}: {exc}") from exc

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send one request on a kept connection; the connection and its answer, the body
        unread (`_keep` takes the connection back). The calls every job makes (upload, /prompt,
        /history, /view) go through here, not `requests`: on loopback its per-call work
        (preparing, merging settings and hooks, urllib3's pool and retry objects) costs a few
        times what http.client does. Failures are reported as `_request` reports them; no
        request is ever sent twice (like `requests`, which does not retry either)."""
        timeout = self.request_timeout if timeout is None else timeout
        with self._idle_lock:
            conn, kept = self._idle.pop() if self._idle else (None, 0.0)
        if conn is not None and (time.monotonic() - kept > KEEP_IDLE or _dropped(conn)):
            # ComfyUI closed it while idle (a restart), or may be closing it right now
            conn.close()
            conn = None
        if conn is None:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        else:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
        headers = dict(self.headers)
        if content_type is not None:
            headers["Content-Type"] = content_type
        # encoded and quoted as `requests` does, so every URL reaches ComfyUI as it did
        target = requote_uri(f"{path}?{urlencode(query)}" if query else path)
        try:
            conn.request(method, target, body, headers)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, ...
            conn.close()  # never reused: a late answer would be read as the next call's
            raise self._failure(f"did not answer {method} {path}", exc) from exc

    def _keep(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        """Take a connection back for the next call if its answer was read to the end (else
        the rest of it would be read as the next answer) and ComfyUI keeps it open."""
        if resp.isclosed() and not resp.will_close:
            with self._idle_lock:
                self._idle.append((conn, time.monotonic()))
        else:
            conn.close()

    def _failure(self, what: str, exc: Exception) -> ComfyError:
        """The error for a request that failed in transport: ComfyGone if ComfyUI exited."""
        if not self._alive_after_drop(exc):
            return ComfyGone("ComfyUI is not running")
        why = str(exc) or type(exc).__name__  # some of http.client's carry no message
        return ComfyError(f"ComfyUI {what}: {why}")

    def _call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """One request on a kept connection (see _send), its answer read whole: (status, body)."""
        conn, resp = self._send(method, path, body=body, content_type=content_type, timeout=timeout)
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._failure(f"did not answer {method} {path}", exc) from exc
        self._keep(conn, resp)
        return resp.status, data

    def _alive_after_drop(self, exc: Exception) -> bool:
        """Whether ComfyUI is still running after a request failed. A process killed while it
        answers (a node that crashes it right after POST /prompt queued the prompt) closes the
        connection a moment before it can be reaped: a dropped connection gets a second to
        show which it was, so the job reports the exit, not a transport error."""
        if isinstance(exc, requests.RequestException):
            dropped = isinstance(exc, requests.ConnectionError)
        else:  # http.client's (see _call): anything but a timeout is a connection that broke
            dropped = not isinstance(exc, TimeoutError)
        if not dropped:
            return self.alive()
        deadline = time.monotonic() + 1.0
        while self.alive():
            if time.monotonic() >= deadline:
                return True
            time.sleep(0.05)
        return False

    def get_json(self, path: str) -> Any:
        """GET a JSON answer (/object_info, /models, /models/<folder>)."""
        status, body = self._call("GET", path)
        if status != 200:
            raise ComfyError(f"ComfyUI answered GET {path} with HTTP {status}")
        return json.loads(body)

    def upload_image(self, name: str, data: bytes, subfolder: str = "") -> str:
        """Upload to input/<subfolder>; returns the name to give LoadImage (ComfyUI may
        store it under another name)."""
        # The form `requests` sent (its encoder is urllib3's): the fields, then the file
        image = RequestField(name="image", data=data, filename=name)
        image.make_multipart()
        form, content_type = encode_multipart_formdata(
            [("type", "input"), ("overwrite", "true"), ("subfolder", subfolder), image]
        )
        status, raw = self._call("POST", "/upload/image", form, content_type)
        if status != 200:
            raise ComfyError(
                f"ComfyUI refused the upload of {name!r}: HTTP {status} {_text(raw)[:200]}"
            )
        body = json.loads(raw)
        return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else body["name"]

    def queue_prompt(
        self,
        prompt: dict[str, Any],
        *,
        extra_data: dict[str, Any] | None = None,
        titles: dict[str, str] | None = None,
    ) -> str:
        payload: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id}
        if extra_data:
            payload["extra_data"] = extra_data
        try:
            # as `requests` encoded it: NaN and infinities are not JSON, and never sent
            encoded = json.dumps(payload, allow_nan=False).encode()
        except ValueError as exc:
            raise ComfyError(f"the workflow cannot be sent to ComfyUI as JSON: {exc}") from None
        status, raw = self._call("POST", "/prompt", encoded, "application/json")
        if status == 400:
            try:
                body = json.loads(raw)
            except ValueError:
                body = _text(raw)
            raise ComfyError(format_validation_error(body, titles))
        if status != 200:
            raise ComfyError(
                f"ComfyUI could not queue the workflow: HTTP {status} {_text(raw)[:300].strip()}"
            )
        body = json.loads(raw)
        if body.get("node_errors"):
            log.warning(
                "ComfyUI queued the prompt but reported node errors: %s",
                json.dumps(body["node_errors"])[:2000],
            )
        return str(body["prompt_id"])

    def history(self, prompt_id: str, timeout: float | None = None) -> dict[str, Any] | None:
        path = f"/history/{prompt_id}"
        status, raw = self._call("GET", path, timeout=timeout or self.request_timeout)
        if status != 200:
            raise ComfyError(f"ComfyUI answered GET {path} with HTTP {status}")
        try:
            return json.loads(raw).get(prompt_id)
        except (ValueError, AttributeError) as exc:
            raise ComfyError(
                f"ComfyUI answered GET {path} with something other than a "
                f"history: {_text(raw)[:200]!r}"
            ) from exc

    def view(self, filename: str, subfolder: str, type_: str) -> bytes:
        resp = self._request(
            "GET", "/view", params={"filename": filename, "subfolder": subfolder, "type": type_}
        )
        if resp.status_code != 200:
            raise ComfyError(
                f"ComfyUI could not return the output {excerpt(f'{subfolder}/{filename}')} "
                f"({type_}): HTTP {resp.status_code}"
            )
        return resp.content

    def view_into(
        self, filename: str, subfolder: str, type_: str, dest: BinaryIO, limit: int | None = None
    ) -> int:
        """Stream an output file into `dest`; returns its size. With `limit`, reading stops
        once more than `limit` bytes came (the size returned is then over it): an output of
        gigabytes is never held whole in the worker's memory to learn it is too large."""
        conn, resp = self._send(
            "GET", "/view", query={"filename": filename, "subfolder": subfolder, "type": type_}
        )
        try:
            if resp.status != 200:
                raise ComfyError(
                    f"ComfyUI could not return the output {excerpt(f'{subfolder}/{filename}')} "
                    f"({type_}): HTTP {resp.status}"
                )
            size = 0
            while True:
                try:
                    chunk = resp.read(1 << 20)
                except (OSError, http.client.HTTPException) as exc:
                    what = f"broke off sending {excerpt(f'{subfolder}/{filename}')}"
                    raise self._failure(what, exc) from exc
                if not chunk:
                    if resp.length:  # http.client reads a short body as its end: it is not
                        what = f"broke off sending {excerpt(f'{subfolder}/{filename}')}"
                        short = http.client.IncompleteRead(b"", resp.length)
                        raise self._failure(what, short)
                    break
                dest.write(chunk)
                size += len(chunk)
                if limit is not None and size > limit:
                    break
        finally:
            self._keep(conn, resp)  # closed unless the file was read to its end
        return size

    def forget(self, prompt_id: str) -> None:
        """Have the prompt's /history entry deleted, on a thread of its own: the job's result
        does not wait for it, and the next prompt is not queued before it is done (see
        wait_forgotten). A failure is logged and never fails a job."""
        with self._forgotten:
            self._forgetting += 1
        self._to_forget.put(prompt_id)
        if self._forgetter is None:
            self._forgetter = threading.Thread(
                target=self._forget_loop, name="comfyui-forget-history", daemon=True
            )
            self._forgetter.start()

    def wait_forgotten(self, timeout: float = 10.0) -> bool:
        """Until every prompt handed to forget() is deleted from /history (or `timeout`)."""
        with self._forgotten:
            return self._forgotten.wait_for(lambda: self._forgetting == 0, timeout)

    def _forget_loop(self) -> None:
        # On the kept connections every job's calls use (_call): a fraction of the CPU that
        # requests spends per call, which counts when jobs come back to back on a few cores.
        while True:
            prompt_id = self._to_forget.get()
            try:
                if not self.alive():  # a ComfyUI that is gone has no history left to delete
                    continue
                body = json.dumps({"delete": [prompt_id]}).encode()
                status, _ = self._call("POST", "/history", body, "application/json", timeout=10)
                if status != 200:
                    raise ComfyError(f"HTTP {status}")
            except ComfyError as exc:
                log.warning("could not delete prompt %s from ComfyUI's history: %s", prompt_id, exc)
            finally:
                with self._forgotten:
                    self._forgetting -= 1
                    self._forgotten.notify_all()

    def interrupt(self, prompt_id: str) -> None:
        # Delete first: ComfyUI takes a pending prompt off the queue and starts the next under
        # one lock, so a prompt is either deleted while pending or running by the interrupt.
        # The other order misses a prompt that starts between the two calls.
        self._request("POST", "/queue", json={"delete": [prompt_id]}, timeout=10)
        self._request("POST", "/interrupt", json={"prompt_id": prompt_id}, timeout=10)

    def interrupt_now(self, prompt_id: str) -> None:
        """`interrupt` from another thread than the job's: on a connection of its own (the
        job's thread may be using the shared session at that moment). Errors are logged: the
        job's thread stops the prompt again, and restarts ComfyUI if it will not stop."""
        with requests.Session() as session:
            session.trust_env = False
            session.headers.update(self.headers)
            try:
                for path, body in (
                    ("/queue", {"delete": [prompt_id]}),
                    ("/interrupt", {"prompt_id": prompt_id}),
                ):
                    session.post(self.base_url + path, json=body, timeout=5)
            except requests.RequestException as exc:
                log.warning("could not interrupt prompt %s at once: %s", prompt_id, exc)

    # -- websocket ------------------------------------------------------------------------
    def _connect(self, deadline: float) -> websocket.WebSocket:
        delay = 0.05
        while True:
            # A new clientId per socket: ComfyUI drops the registration of an id when any
            # socket of that id closes, including an old one closing after its replacement.
            client_id = uuid.uuid4().hex
            try:
                # ComfyUI sends JSON it encoded itself; validating every frame's UTF-8 in
                # pure Python costs more than the rest of the message handling.
                ws = websocket.create_connection(
                    f"{self.ws_url}?clientId={client_id}",
                    timeout=max(0.1, min(10.0, deadline - time.monotonic())),
                    enable_multithread=False,
                    skip_utf8_validation=True,
                    header=[f"{k}: {v}" for k, v in self.headers.items()],
                )
                self.client_id = client_id
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
            self._drop_socket()
            timeout = self.reconnect_timeout if timeout is None else timeout
            self.ws = self._connect(time.monotonic() + timeout)

    def _drop_socket(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.close(timeout=0.1)
            self.ws = None

    def close(self) -> None:
        self._drop_socket()
        self.session.close()
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def run(
        self,
        prompt: dict[str, Any],
        *,
        timeout: float,
        on_progress: ProgressCallback | None = None,
        extra_data: dict[str, Any] | None = None,
        titles: dict[str, str] | None = None,
        interrupt_grace: float = 15.0,
        cancel: CancelToken | None = None,
    ) -> PromptResult:
        """Queue `prompt`, follow it to the end and return its outputs from /history.

        With `cancel`, the prompt is recorded in it once queued, and a cancelled token stops
        the prompt (JobCancelled once ComfyUI has let go of it, ComfyStuck if it did not)."""
        deadline = time.monotonic() + timeout
        try:
            # Briefly: a socket that will not open must not hold the prompt back. Following
            # the prompt, _follow keeps trying to reopen it (reading /history meanwhile).
            self.ensure_connected(min(JOB_START_CONNECT, timeout))
        except ComfyGone:
            raise
        except ComfyError as exc:  # HTTP may still work: follow the prompt through /history
            log.warning("%s; following the job through /history", exc)
        # An earlier job's prompt leaves /history before this one can run (it is gone well
        # before: deleting takes a loopback call; this only waits for a stalled deletion).
        self.wait_forgotten(min(10.0, max(0.0, deadline - time.monotonic())))
        if cancel is not None and cancel.cancelled:
            raise JobCancelled("the job was cancelled before its prompt was queued")
        prompt_id = self.queue_prompt(prompt, extra_data=extra_data, titles=titles)
        if cancel is not None:
            # Recorded before the check in _follow: a cancel that comes after this line sees
            # the id and interrupts it; one that came before is seen by _follow.
            cancel.prompt_id = prompt_id
        try:
            return self._outcome(
                prompt_id, timeout, deadline, on_progress, titles, interrupt_grace, cancel
            )
        finally:
            # The next job must not read this one's prompt (its inputs, its file names)
            # from /history.
            self.forget(prompt_id)

    def _outcome(
        self,
        prompt_id: str,
        timeout: float,
        deadline: float,
        on_progress: ProgressCallback | None,
        titles: dict[str, str] | None,
        interrupt_grace: float,
        cancel: CancelToken | None = None,
    ) -> PromptResult:
        """Follow a queued prompt to its end; its outputs, or the error that ended it."""
        queued_as = self.client_id
        try:
            entry = self._follow(prompt_id, queued_as, deadline, on_progress, cancel)
        except ComfyGone:
            raise
        except Exception as exc:
            # Whatever went wrong, the prompt must not keep ComfyUI busy for the next job.
            if self._stop_prompt(prompt_id, queued_as, interrupt_grace):
                raise
            raise ComfyStuck(f"{exc}; the prompt could not be stopped") from exc
        if entry is None:
            stopped = self._stop_prompt(prompt_id, queued_as, interrupt_grace)
            raise JobTimeout(
                f"the job did not finish within {timeout:g} s (JOB_TIMEOUT); the "
                f"prompt was interrupted",
                stopped,
            )
        status = entry.get("status") or {}
        for kind, data in status.get("messages", []):
            if kind == "execution_error":
                raise ComfyExecutionError(format_execution_error(data, titles))
            if kind == "execution_interrupted":
                raise ComfyInterrupted(
                    f"the prompt was interrupted at node {data.get('node_id')}"
                    f" ({data.get('node_type')})"
                )
        if status.get("status_str") not in (None, "success"):
            raise ComfyExecutionError(f"ComfyUI reported status {status.get('status_str')!r}")
        return PromptResult(prompt_id, entry.get("outputs") or {})

    def _follow(
        self,
        prompt_id: str,
        queued_as: str,
        deadline: float,
        on_progress: ProgressCallback | None,
        cancel: CancelToken | None = None,
    ) -> dict[str, Any] | None:
        """The prompt's history entry once it is done, or None at the deadline.

        `queued_as` is the clientId the prompt was queued with: only a socket of that id
        receives its execution messages. A cancelled `cancel` raises JobCancelled within
        CANCEL_CHECK seconds.
        """
        next_poll = time.monotonic() + self.history_poll
        check = False  # look at /history now
        wait = CANCEL_CHECK if cancel is not None else 1.0
        while True:
            if cancel is not None and cancel.cancelled:
                raise JobCancelled(f"the job was cancelled while prompt {prompt_id} ran")
            now = time.monotonic()
            if now >= deadline:
                return None
            if check or now >= next_poll:
                # A missed final message (a dropped socket) must not stall the job.
                check, next_poll = False, now + self.history_poll
                if (entry := self._finished_entry(prompt_id, deadline)) is not None:
                    return entry
                continue
            if self.ws is None:
                try:
                    self.ensure_connected(min(next_poll, deadline) - now)
                except ComfyGone:
                    raise
                except ComfyError as exc:  # keep following through /history
                    log.warning(
                        "ComfyUI's websocket cannot be reopened (%s); polling /history", exc
                    )
                    continue
                check = True  # the final message may have been sent while it was closed
                continue
            try:
                self.ws.settimeout(max(0.01, min(wait, deadline - now, next_poll - now)))
                raw = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                if not self.alive():
                    raise ComfyGone("ComfyUI exited while running the job") from None
                continue
            except (OSError, websocket.WebSocketException) as exc:
                self._drop_socket()
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
            kind = message.get("type")
            data = message.get("data") or {}
            if kind == "status" and self.client_id != queued_as:
                # Broadcast to every socket when the queue changes (a prompt finished);
                # this prompt's own messages go to a socket that is gone.
                check = True
                continue
            if data.get("prompt_id") != prompt_id:
                continue
            if kind == "progress" and on_progress is not None:
                on_progress(
                    str(data.get("node")), int(data.get("value", 0)), int(data.get("max", 0))
                )
            elif kind == "executing" and data.get("node") is None:
                # ComfyUI writes the history entry before this message.
                entry = self.history(prompt_id, self._call_timeout(deadline))
                if entry is None:
                    raise ComfyError(
                        f"ComfyUI finished prompt {prompt_id} but has no history for it"
                    )
                return entry

    def _call_timeout(self, deadline: float) -> float:
        """No single call outlives the deadline it serves (by much)."""
        return max(0.5, min(self.request_timeout, deadline - time.monotonic()))

    def _finished_entry(self, prompt_id: str, deadline: float) -> dict[str, Any] | None:
        entry = self.history(prompt_id, self._call_timeout(deadline))
        if entry and (entry.get("status") or {}).get("status_str") is not None:
            return entry
        return None

    def _queued(self, prompt_id: str, deadline: float) -> bool:
        """Whether the prompt is running or waiting in ComfyUI's queue."""
        resp = self._request("GET", "/queue", timeout=self._call_timeout(deadline))
        if resp.status_code != 200:
            raise ComfyError(f"ComfyUI answered GET /queue with HTTP {resp.status_code}")
        try:
            body = resp.json()
            items = [*body["queue_running"], *body["queue_pending"]]
            return any(item[1] == prompt_id for item in items)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ComfyError(
                f"ComfyUI answered GET /queue with something other than a "
                f"queue: {resp.text[:200]!r}"
            ) from exc

    def _stop_prompt(self, prompt_id: str, queued_as: str, grace: float) -> bool:
        """Interrupt the prompt; True once ComfyUI has let go of it within `grace` s."""
        log.warning("stopping prompt %s", prompt_id)
        try:
            self.interrupt(prompt_id)
            deadline = time.monotonic() + grace
            if self._finished_entry(prompt_id, deadline) is not None:
                return True
            if not self._queued(prompt_id, deadline):
                # Deleted from the queue before it started: it never runs, and never gets
                # a history entry to wait for.
                return True
            return self._follow(prompt_id, queued_as, deadline, None) is not None
        except Exception:
            log.exception("prompt %s could not be stopped", prompt_id)
            return False
