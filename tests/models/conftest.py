"""Fixtures for the model tests: real servers on loopback and locks written from known bytes."""

from __future__ import annotations

import os

import pytest
from support.hfserver import HubServer
from support.httpserver import FileServer
from support.s3server import S3Server


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No real credentials or caches leak in; stamps fall back into the test's tmp dir."""
    for name in (
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_OFFLINE",
        "BAKE_STAMP_DIR",
        "BAKE_CACHE_DIR",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("BAKE_DOWNLOAD_RETRIES", "3")


@pytest.fixture
def hub(monkeypatch):
    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        yield server


@pytest.fixture
def files():
    with FileServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server():
    with S3Server() as server:
        yield server


@pytest.fixture
def s3(s3_server, monkeypatch):
    s3_server.require_auth(False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    yield s3_server
    s3_server.require_auth(False)
