"""The job's outputs: find every file a prompt produced and hand it back, inline or by bucket."""

from __future__ import annotations

import base64
import json
import logging
import mimetypes
from dataclasses import dataclass
from typing import Any, BinaryIO

from worker.config import BucketConfig

log = logging.getLogger("worker")

# ComfyUI's output keys, and under which result key their files are returned.
# VideoHelperSuite reports videos (mp4 included) under `gifs`.
KINDS = {
    "images": "images",
    "gifs": "videos",
    "videos": "videos",
    "video": "videos",
    "audio": "audio",
}
RESULT_KEYS = ("images", "videos", "audio", "files")
CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".png": "image/png",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".opus": "audio/opus",
}


class OutputError(Exception):
    pass


@dataclass(frozen=True)
class OutputFile:
    node_id: str
    kind: str  # images | videos | audio | files
    filename: str
    subfolder: str
    type: str

    @property
    def content_type(self) -> str:
        ext = "." + self.filename.rsplit(".", 1)[-1].lower() if "." in self.filename else ""
        return (
            CONTENT_TYPES.get(ext)
            or mimetypes.guess_type(self.filename)[0]
            or "application/octet-stream"
        )


def collect_outputs(outputs: dict[str, Any], scope: str | None = None) -> list[OutputFile]:
    """Every saved file in a history entry's `outputs`, in node order.

    Files of type `temp` (previews; ComfyUI wipes temp/ itself) are not results. With `scope`
    (the job's folder), only files of type `output` inside `output/<scope>/` are: what the job's
    own saving nodes wrote. A node that reports a file of ComfyUI's input folder (a loader's
    preview) or of another folder would otherwise hand back a file the job did not make."""
    files: list[OutputFile] = []
    seen: set[tuple[str, str, str]] = set()
    for node_id in sorted(outputs, key=_node_order):
        for key, entries in (outputs[node_id] or {}).items():
            if not isinstance(entries, list):
                continue
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
                    continue
                type_ = str(entry.get("type", "output"))
                ident = (entry["filename"], str(entry.get("subfolder", "")), type_)
                if type_ == "temp" or ident in seen:
                    continue
                if scope is not None and not _inside(scope, type_, ident[1]):
                    continue
                seen.add(ident)
                files.append(
                    OutputFile(
                        node_id,
                        KINDS.get(key, "files"),
                        entry["filename"],
                        str(entry.get("subfolder", "")),
                        type_,
                    )
                )
    return files


def _inside(scope: str, type_: str, subfolder: str) -> bool:
    parts = subfolder.replace("\\", "/").split("/")
    return type_ == "output" and parts[0] == scope and ".." not in parts


def _node_order(node_id: str) -> tuple[int, str]:
    # isdigit() is also true for "³" or "١", which int() refuses or reads differently: only
    # ASCII digits are numbers here, anything else sorts after them by its text
    if node_id.isascii() and node_id.isdigit():
        return (int(node_id), "")
    return (1 << 62, node_id)


def base64_size(n: int) -> int:
    return 4 * ((n + 2) // 3)


def raw_budget(base64_budget: int) -> int:
    """The most bytes whose base64 fits in `base64_budget` characters."""
    return 3 * (max(0, base64_budget) // 4)


def too_large(what: str, limit: int, bucket: bool = False) -> OutputError:
    advice = (
        "The outputs already go to the bucket as URLs: save fewer files per job."
        if bucket
        else "Configure an S3/R2 bucket (BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID, "
        "BUCKET_SECRET_ACCESS_KEY, BUCKET_NAME) so that outputs are returned as URLs."
    )
    return OutputError(
        f"{what}, over the {limit:,} bytes a response may carry (MAX_INLINE_BYTES; RunPod "
        f"accepts 10 MB from /run and 20 MB from /runsync). {advice}"
    )


def response_size(output: dict[str, Any]) -> int:
    """The bytes of `{"output": output}` as JSON (UTF-8, as the SDK posts it). The base64
    data (most of it, and never escaped) is counted, not copied into a second string."""
    data = 0
    light: dict[str, Any] = {}
    for key, value in output.items():
        if isinstance(value, list):
            entries = []
            for entry in value:
                if isinstance(entry, dict) and isinstance(entry.get("data"), str):
                    data += len(entry["data"])
                    entry = {**entry, "data": ""}
                entries.append(entry)
            value = entries
        light[key] = value
    return data + len(json.dumps({"output": light}, ensure_ascii=False).encode())


def check_response_size(output: dict[str, Any], limit: int, bucket: bool = False) -> None:
    """OutputError if the whole response is over `limit` bytes (`bucket`: the outputs were
    uploaded, which changes the advice)."""
    size = response_size(output)
    if size > limit:
        raise too_large(f"the response is {size:,} bytes", limit, bucket)


def inline_entry(file: OutputFile, data: bytes) -> dict[str, Any]:
    return {
        "filename": file.filename,
        "type": "base64",
        "data": base64.b64encode(data).decode("ascii"),
        "content_type": file.content_type,
        "node_id": file.node_id,
    }


class BucketUploader:
    """Uploads outputs to S3/R2 with boto3 and returns presigned GET URLs."""

    def __init__(self, bucket: BucketConfig):
        import boto3
        from botocore.config import Config as BotoConfig

        self.bucket = bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=bucket.endpoint_url,
            region_name=bucket.region,
            aws_access_key_id=bucket.access_key_id,
            aws_secret_access_key=bucket.secret_access_key,
            config=BotoConfig(
                signature_version="s3v4",
                retries={"max_attempts": 3},
                s3={"addressing_style": bucket.addressing_style},
            ),
        )

    def upload(
        self, file: OutputFile, data: bytes | BinaryIO, job_id: str, job_folder: str = ""
    ) -> dict[str, Any]:
        """Store the file as <prefix>/<job id>/<its subfolder>/<name>, the subfolder taken
        relative to `job_folder` (the job's own output folder): two saving nodes may write
        the same file name into different folders."""
        subfolder = file.subfolder.strip("/")
        if job_folder and (subfolder == job_folder or subfolder.startswith(job_folder + "/")):
            subfolder = subfolder[len(job_folder) :].strip("/")
        key = "/".join(p for p in (self.bucket.prefix, job_id, subfolder, file.filename) if p)
        try:
            if isinstance(data, bytes):
                self.client.put_object(
                    Bucket=self.bucket.bucket, Key=key, Body=data, ContentType=file.content_type
                )
            else:  # streamed from the spool file, in parts when it is large
                data.seek(0)
                self.client.upload_fileobj(
                    data,
                    self.bucket.bucket,
                    key,
                    ExtraArgs={"ContentType": file.content_type},
                )
            url = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket.bucket, "Key": key},
                ExpiresIn=self.bucket.url_expires,
            )
        except Exception as exc:
            raise OutputError(
                f"uploading {file.filename} to bucket {self.bucket.bucket!r} at "
                f"{self.bucket.endpoint_url} failed: {exc}"
            ) from None
        return {
            "filename": file.filename,
            "type": "s3_url",
            "data": url,
            "content_type": file.content_type,
            "node_id": file.node_id,
        }
