"""A plain HTTP file server on loopback for download tests.

    with FileServer() as server:
        server.add("/rife47.pth", data)
        url = server.url("/rife47.pth")
        server.status["/secret.pth"] = 403       # answer 401/403/404/... instead
        server.drop_after["/rife47.pth"] = 1000  # next GET: send 1000 bytes, then cut the line
        server.drop_every["/rife47.pth"] = 1000  # every GET: the same, until removed
        server.redirect["/loop"] = "/loop"        # answer 302 with this Location
        server.truncate["/rife47.pth"] = 1000    # every GET: a clean, consistent short file
        server.rate = 200e6                      # at most 200 MB/s, like a real link
        server.gets("/rife47.pth")               # how many GETs that path has seen

It honours `Range: bytes=N-` with 206 (unless `honor_range` is False), runs in a daemon thread
on 127.0.0.1 with a free port, and `stop()` closes the socket. `serve_bytes` is shared with the
Hugging Face server in `support.hfserver`.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


def serve_bytes(
    handler: BaseHTTPRequestHandler,
    data: bytes,
    *,
    head: bool = False,
    drop_after: int | None = None,
    honor_range: bool = True,
    headers: dict[str, str] | None = None,
    rate: float | None = None,
) -> None:
    """Answer with `data` (200, or 206 for a Range), optionally cutting the connection after
    `drop_after` body bytes while the headers promised more, or sending at most `rate` bytes
    per second (a link slower than loopback, for benchmarks)."""
    start, end = 0, len(data)
    status = 200
    wanted = handler.headers.get("Range")
    if wanted and honor_range:
        match = _RANGE.match(wanted.strip())
        if match:
            start = int(match.group(1))
            if match.group(2):
                end = min(int(match.group(2)) + 1, len(data))
            if start >= len(data):
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{len(data)}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            status = 206
    body = data[start:end]
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Accept-Ranges", "bytes")
    handler.send_header("Content-Length", str(len(body)))
    if status == 206:
        handler.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
    handler.end_headers()
    if head:
        return
    if drop_after is not None and drop_after < len(body):
        handler.wfile.write(body[:drop_after])
        handler.wfile.flush()
        handler.close_connection = True
        # a hard cut, as a dying proxy would do it: the client sees a short body
        handler.connection.shutdown(socket.SHUT_RDWR)
        return
    view = memoryview(body)
    started = time.monotonic()
    for offset in range(0, len(view), 1 << 20):
        handler.wfile.write(view[offset : offset + (1 << 20)])
        if rate:
            ahead = (offset + (1 << 20)) / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # quiet test output
        pass

    def do_HEAD(self) -> None:
        self.server.owner.handle(self, head=True)

    def do_GET(self) -> None:
        self.server.owner.handle(self, head=False)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LoopbackServer


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1:0 in a daemon thread, with request counting."""

    handler_class: type[BaseHTTPRequestHandler] = _Handler

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "call start() first"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, method: str, path: str) -> None:
        with self._lock:
            self.counts[(method, path)] += 1

    def gets(self, path: str) -> int:
        return self.counts[("GET", path)]

    def start(self) -> LoopbackServer:
        self._httpd = _Server(("127.0.0.1", 0), self.handler_class)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def handle(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        raise NotImplementedError


class FileServer(LoopbackServer):
    """Serves registered byte strings by path, with the failure modes downloads must survive."""

    def __init__(self, honor_range: bool = True) -> None:
        super().__init__()
        self.files: dict[str, bytes] = {}
        self.status: dict[str, int] = {}
        self.drop_after: dict[str, int] = {}  # one-shot: removed after it fires
        self.drop_every: dict[str, int] = {}  # every GET, until removed
        self.redirect: dict[str, str] = {}
        self.truncate: dict[str, int] = {}
        self.honor_range = honor_range
        self.rate: float | None = None  # bytes per second, None: as fast as loopback goes
        self.ranges: list[tuple[str, str | None]] = []

    def add(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.url(path)

    def url(self, path: str) -> str:
        return self.base_url + path

    def handle(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        path = handler.path.split("?", 1)[0]
        self.count("HEAD" if head else "GET", path)
        with self._lock:
            self.ranges.append((path, handler.headers.get("Range")))
            drop = None if head else self.drop_after.pop(path, self.drop_every.get(path))
        if path in self.redirect:
            handler.send_response(302)
            handler.send_header("Location", self.redirect[path])
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        code = self.status.get(path)
        if code is None and path not in self.files:
            code = 404
        if code is not None:
            body = f"status {code}\n".encode()
            handler.send_response(code)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if not head:
                handler.wfile.write(body)
            return
        data = self.files[path]
        if path in self.truncate:
            data = data[: self.truncate[path]]
        serve_bytes(
            handler, data, head=head, drop_after=drop, honor_range=self.honor_range, rate=self.rate
        )
