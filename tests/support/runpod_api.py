"""A stand-in for RunPod's job API on loopback: what the worker talks to in production.

Started with `--rp_serve_api` the RunPod SDK serves a local API of its own; in production it
serves nothing and instead polls RunPod (runpod 1.12, `runpod/serverless/`):

- GET /v2/EP/job-take/WORKER?gpu=..&job_in_progress=0|1 (rp_job.get_job): a long-poll,
  answered 200 with one job {"id", "input"}, or 204 when none is queued;
- GET /v2/EP/job-stop/WORKER?gpu=.. (rp_job.get_stop_signals, the job-take URL with job-stop):
  a long-poll, answered 200 {"jobsToStop": [ids]} or 204; the SDK cancels a named job's task;
- POST /v2/EP/job-done/WORKER/JOB?gpu=..&isStream=false (rp_http.send_result): the result, as
  a JSON text sent as form data, tried 3 times on a 5xx; also every progress update
  (rp_progress: `{"status": "IN_PROGRESS", "output": ...}`, each from a thread of its own);
- POST /v2/EP/job-stream/WORKER/JOB (rp_http.stream_result): generator handlers only;
- GET /v2/EP/ping/WORKER?gpu=..&job_id=a,b&runpod_version=.. (rp_ping.Heartbeat): from a
  process of its own, every RUNPOD_PING_INTERVAL ms; job_id lists the jobs in progress.

    with RunPodAPI() as api:
        worker = WorkerProcess(tmp, runpod_api=api).start()   # env: api.env()
        job = api.queue({"workflow": ...})
        body = api.result(job)            # {"output": {...}} or {"error": "..."}, as posted

Every request is recorded as a `Call` (arrival and answer times, query, Authorization, body)
once answered, whenever it arrives: also after the worker was sent SIGTERM, so a test can see
what it still posts. `arrived(route)` counts requests as they come, long-polls still held
included. A long-poll the worker hangs up on is recorded with status CLIENT_GONE and hands
out nothing.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

ENDPOINT_ID = "test-endpoint"
# A long-poll the worker hung up on before it was answered (nginx's "client closed request")
CLIENT_GONE = 499
GPU = "TEST_GPU"  # RunPod's URLs carry ?gpu=<type>: the SDK appends its parameters with "&"


@dataclass(frozen=True)
class Call:
    """One request the worker made. `body`: the JSON it posted (job-done, job-stream) or what
    the stand-in answered (job-take: the job; job-stop: {"jobsToStop": [...]}); None for 204."""

    route: str  # job-take, job-stop, job-done, job-stream, ping
    at: float  # time.monotonic() when it arrived
    answered: float  # and when it was answered: later for a held long-poll
    status: int  # what the stand-in answered; CLIENT_GONE: the worker hung up on its poll
    query: dict[str, str]
    auth: str | None  # the Authorization header
    job_id: str | None = None  # the job in the path (done, stream) or handed out (take)
    body: Any = None

    @property
    def progress(self) -> bool:
        """A progress update: the SDK posts those to job-done too, with this status."""
        return isinstance(self.body, dict) and self.body.get("status") == "IN_PROGRESS"


@dataclass
class _State:
    jobs: list[dict[str, Any]] = field(default_factory=list)  # queued, not yet taken
    stops: list[str] = field(default_factory=list)  # for the next job-stop poll
    calls: list[Call] = field(default_factory=list)  # once answered
    arrived: Counter[str] = field(default_factory=Counter)  # route -> requests, held included
    fail_done: int = 0
    closed: bool = False


class RunPodAPI:
    """RunPod's job API for one worker, on 127.0.0.1 and a free port, in daemon threads.

    `take_hold` and `stop_hold`: how long job-take and job-stop hold a request open when there
    is nothing to hand out before answering 204 (RunPod long-polls both; short here so that the
    worker's loops, which only look at their shutdown flag between polls, stop quickly).
    `ping_interval_ms` becomes RUNPOD_PING_INTERVAL: the SDK divides it by 1000 as an integer,
    so under 1000 it pings in a busy loop.
    """

    def __init__(
        self,
        *,
        take_hold: float = 1.0,
        stop_hold: float = 1.0,
        ping_interval_ms: int = 1000,
        worker_id: str = "test-worker",
    ) -> None:
        self.take_hold = take_hold
        self.stop_hold = stop_hold
        self.ping_interval_ms = ping_interval_ms
        self.worker_id = worker_id
        self.api_key = f"rp-test-{uuid.uuid4().hex}"
        self._state = _State()
        # One lock for all state; every change notifies, so waits need no sleeps and held
        # long-polls wake the moment a job or a stop is queued.
        self._changed = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> RunPodAPI:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="runpod-api", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        with self._changed:
            self._state.closed = True  # held polls answer 204 now
            self._changed.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> RunPodAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v2/{ENDPOINT_ID}"

    def env(self) -> dict[str, str]:
        """The variables RunPod sets on a serverless worker, pointing the SDK here."""
        base = self.url
        return {
            # the SDK replaces $ID in job-take, and $RUNPOD_POD_ID then $ID (the job) in the
            # others, with RUNPOD_POD_ID; the stop channel is job-take's URL with job-stop
            "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$ID?gpu={GPU}",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID/$ID?gpu={GPU}",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{base}/job-stream/$RUNPOD_POD_ID/$ID?gpu={GPU}",
            "RUNPOD_WEBHOOK_PING": f"{base}/ping/$RUNPOD_POD_ID?gpu={GPU}",
            "RUNPOD_POD_ID": self.worker_id,
            "RUNPOD_AI_API_KEY": self.api_key,  # sent as Authorization, and pings need it set
            "RUNPOD_ENDPOINT_ID": ENDPOINT_ID,  # also switches the SDK's log to JSON lines
            "RUNPOD_PING_INTERVAL": str(self.ping_interval_ms),
            # The SDK's fitness checks, before the first job-take: the system checks connect
            # to 8.8.8.8:53 (no internet here), want 4 GB free memory and 10% free disk; the
            # GPU check runs nvidia-smi and a CUDA test binary. A failure os._exit(1)s.
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
            "RUNPOD_SKIP_GPU_CHECK": "true",
        }

    # -- what a test does ------------------------------------------------------------------

    def queue(self, job_input: Any, job_id: str | None = None) -> str:
        """Queue a job as RunPod's /run would; returns its id."""
        job_id = job_id or f"job-{uuid.uuid4().hex[:16]}"
        with self._changed:
            self._state.jobs.append({"id": job_id, "input": job_input})
            self._changed.notify_all()
        return job_id

    def stop(self, job_id: str) -> None:
        """Name `job_id` on the stop channel (a /cancel, or the execution timeout): a held
        job-stop poll answers at once, else the next one does; it is handed out once."""
        with self._changed:
            self._state.stops.append(job_id)
            self._changed.notify_all()

    def fail_next_done(self, n: int) -> None:
        """Answer HTTP 500 to the next `n` result posts (progress updates are not counted):
        the SDK tries a post 3 times, 2 s and then 3 s apart."""
        with self._changed:
            self._state.fail_done = n

    def calls(self, route: str | None = None, job_id: str | None = None) -> list[Call]:
        with self._changed:
            return [
                c
                for c in self._state.calls
                if (route is None or c.route == route) and (job_id is None or c.job_id == job_id)
            ]

    def taken(self, job_id: str) -> int:
        """How many times job-take handed out `job_id` (RunPod hands a job out once)."""
        return len(self.calls("job-take", job_id))

    def done_attempts(self, job_id: str) -> list[Call]:
        """Every result post for `job_id`, failed attempts included (not progress updates)."""
        return [c for c in self.calls("job-done", job_id) if not c.progress]

    def results(self, job_id: str) -> list[dict[str, Any]]:
        """The result bodies for `job_id` the stand-in accepted (answered 200)."""
        return [c.body for c in self.done_attempts(job_id) if c.status == 200]

    def progress(self, job_id: str) -> list[Any]:
        """The `output` of each progress update for `job_id`, in order of arrival (each is
        posted from a thread of its own, so that is not always the order they were sent in)."""
        return [c.body["output"] for c in self.calls("job-done", job_id) if c.progress]

    def streams(self, job_id: str) -> list[Any]:
        return [c.body for c in self.calls("job-stream", job_id)]

    @property
    def pings(self) -> int:
        return len(self.calls("ping"))

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Until `condition()` holds, re-checked on every request; AssertionError naming
        `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                # wait() releases the lock that calls() takes inside condition(): RLock
                self._changed.wait(left)

    def result(self, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The result body the SDK posted for `job_id` (the first one accepted)."""
        self.wait(lambda: bool(self.results(job_id)), timeout, f"the result of {job_id}")
        return self.results(job_id)[0]

    def arrived(self, route: str) -> int:
        """How many `route` requests arrived, answered or still held open."""
        with self._changed:
            return self._state.arrived[route]

    # -- the server side -------------------------------------------------------------------

    def _record(self, call: Call) -> None:
        with self._changed:
            self._state.calls.append(call)
            self._changed.notify_all()

    def _arrived(self, route: str) -> None:
        with self._changed:
            self._state.arrived[route] += 1
            self._changed.notify_all()

    def _hold(
        self, pending: list[Any], hold: float, gone: Callable[[], bool], most: int | None = None
    ) -> list[Any] | None:
        """A long-poll: up to `hold` seconds until `pending` (the queued jobs or stops) holds
        something, then takes `most` of it (all: None). None when the worker closed the
        connection first: what it abandoned stays for its next poll instead of vanishing into
        a socket no one reads (what RunPod itself does then is not documented)."""
        deadline = time.monotonic() + hold
        with self._changed:
            while not pending and not self._state.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if gone():
                    return None
                self._changed.wait(min(left, 0.1))  # the connection is looked at between
            if gone():
                return None
            taken = pending[:most]
            del pending[: len(taken)]
            return taken

    def _fail_this_done(self) -> bool:
        with self._changed:
            if self._state.fail_done > 0:
                self._state.fail_done -= 1
                return True
            return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a held long-poll never keeps the test process alive
    api: RunPodAPI


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test's output is the worker's log, not ours

    def _serve(self, method: str) -> None:
        api = self.server.api
        at = time.monotonic()
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        auth = self.headers.get("Authorization")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        route, job_id = self._route(parts.path, method)
        if route is None:
            # also where an unsubstituted $ID or $RUNPOD_POD_ID would end up
            self._answer(404, {"error": f"no route {method} {parts.path}"})
            return

        def record(status: int, body: Any = None, job: str | None = job_id) -> None:
            api._record(Call(route, at, time.monotonic(), status, query, auth, job, body))

        api._arrived(route)
        if route in ("job-take", "job-stop"):
            take = route == "job-take"
            got = api._hold(
                api._state.jobs if take else api._state.stops,
                api.take_hold if take else api.stop_hold,
                self._client_gone,
                1 if take else None,
            )
            if got is None:
                record(CLIENT_GONE)  # nothing to answer: the worker has hung up
            elif not got:
                record(204)
                self._answer(204)
            elif take:
                record(200, got[0], got[0]["id"])
                self._answer(200, got[0])
            else:
                record(200, {"jobsToStop": got})
                self._answer(200, {"jobsToStop": got})
        elif route == "ping":
            record(200)
            self._answer(200)
        else:  # job-done, job-stream: a JSON text sent as form data
            try:
                body = json.loads(raw)
            except ValueError:
                record(400, raw.decode(errors="replace"))
                self._answer(400)
                return
            failing = route == "job-done" and not (
                isinstance(body, dict) and body.get("status") == "IN_PROGRESS"
            )
            status = 500 if failing and api._fail_this_done() else 200
            record(status, body)
            self._answer(status)

    def _client_gone(self) -> bool:
        """The worker closed the connection: after its request it sends nothing more, so a
        readable socket means end of file (or a reset)."""
        try:
            if not select.select([self.connection], [], [], 0)[0]:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _route(self, path: str, method: str) -> tuple[str | None, str | None]:
        worker = self.server.api.worker_id
        parts = path.split("/")
        # "", "v2", endpoint, route, worker[, job]
        if len(parts) < 5 or parts[:3] != ["", "v2", ENDPOINT_ID] or parts[4] != worker:
            return None, None
        route = parts[3]
        if method == "GET" and len(parts) == 5 and route in ("job-take", "job-stop", "ping"):
            return route, None
        if method == "POST" and len(parts) == 6 and route in ("job-done", "job-stream"):
            return route, parts[5]
        return None, None

    def _answer(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
