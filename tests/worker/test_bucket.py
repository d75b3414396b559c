"""Outputs uploaded to S3/R2 (moto's S3 server) with presigned URLs; named workflows only."""

from __future__ import annotations

import json

import pytest
import requests
from support.fake_comfyui import stub_models
from support.fake_comfyui.runner import REPO, WorkerProcess
from support.s3server import S3Server

from worker.config import BucketConfig, Config
from worker.outputs import BucketUploader, OutputFile


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        server.client().create_bucket(Bucket="outputs")
        yield server


@pytest.fixture(scope="module")
def worker(tmp_path_factory, s3):
    w = WorkerProcess(
        tmp_path_factory.mktemp("bucket"),
        env={
            "BUCKET_ENDPOINT_URL": s3.endpoint,
            "BUCKET_NAME": "outputs",
            "BUCKET_ACCESS_KEY_ID": "testing",
            "BUCKET_SECRET_ACCESS_KEY": "test-secret",
            "BUCKET_PREFIX": "runs",
            "ALLOW_RAW_WORKFLOWS": "0",
        },
    )
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
    assert answer["error"] == (
        "invalid input: this endpoint accepts only named workflows "
        "(ALLOW_RAW_WORKFLOWS=0): set input.workflow to one of: "
        "wan_flf_i2v"
    )


def test_same_file_names_in_different_folders_get_different_keys(s3):
    s3.client().create_bucket(Bucket="keyed")  # the other test lists every key in its bucket
    uploader = BucketUploader(
        BucketConfig(
            endpoint_url=s3.endpoint,
            bucket="keyed",
            access_key_id="testing",
            secret_access_key="test-secret",
            region="us-east-1",
            prefix="keys",
            url_expires=60,
        )
    )
    # two SaveImage nodes with the prefixes a/img and b/img in the job's folder job-1
    first = uploader.upload(
        OutputFile("3", "images", "img_00001_.png", "job-1/a", "output"),
        b"first",
        "j1",
        job_folder="job-1",
    )
    second = uploader.upload(
        OutputFile("4", "images", "img_00001_.png", "job-1/b", "output"),
        b"second",
        "j1",
        job_folder="job-1",
    )
    top = uploader.upload(
        OutputFile("5", "images", "img_00001_.png", "job-1", "output"),
        b"top",
        "j1",
        job_folder="job-1",
    )
    assert [requests.get(e["data"], timeout=10).content for e in (first, second, top)] == [
        b"first",
        b"second",
        b"top",
    ]
    listed = s3.client().list_objects_v2(Bucket="keyed")["Contents"]
    assert sorted(o["Key"] for o in listed) == [
        "keys/j1/a/img_00001_.png",
        "keys/j1/b/img_00001_.png",
        "keys/j1/img_00001_.png",
    ]


@pytest.mark.parametrize(
    ("host", "name", "expected"),
    [
        ("outs", "", "https://outs.s3.eu-west-1.amazonaws.com/runs"),
        ("outs", "outs", "https://outs.s3.eu-west-1.amazonaws.com/runs"),
        ("my.outs", "", "https://s3.eu-west-1.amazonaws.com/my.outs/runs"),
    ],
)
def test_a_virtual_host_endpoint_keeps_every_object_under_the_prefix(host, name, expected):
    # worker-comfyui's convention names the bucket in the endpoint's host. Addressed
    # path-style, the key would become outs/runs/... inside the bucket, outside BUCKET_PREFIX.
    # A bucket with dots in its name goes path-style to the region's host instead.
    env = {
        "BUCKET_ENDPOINT_URL": f"https://{host}.s3.eu-west-1.amazonaws.com",
        "BUCKET_ACCESS_KEY_ID": "testing",
        "BUCKET_SECRET_ACCESS_KEY": "test-secret",
        "BUCKET_REGION": "eu-west-1",
        "BUCKET_PREFIX": "runs",
    }
    if name:
        env["BUCKET_NAME"] = name
    bucket = Config.from_env(env).bucket
    assert bucket is not None
    uploader = BucketUploader(bucket)
    sent: list[str] = []

    def capture(request, **_):
        # botocore built the real request: answer it here instead of the network
        from botocore.awsrequest import AWSResponse

        class Body:
            def stream(self, **_):
                return iter([b""])

        sent.append(request.url)
        return AWSResponse(request.url, 200, {"ETag": '"0"'}, Body())

    uploader.client.meta.events.register("before-send.s3.PutObject", capture)
    entry = uploader.upload(
        OutputFile("9", "images", "img_00001_.png", "job-1", "output"), b"x", "j1", "job-1"
    )
    expected += "/j1/img_00001_.png"
    assert sent == [expected]
    assert entry["data"].startswith(expected + "?")


def test_a_large_output_is_streamed_to_the_bucket_in_parts(s3):
    import hashlib
    import tempfile

    s3.client().create_bucket(Bucket="large")
    uploader = BucketUploader(
        BucketConfig(
            endpoint_url=s3.endpoint,
            bucket="large",
            access_key_id="testing",
            secret_access_key="test-secret",
            region="us-east-1",
            prefix="runs",
            url_expires=60,
        )
    )
    # over the worker's in-memory spool and boto3's multipart threshold (8 MiB)
    data = hashlib.sha256(b"seed").digest() * (20 * 2**20 // 32)
    with tempfile.SpooledTemporaryFile(max_size=1 << 20) as body:
        body.write(data)
        entry = uploader.upload(
            OutputFile("9", "videos", "v_00001.mp4", "job-1", "output"), body, "j2", "job-1"
        )
    got = requests.get(entry["data"], timeout=30)
    assert got.headers["Content-Type"] == "video/mp4"
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(data).digest()
    head = s3.client().head_object(Bucket="large", Key="runs/j2/v_00001.mp4")
    assert "-" in head["ETag"]  # a multipart upload's ETag: the parts went one by one


def test_a_jobs_outputs_hold_at_most_16_mib_of_the_workers_memory(tmp_path):
    # A job bound for the bucket may save many large files; all are read (the black-frame
    # guard sees every one before any is uploaded), but past 16 MiB in all they wait on disk.
    import contextlib
    import os
    import tracemalloc
    from types import SimpleNamespace

    from support.fake_comfyui import FakeComfy

    from worker import rp_handler
    from worker.comfy.client import ComfyClient

    fake = FakeComfy(tmp_path / "comfyui")
    client = ComfyClient(fake.url)
    try:
        folder = fake.dir / "output" / "job-x"
        folder.mkdir(parents=True)
        files = []
        for n in range(6):  # 6 x 6 MiB: 36 MiB read, each output under the 16 MiB spool size
            name = f"frames_{n:05}.bin"
            (folder / name).write_bytes(os.urandom(6 << 20))
            files.append(OutputFile("9", "files", name, "job-x", "output"))
        rt = SimpleNamespace(
            client=client, uploader=object(), config=SimpleNamespace(max_inline_bytes=10_000_000)
        )
        tracemalloc.start()
        try:
            with contextlib.ExitStack() as spools:
                contents = rp_handler._read_outputs(rt, files, spools)
                _, peak = tracemalloc.get_traced_memory()
                assert [body.read() for _, body in contents] == [
                    (folder / f.filename).read_bytes() for f in files
                ]
        finally:
            tracemalloc.stop()
        assert peak < (16 << 20) + (4 << 20), peak  # the budget, one read's chunk, overhead
    finally:
        client.close()
        fake.stop()
