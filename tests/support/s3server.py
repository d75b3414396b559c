"""moto's S3 server on loopback, standing in for Cloudflare R2.

    with S3Server() as s3:
        s3.put("models", "dasiwa/high.safetensors", data)
        env = s3.env()  # AWS_ENDPOINT_URL + obvious fake keys, for os.environ or a subprocess

The server runs in a thread of this process on 127.0.0.1 with a free port; `stop()` shuts it
down. Credentials are moto's conventional fakes ("testing").
"""

from __future__ import annotations

import contextlib
import logging

import boto3
from moto.server import ThreadedMotoServer

FAKE_KEY = "testing"
FAKE_SECRET = "testing"


class S3Server:
    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> S3Server:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def env(self, prefix: str = "AWS") -> dict[str, str]:
        """Endpoint and fake keys under `{prefix}_ENDPOINT_URL`, `{prefix}_ACCESS_KEY_ID` and
        `{prefix}_SECRET_ACCESS_KEY`."""
        return {
            f"{prefix}_ENDPOINT_URL": self.endpoint,
            f"{prefix}_ACCESS_KEY_ID": FAKE_KEY,
            f"{prefix}_SECRET_ACCESS_KEY": FAKE_SECRET,
        }

    def client(self):
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=FAKE_KEY,
            aws_secret_access_key=FAKE_SECRET,
            region_name="us-east-1",
        )

    def require_auth(self, enabled: bool = True) -> None:
        """Make moto check signatures and keys (it accepts anything by default), so wrong keys
        get the 403 a real R2 bucket gives."""
        import requests

        value = "0" if enabled else "inf"
        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=value, timeout=10)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        s3 = self.client()
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=data)
