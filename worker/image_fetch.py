"""Download input images given by URL: http(s) only, size- and time-limited.

Addresses on loopback, private, link-local or reserved networks are refused unless
IMAGE_URL_ALLOW_PRIVATE=1, so a job cannot make the worker read ComfyUI's own port or a cloud
metadata service. Redirects are followed by hand so that every hop is checked.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urljoin, urlparse

import requests

from worker.job_input import JobInputError

MAX_REDIRECTS = 5


def check_destination(url: str, allow_private: bool) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise JobInputError(f"image URL {url!r}: only http and https URLs are accepted")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise JobInputError(f"image URL {url!r}: cannot resolve {parsed.hostname}: {exc}") \
            from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise JobInputError(f"image URL {url!r}: {parsed.hostname} resolves to the "
                                f"non-public address {address}, which is refused")


def fetch_image(url: str, *, max_bytes: int, timeout: float, allow_private: bool,
                session: requests.Session | None = None) -> bytes:
    session = session or requests.Session()
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        check_destination(url, allow_private)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            resp = session.get(url, stream=True, allow_redirects=False,
                               timeout=(min(remaining, 10), remaining))
        except requests.RequestException as exc:
            raise JobInputError(f"image URL {url!r} could not be fetched: {exc}") from None
        with resp:
            if resp.is_redirect:
                url = urljoin(url, resp.headers["Location"])
                continue
            if resp.status_code != 200:
                raise JobInputError(f"image URL {url!r} answered HTTP {resp.status_code}")
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise JobInputError(f"image URL {url!r} is {int(declared)} bytes, over the "
                                    f"limit of {max_bytes} (IMAGE_URL_MAX_BYTES)")
            chunks, size = [], 0
            try:
                for chunk in resp.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise JobInputError(f"image URL {url!r} sent more than {max_bytes} "
                                            "bytes (IMAGE_URL_MAX_BYTES)")
                    if time.monotonic() > deadline:
                        raise JobInputError(f"image URL {url!r} took longer than {timeout:g} "
                                            "s (IMAGE_URL_TIMEOUT)")
                    chunks.append(chunk)
            except requests.RequestException as exc:
                raise JobInputError(f"image URL {url!r} failed mid-download: {exc}") from None
            if not size:
                raise JobInputError(f"image URL {url!r} returned no data")
            return b"".join(chunks)
    raise JobInputError(f"image URL {url!r}: too many redirects or over {timeout:g} s")
