"""Outputs uploaded to S3/R2 (moto's S3 server) with presigned URLs; named workflows only."""

from __future__ import annotations

import json

import pytest
import requests
from support.fake_comfyui import stub_models
from support.fake_comfyui.runner import REPO, WorkerProcess
from support.s3server import S3Server


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        server.client().create_bucket(Bucket="outputs")
        yield server


@pytest.fixture(scope="module")
def worker(tmp_path_factory, s3):
    w = WorkerProcess(tmp_path_factory.mktemp("bucket"), env={
        "BUCKET_ENDPOINT_URL": s3.endpoint, "BUCKET_NAME": "outputs",
        "BUCKET_ACCESS_KEY_ID": "testing", "BUCKET_SECRET_ACCESS_KEY": "test-secret",
        "BUCKET_PREFIX": "runs", "ALLOW_RAW_WORKFLOWS": "0"})
    stub_models(w.comfyui_dir)
    w.start()
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()


def test_outputs_go_to_the_bucket_as_presigned_urls(worker, s3):
    job = json.loads((REPO / "test_input.json").read_text())["input"]
    answer = worker.runsync(job)
    assert answer["status"] == "COMPLETED", answer
    [video] = answer["output"]["videos"]
    assert video["type"] == "s3_url" and video["filename"] == "wan_flf_00001.mp4"
    assert f"/outputs/runs/{answer['id']}/wan_flf_00001.mp4?" in video["data"]
    assert "X-Amz-Signature=" in video["data"]
    fetched = requests.get(video["data"], timeout=10)
    assert fetched.status_code == 200
    assert fetched.headers["Content-Type"] == "video/mp4"
    assert fetched.content[4:8] == b"ftyp"
    listed = s3.client().list_objects_v2(Bucket="outputs")["Contents"]
    assert [o["Key"] for o in listed] == [f"runs/{answer['id']}/wan_flf_00001.mp4"]


def test_raw_workflows_are_refused_when_not_allowed(worker):
    answer = worker.runsync({"workflow": {"1": {"class_type": "SaveImage", "inputs": {}}}})
    assert answer["status"] == "FAILED"
    assert answer["error"] == ("invalid input: this endpoint accepts only named workflows "
                               "(ALLOW_RAW_WORKFLOWS=0): set input.workflow to one of: "
                               "wan_flf_i2v")
