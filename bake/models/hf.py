"""Hugging Face Hub sources through `huggingface_hub`: revision -> commit, file metadata (size,
LFS sha256) from the paths-info API, and the download itself with the library's `http_get`
(retries with Range resume, HF_TOKEN, redirects to the CDN).

`HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE` are read when a call is made, not when the
library was imported, so a process can point at another endpoint without restarting. The
endpoint may carry credentials (`https://user:token@mirror`): messages show it redacted.
The bytes stream into our own `Sink`, which hashes them on the way (see bake.models.store).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import httpx2  # the HTTP client huggingface_hub 2.x uses (not httpx: other exception classes)
from huggingface_hub import HfApi, constants, hf_hub_url
from huggingface_hub import errors as hf_errors
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import build_hf_headers
from huggingface_hub.utils.tqdm import silent_tqdm

from bake.errors import AuthError, FetchError, SourceNotFoundError
from bake.locks.models import HfSource
from bake.models.store import DownloadInterrupted, Sink
from bake.redact import redact_url, scrub

_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class HubFile:
    commit: str  # the 40-hex commit `revision` resolved to
    size: int
    sha256: str | None  # the LFS oid; None for a file stored in git itself


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _check_online(source: HfSource) -> None:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        raise FetchError(
            f"{source.describe()}: HF_HUB_OFFLINE is set, so the Hub is not "
            "contacted; unset it to download"
        )


def _token_hint() -> str:
    if os.environ.get("HF_TOKEN"):
        return (
            "the token in HF_TOKEN was refused or lacks access: set HF_TOKEN to a token "
            "with read access to this repository"
        )
    return "set HF_TOKEN to a token with read access (the repository may be private or gated)"


def _translate(exc: Exception, source: HfSource, revision: str) -> FetchError:
    where = f"{source.describe()} (at {revision})"
    if isinstance(exc, hf_errors.GatedRepoError):
        return AuthError(
            f"{where}: the repository is gated: accept its terms on the Hub, then {_token_hint()}"
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return SourceNotFoundError(
            f"{where}: revision {revision!r} does not exist; fix "
            "`original.revision` in models.lock.yaml"
        )
    if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
        return SourceNotFoundError(
            f"{where}: no file {source.path!r} in the repository at that "
            "revision; fix `original.path` in models.lock.yaml"
        )
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            return AuthError(f"{where}: the Hub answered {status}: {_token_hint()}")
        return SourceNotFoundError(
            f"{where}: repository {source.repo!r} not found; fix "
            f"`original.repo`, or if it is private, {_token_hint()}"
        )
    if isinstance(exc, hf_errors.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            return AuthError(f"{where}: the Hub answered {status}: {_token_hint()}")
        if status == 404:
            return SourceNotFoundError(f"{where}: the Hub answered 404 Not Found")
        return FetchError(f"{where}: the Hub answered HTTP {status}")
    if isinstance(exc, (httpx2.TransportError, httpx2.TimeoutException)):
        return DownloadInterrupted(
            f"the connection to {redact_url(endpoint())} kept failing ({type(exc).__name__})"
        )
    if isinstance(exc, httpx2.HTTPError):  # a redirect loop, an undecodable body, ...
        return FetchError(f"{where}: {type(exc).__name__} ({scrub(str(exc))})")
    return FetchError(f"{where}: {scrub(str(exc))}")


def resolve(source: HfSource) -> HubFile:
    """The commit `source.revision` points at, and the file's size and LFS sha256 there."""
    _check_online(source)
    api = HfApi(endpoint=endpoint())
    revision = source.revision
    try:
        info = api.repo_info(source.repo, repo_type=source.repo_type, revision=revision)
        commit = info.sha
        if not commit:
            raise FetchError(
                f"{source.describe()}: the Hub did not report a commit for revision {revision!r}"
            )
        found = api.get_paths_info(
            source.repo, [source.path], repo_type=source.repo_type, revision=commit
        )
    except FetchError:
        raise
    except Exception as exc:
        raise _translate(exc, source, revision) from None
    files = [f for f in found if getattr(f, "size", None) is not None and f.path == source.path]
    if not files:
        raise SourceNotFoundError(
            f"{source.describe()} (at {commit}): no file {source.path!r} "
            "in the repository; fix `original.path` in models.lock.yaml"
        )
    entry = files[0]
    return HubFile(commit, entry.size, entry.lfs.sha256 if entry.lfs else None)


def file_url(source: HfSource, revision: str) -> str:
    return hf_hub_url(
        source.repo, source.path, repo_type=source.repo_type, revision=revision, endpoint=endpoint()
    )


def download(source: HfSource, revision: str, sink: Sink) -> None:
    """Write the file at `revision` (a commit) into `sink`, from `sink.offset` on."""
    _check_online(source)
    # The library logs each retry as a warning with the URL; we report the outcome ourselves.
    logging.getLogger("huggingface_hub.file_download").setLevel(logging.ERROR)
    try:
        http_get(
            file_url(source, revision),
            sink,
            resume_size=sink.position,
            headers=build_hf_headers(),
            displayed_filename=source.path.rsplit("/", 1)[-1],
            tqdm_class=silent_tqdm,
        )  # our Progress reports instead
    except FetchError:
        raise
    except (hf_errors.HfHubHTTPError, httpx2.HTTPError) as exc:
        raise _translate(exc, source, revision) from None
