"""Credentials in HF_ENDPOINT (`http://user:password@host`, a mirror behind basic auth) never
reach an error line of `models fetch` or `update-locks --models`."""

from __future__ import annotations

import socket

import pytest
from support.modelfiles import MB, blob, entry, write_lock

from bake import update_locks
from bake.cli import main
from bake.locks.models import HfSource
from bake.redact import redact_url, scrub

DATA = blob(MB, 8)
SECRET = "hunter2-not-a-real-password"


def with_credentials(endpoint: str) -> str:
    return endpoint.replace("http://", f"http://mirror-user:{SECRET}@", 1)


@pytest.fixture
def lock(hub, tmp_path):
    commit = hub.add_file("org/wan", "vae.safetensors", DATA)
    return write_lock(
        tmp_path / "models.lock.yaml",
        entry(
            "vae",
            HfSource("org/wan", "vae.safetensors"),
            "models/vae/vae.safetensors",
            DATA,
            revision=commit,
        ),
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_models_fetch_does_not_show_the_endpoint_credentials(
    hub, lock, tmp_path, monkeypatch, capsys
):
    hub.drop_every["vae.safetensors"] = 0  # every GET is cut: the retries run out
    monkeypatch.setenv("HF_ENDPOINT", with_credentials(hub.endpoint))
    code = main(["models", "fetch", "--comfyui-dir", str(tmp_path / "c"), "--lock", str(lock)])
    out = capsys.readouterr()
    errors = [line for line in out.err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1
    assert f"the connection to {hub.endpoint} kept failing" in errors[0]
    assert SECRET not in out.out + out.err and "mirror-user" not in out.out + out.err


def test_update_locks_does_not_show_the_endpoint_credentials(lock, monkeypatch, capsys):
    port = closed_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://mirror-user:{SECRET}@127.0.0.1:{port}")
    assert update_locks.main(["--models", "--lock", str(lock)]) == 1
    out = capsys.readouterr()
    errors = [line for line in (out.out + out.err).splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: models.vae: the connection to http://127.0.0.1:{port} kept failing (ConnectError)"
    ]
    assert SECRET not in out.out + out.err and "mirror-user" not in out.out + out.err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET http://u:p@h:8/a?sig=s#f failed", "GET http://h:8/a failed"),
        ("at 'https://tok@[::1]:8080/x?X-Amz-Signature=s'", "at 'https://[::1]:8080/x'"),
        ("bad http://u:p@[::1/x?q", "bad http://[::1/x"),  # unparsable: still cut
        (
            "hf://org/repo/a.safetensors@abc and s3://b/k",
            "hf://org/repo/a.safetensors@abc and s3://b/k",
        ),
    ],
)
def test_every_url_in_a_message_loses_user_info_query_and_fragment(text, expected):
    assert scrub(text) == expected


def test_redact_keeps_the_port_and_brackets_of_an_ipv6_host():
    assert redact_url("http://user:pw@[::1]:9000/bucket") == "http://[::1]:9000/bucket"
