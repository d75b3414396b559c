"""S3-compatible sources (Cloudflare R2) through `boto3`: a concurrent multipart download whose
parts are written in order into our hashing `Sink`.

The endpoint and keys come from the variables the entry names (default `AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), so buckets on two accounts can coexist; region
`auto` is what R2 expects. `bucket` and `key` may be `${VAR}` references. Messages name the
variables, never their values.
"""

from __future__ import annotations

import os

import boto3
from boto3.exceptions import RetriesExceededError as Boto3RetriesExceededError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from s3transfer.exceptions import RetriesExceededError

from bake.errors import AuthError, FetchError, SourceNotFoundError
from bake.locks.lockfile import expand_env
from bake.locks.models import S3Source
from bake.models.store import DownloadInterrupted, Sink

_MB = 1 << 20
_AUTH_CODES = {
    "403",
    "401",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "Unauthorized",
    "Forbidden",
}
_MISSING_CODES = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}


def transfer_config() -> TransferConfig:
    """Concurrent ranged GETs: BAKE_S3_CONCURRENCY parts at once (default 8) of
    BAKE_S3_PART_SIZE bytes (default 64 MiB).

    Every object, even one smaller than a part, takes s3transfer's ranged path: its parts pass
    through a queue that writes them in order and drops bytes already written when a part is
    retried. The single-GET path writes a retried body again from its start, which into a
    stream (our Sink cannot seek) would duplicate the bytes received before the drop."""
    part = int(os.environ.get("BAKE_S3_PART_SIZE", str(64 * _MB)))
    return TransferConfig(
        multipart_threshold=1,
        multipart_chunksize=part,
        max_concurrency=int(os.environ.get("BAKE_S3_CONCURRENCY", "8")),
        io_chunksize=4 * _MB,
        num_download_attempts=5,
    )


def location(source: S3Source) -> tuple[str, str]:
    """(bucket, key) with `${VAR}` references expanded."""
    return expand_env(source.bucket), expand_env(source.key)


def client(source: S3Source):
    env = os.environ
    named = (source.access_key_id_env, source.secret_access_key_env)
    custom = named != ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    if custom and not all(env.get(name) for name in named):
        # per-entry names have no fallback chain: say which to set rather than try anonymously
        raise AuthError(
            f"{source.describe()}: set {named[0]} and {named[1]} to the keys of "
            "this bucket's account"
        )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=env.get(source.endpoint_url_env) or None,
        aws_access_key_id=env.get(source.access_key_id_env) or None,
        aws_secret_access_key=env.get(source.secret_access_key_env) or None,
        region_name=source.region,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, signature_version="s3v4"),
    )


def _translate(exc: Exception, source: S3Source, shown: str) -> FetchError:
    keys = f"{source.access_key_id_env} and {source.secret_access_key_env}"
    if isinstance(exc, NoCredentialsError):
        return AuthError(
            f"{shown}: no credentials: set {keys} (and {source.endpoint_url_env} for R2)"
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _AUTH_CODES or status in (401, 403):
            return AuthError(
                f"{shown}: access denied ({code or status}): set {keys} to keys "
                f"that can read this object (and {source.endpoint_url_env} to "
                "the account's endpoint)"
            )
        if code in _MISSING_CODES or status == 404:
            return SourceNotFoundError(
                f"{shown}: no such object ({code or status}); check "
                "`original.bucket`/`original.key` and the variables "
                "they name"
            )
        return FetchError(f"{shown}: the server answered {code or status}")
    if isinstance(exc, (RetriesExceededError, Boto3RetriesExceededError)):
        # s3transfer retried a part until it gave up; what reached the sink is a prefix of the
        # object (parts are written in order), so the next run resumes from its end
        last = exc.last_exception
        return DownloadInterrupted(
            f"the connection to {shown} kept failing "
            f"({type(last).__name__ if last else type(exc).__name__})"
        )
    if isinstance(
        exc,
        (
            EndpointConnectionError,
            ConnectionClosedError,
            ReadTimeoutError,
            ResponseStreamingError,
            IncompleteReadError,
        ),
    ):
        return DownloadInterrupted(f"the connection to {shown} kept failing ({type(exc).__name__})")
    return FetchError(f"{shown}: {type(exc).__name__}")


def download(source: S3Source, sink: Sink) -> None:
    """Write the object into `sink` from `sink.offset` on: a concurrent multipart transfer
    from the start, a ranged GET when resuming a partial file."""
    bucket, key = location(source)
    shown = f"s3://{bucket}/{key}"
    try:
        s3 = client(source)
        if sink.position:
            body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={sink.position}-")["Body"]
            for chunk in body.iter_chunks(4 * _MB):
                sink.write(chunk)
        else:
            s3.download_fileobj(bucket, key, sink, Config=transfer_config())
    except (ClientError, BotoCoreError, RetriesExceededError, Boto3RetriesExceededError) as exc:
        raise _translate(exc, source, shown) from None
