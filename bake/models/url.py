"""Plain HTTP(S) sources (RIFE checkpoints on GitHub releases) through `requests`, streamed,
with Range resume when the connection drops mid-file.

URLs are shown without their query string or user info (bake.redact): a pre-signed URL carries
its credentials there, and credentials never reach a log line or a message.
"""

from __future__ import annotations

import os
import time

import requests

from bake.errors import AuthError, FetchError, SourceNotFoundError
from bake.locks.models import UrlSource
from bake.models.store import DownloadInterrupted, Sink
from bake.redact import redact_url, scrub

CHUNK = 1 << 20  # what a dropped connection can cost: a partial chunk is not kept


def _retries() -> int:
    return int(os.environ.get("BAKE_DOWNLOAD_RETRIES", "5"))


def _timeout() -> tuple[float, float]:
    return 30.0, float(os.environ.get("BAKE_READ_TIMEOUT", "60"))


def download(source: UrlSource, sink: Sink, *, session: requests.Session | None = None) -> None:
    """Write the bytes of `source` from `sink.offset` on into `sink`, resuming with a Range
    request after a dropped connection (up to BAKE_DOWNLOAD_RETRIES times without progress)."""
    shown = redact_url(source.url)
    session = session or requests.Session()
    retries = retries_left = _retries()
    last_error = ""
    while True:
        start = sink.position
        headers = {"Accept-Encoding": "identity"}
        if start:
            headers["Range"] = f"bytes={start}-"
        try:
            with session.get(source.url, headers=headers, stream=True, timeout=_timeout()) as resp:
                _raise_for_status(resp, shown)
                if start and resp.status_code != 206:
                    # the server ignored the Range: start over rather than append a duplicate
                    sink.seek(0)
                    sink.truncate()
                for chunk in resp.iter_content(chunk_size=CHUNK):
                    if chunk:
                        sink.write(chunk)
            return
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            last_error = type(exc).__name__
            if sink.position > start:
                retries_left = retries
            if retries_left <= 0:
                raise DownloadInterrupted(
                    f"the connection to {shown} kept failing ({last_error}) after {retries} retries"
                ) from None
            retries_left -= 1
            time.sleep(min(2 ** (retries - retries_left - 1) * 0.25, 8))
        except requests.RequestException as exc:
            # not retryable (a redirect loop, a bad scheme, an undecodable body); caught here
            # because requests' errors are OSErrors and must not read as a disk problem
            detail = scrub(str(exc)).strip()
            raise FetchError(
                f"{shown}: {type(exc).__name__}"
                f"{f' ({detail})' if detail else ''}; check `original.url` in "
                "models.lock.yaml and that the server answers it"
            ) from None


def _raise_for_status(resp: requests.Response, shown: str) -> None:
    code = resp.status_code
    if code < 400:
        return
    if code == 404 or code == 410:
        raise SourceNotFoundError(
            f"{shown} answered {code} Not Found: the file is gone or the "
            "URL is wrong; fix `original.url` in models.lock.yaml"
        )
    if code in (401, 403):
        raise AuthError(
            f"{shown} answered {code} ({'Unauthorized' if code == 401 else 'Forbidden'}): url "
            "sources send no credentials, so the file must be public; host it on Hugging Face "
            "(HF_TOKEN) or S3/R2 (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) instead"
        )
    raise FetchError(f"{shown} answered HTTP {code} {resp.reason}")
