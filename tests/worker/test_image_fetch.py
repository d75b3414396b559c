"""Image URLs: http(s) only, size- and time-limited, and never at the worker's own network."""

from __future__ import annotations

import pytest
from support.httpserver import FileServer

from worker.image_fetch import check_destination, fetch_image
from worker.job_input import JobInputError


@pytest.fixture(scope="module")
def files():
    with FileServer() as server:
        yield server


@pytest.mark.parametrize("url", ["http://127.0.0.1:8188/view?filename=x", "http://localhost/x",
                                 "http://169.254.169.254/latest/meta-data/",
                                 "http://10.0.0.7/x.png", "http://[::1]/x.png"])
def test_non_public_addresses_are_refused(url):
    with pytest.raises(JobInputError, match=r"non-public address .* which is refused"):
        check_destination(url, allow_private=False)


def test_only_http_and_https(files):
    with pytest.raises(JobInputError, match="only http and https"):
        check_destination("ftp://example.com/x.png", allow_private=True)


def test_download_within_limits(files):
    url = files.add("/ok.png", b"x" * 1000)
    assert fetch_image(url, max_bytes=1000, timeout=5, allow_private=True) == b"x" * 1000
    with pytest.raises(JobInputError, match="1000 bytes, over the limit of 999"):
        fetch_image(url, max_bytes=999, timeout=5, allow_private=True)


def test_redirects_are_checked_hop_by_hop():
    class Redirect(FileServer):
        def handle(self, handler, head):
            handler.send_response(302)
            handler.send_header("Location", "file:///etc/passwd")
            handler.send_header("Content-Length", "0")
            handler.end_headers()

    with Redirect() as redirect, pytest.raises(JobInputError, match="only http and https"):
        fetch_image(redirect.url("/x.png"), max_bytes=10, timeout=5, allow_private=True)
