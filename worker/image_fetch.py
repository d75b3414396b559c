"""Download input images given by URL: http(s) only, size- and time-limited.

Addresses on loopback, private, link-local or reserved networks are refused unless
IMAGE_URL_ALLOW_PRIVATE=1, so a job cannot make the worker read ComfyUI's own port or a cloud
metadata service. Redirects are followed by hand so that every hop is checked, and the
address each connection actually reached is checked again before the request is sent (the
name could resolve differently the second time: DNS rebinding). IMAGE_URL_TIMEOUT bounds the
whole download, https included: when it runs out, the connection is shut down whatever the
server is sending, and the download fails even if the cut looked like the end of the body.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from urllib.parse import urljoin, urlparse

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from worker.job_input import JobInputError

MAX_REDIRECTS = 5


class _RefusedPeer(OSError):
    """A connection reached a non-public address although the name checked as public."""


def check_destination(url: str, allow_private: bool) -> None:
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError as exc:
        raise JobInputError(f"image URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise JobInputError(f"image URL {url!r}: only http and https URLs are accepted")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parsed.hostname, port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise JobInputError(f"image URL {url!r}: cannot resolve {parsed.hostname}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not is_public(address):
            raise JobInputError(
                f"image URL {url!r}: {parsed.hostname} resolves to the "
                f"non-public address {address}, which is refused"
            )


# IPv6 prefixes that carry an IPv4 address in their last 32 bits: IPv4-compatible (::/96),
# SIIT (::ffff:0:0:0/96), NAT64 well-known and local-use (64:ff9b::/96, 64:ff9b:1::/48).
# IPv4-mapped, 6to4 and Teredo have ipaddress properties of their own.
_EMBEDDING_V4 = tuple(
    ipaddress.ip_network(n) for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48")
)


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `address` is public, an IPv6 address that embeds an IPv4 one judged by that
    too (`ipaddress` calls ::7f00:1 or 64:ff9b::7f00:1 global, whose IPv4 is loopback)."""
    if not address.is_global:
        return False
    if address.version == 4:
        return True
    embedded = [address.ipv4_mapped, address.sixtofour]
    if address.teredo is not None:
        embedded += list(address.teredo)
    if any(address in net for net in _EMBEDDING_V4):
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return all(v4.is_global for v4 in embedded if v4 is not None)


def _session(allow_private: bool, sockets: list[socket.socket]) -> requests.Session:
    """A session whose direct connections are recorded in `sockets` (so the deadline can
    shut them down) and, unless private addresses are allowed, refused before anything is
    sent when the peer they reached is not a public address.

    What is recorded is a duplicate of each connection's socket: shutting a duplicate down
    shuts the connection down, and unlike the socket itself it survives the TLS wrapping
    (which detaches the plain socket the connection started with) and is not the SSLSocket
    another thread is reading from. The caller closes the duplicates."""

    class Checked:
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()  # type: ignore[misc]
            sockets.append(sock.dup())
            if not allow_private:
                peer = ipaddress.ip_address(sock.getpeername()[0])
                if not is_public(peer):
                    sock.close()
                    raise _RefusedPeer(f"connected to the non-public address {peer}")
            return sock

    class Conn(Checked, HTTPConnection):
        pass

    class TLSConn(Checked, HTTPSConnection):
        pass

    class Pool(HTTPConnectionPool):
        ConnectionCls = Conn

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = TLSConn

    session = requests.Session()
    for adapter in session.adapters.values():
        adapter.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}
    return session


def _shut(sockets: list[socket.socket], expired: threading.Event) -> None:
    expired.set()
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked on it, unlike close()


def fetch_image(url: str, *, max_bytes: int, timeout: float, allow_private: bool) -> bytes:
    sockets: list[socket.socket] = []
    expired = threading.Event()
    timer = threading.Timer(timeout, _shut, (sockets, expired))
    timer.daemon = True
    timer.start()
    too_slow = JobInputError(
        f"image URL {url!r} took longer than {timeout:g} s (IMAGE_URL_TIMEOUT)"
    )
    try:
        with _session(allow_private, sockets) as session:
            data = _fetch(session, url, max_bytes, timeout, allow_private)
    except (requests.RequestException, OSError) as exc:
        if expired.is_set():
            raise too_slow from None
        refused = _find_refusal(exc)
        if refused is not None:
            raise JobInputError(f"image URL {url!r}: {refused}, which is refused") from None
        raise JobInputError(f"image URL {url!r} could not be fetched: {exc}") from None
    finally:
        timer.cancel()
        timer.join()  # _shut is not using the duplicates any more
        for sock in sockets:
            sock.close()
    if expired.is_set():
        # A body without a length ends when the connection closes: the deadline's shutdown
        # looks like that end, and what came before it is only part of the file.
        raise too_slow
    return data


def _find_refusal(exc: BaseException) -> _RefusedPeer | None:
    """The peer refusal inside the layers requests and urllib3 wrap around it."""
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, _RefusedPeer):
            return item
        pending += [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
    return None


def _fetch(
    session: requests.Session, url: str, max_bytes: int, timeout: float, allow_private: bool
) -> bytes:
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        check_destination(url, allow_private)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        resp = session.get(
            url, stream=True, allow_redirects=False, timeout=(min(remaining, 10), remaining)
        )
        with resp:
            if resp.is_redirect:
                url = urljoin(url, resp.headers["Location"])
                continue
            if resp.status_code != 200:
                raise JobInputError(f"image URL {url!r} answered HTTP {resp.status_code}")
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise JobInputError(
                    f"image URL {url!r} is {int(declared)} bytes, over the "
                    f"limit of {max_bytes} (IMAGE_URL_MAX_BYTES)"
                )
            chunks, size = [], 0
            for chunk in resp.iter_content(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise JobInputError(
                        f"image URL {url!r} sent more than {max_bytes} bytes (IMAGE_URL_MAX_BYTES)"
                    )
                chunks.append(chunk)
            if not size:
                raise JobInputError(f"image URL {url!r} returned no data")
            return b"".join(chunks)
    raise JobInputError(f"image URL {url!r}: too many redirects or over {timeout:g} s")
