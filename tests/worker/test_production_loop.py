"""Jobs through the loop the worker runs in production: RunPod's job API -> the SDK -> the worker.

On RunPod the SDK serves no API: it long-polls job-take for a job, posts the result (and every
progress update) to job-done, long-polls the stop channel, and pings from a process of its own.
Here `worker/start.sh` runs without SDK arguments, exactly as the image's entry point does, with
RunPod's variables pointing at a stand-in for that API on loopback (tests/support/runpod_api.py)
and the fake ComfyUI behind it. Each test is a job a client sent; what it asserts is what the
client gets back through RunPod.

One worker serves the module; every test that fails a job then runs a good one, so a failure
that poisons the worker fails a test.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from runpod.version import __version__ as runpod_version
from support.fake_comfyui import stub_models
from support.fake_comfyui.runner import REPO, WorkerProcess, pid_alive
from support.runpod_api import CLIENT_GONE, RunPodAPI
from support.runpod_jobs import comfy_queue, invert_job, pixel, wait_running

pytestmark = pytest.mark.slow

JOB_TIMEOUT = 30  # far above what any job here takes: a failure "at once" is not the timeout


@pytest.fixture(scope="module")
def api() -> Iterator[RunPodAPI]:
    with RunPodAPI() as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, api: RunPodAPI) -> Iterator[WorkerProcess]:
    w = WorkerProcess(
        tmp_path_factory.mktemp("production-loop"),
        runpod_api=api,
        env={
            "JOB_TIMEOUT": str(JOB_TIMEOUT),
            "INTERRUPT_GRACE": "5",
            "PROGRESS_INTERVAL": "0",
            "FAKE_COMFYUI_STEP_DELAY": "0.01",
        },
    )
    stub_models(w.comfyui_dir)  # the Wan workflow's model files, as the fake lists them
    w.start()
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()


def run_ok(api: RunPodAPI, job_input: dict[str, Any]) -> dict[str, Any]:
    job = api.queue(job_input)
    body = api.result(job)
    assert set(body) == {"output"}, body  # no error, no stopPod
    return body["output"]


def test_each_job_is_taken_once_and_its_result_posted_once(api, worker):
    first = api.queue(invert_job((10, 200, 30)))
    second = api.queue(invert_job((100, 50, 0)))
    assert pixel(api.result(first)["output"]) == (245, 55, 225)
    assert pixel(api.result(second)["output"]) == (155, 205, 255)
    for job in (first, second):
        assert api.taken(job) == 1
        [post] = api.done_attempts(job)
        assert post.status == 200 and post.query["isStream"] == "false"
        assert post.auth == api.api_key
    # One job at a time: the second was taken only once the first's result was out, so it
    # waited in RunPod's queue, where another worker could take it, not in this one
    [take] = api.calls("job-take", second)
    [done] = api.done_attempts(first)
    assert take.at >= done.answered
    assert take.query["job_in_progress"] == "0" and take.auth == api.api_key


def test_progress_updates_are_posted_for_a_job_with_steps(api, worker):
    job_input = json.loads((REPO / "test_input.json").read_text())["input"]
    job = api.queue(job_input)
    [video] = api.result(job)["output"]["videos"]
    assert video["filename"] == "wan_flf_00001.mp4" and video["content_type"] == "video/mp4"
    last_step = {"node": "84", "class_type": "KSamplerAdvanced", "title": "Seed"}
    last_step |= {"step": 10, "max": 10}
    # Each update is posted from a thread of its own: the last may land after the result
    api.wait(lambda: last_step in api.progress(job), 10, "the sampler's last step")
    updates = api.progress(job)
    assert all(set(u) == {"node", "class_type", "title", "step", "max"} for u in updates)
    assert {(u["step"], u["max"]) for u in updates if u["node"] == "84"} == {
        (step, 10) for step in range(1, 11)
    }  # PROGRESS_INTERVAL=0: every step
    assert len(api.done_attempts(job)) == 1  # one result; the updates are not results


def test_a_result_post_that_fails_once_arrives_through_the_sdks_retry(api, worker):
    api.fail_next_done(1)
    job = api.queue(invert_job())
    body = api.result(job, timeout=20)  # the SDK waits 2 s before its second try
    assert pixel(body["output"]) == (245, 55, 225)
    failed, accepted = api.done_attempts(job)
    assert (failed.status, accepted.status) == (500, 200)
    assert failed.body == accepted.body
    run_ok(api, invert_job())  # the worker goes on taking jobs
    assert len(api.done_attempts(job)) == 2


def test_pings_name_the_running_job_and_stop_once_it_is_done(api, worker):
    job = api.queue(invert_job(hang=True))
    api.wait(
        lambda: any(c.query.get("job_id") == job for c in api.calls("ping")),
        10,
        "a ping naming the running job",
    )
    wait_running(worker)
    worker.comfy_post("/fake/release", timeout=5).raise_for_status()
    api.result(job)
    done = api.done_attempts(job)[0].answered
    api.wait(
        lambda: any(c.at > done and "job_id" not in c.query for c in api.calls("ping")),
        10,
        "a ping naming no job after the result",
    )
    pings = api.calls("ping")
    assert all(c.auth == api.api_key for c in pings)
    assert all(c.query["runpod_version"] == runpod_version for c in pings)


def test_a_stopped_job_stops_its_prompt_and_the_next_job_runs(api, worker):
    comfy = worker.comfy_pid()
    job = api.queue(invert_job(hang=True))
    wait_running(worker)
    stopped = time.monotonic()
    api.stop(job)
    deadline = stopped + 5
    while comfy_queue(worker) and time.monotonic() < deadline:
        time.sleep(0.02)
    idle = time.monotonic()
    assert not comfy_queue(worker), "ComfyUI still runs the stopped job's prompt"
    # the SDK polls the stop channel at least once a second; the prompt stops at once
    assert idle - stopped < 3.0, idle - stopped
    [signal_call] = [c for c in api.calls("job-stop") if c.body]
    assert signal_call.body == {"jobsToStop": [job]}
    assert pixel(run_ok(api, invert_job())) == (245, 55, 225)
    assert api.done_attempts(job) == []  # RunPod knows it stopped the job: nothing is posted
    assert worker.comfy_pid() == comfy  # the interrupt was enough: no restart


@pytest.mark.parametrize(
    ("job_input", "expected"),
    [
        (
            {"workflow": "no_such_workflow"},
            "invalid input: unknown workflow 'no_such_workflow'; available: wan_flf_i2v",
        ),
        (
            {**invert_job(), "images": [{"name": "in.png", "image": "%%%"}]},
            "invalid input: input.images[0].image is not valid base64",
        ),
    ],
)
def test_invalid_input_is_one_clear_error(api, worker, job_input, expected):
    job = api.queue(job_input)
    assert api.result(job) == {"error": expected}
    run_ok(api, invert_job())
    assert len(api.done_attempts(job)) == 1


def test_a_workflow_sent_as_a_5_mb_json_string_gets_a_short_error(api, worker):
    # the workflow serialised twice, near RunPod's request limit: what RunPod stores and
    # returns is the posted error, which must not echo the 5 MB back
    workflow = invert_job()
    workflow["workflow"]["1"]["_meta"] = {"title": "x" * 5_000_000}
    text = json.dumps(workflow["workflow"])
    job = api.queue({**workflow, "workflow": text})
    body = api.result(job, timeout=60)
    assert body == {
        "error": (
            f"invalid input: input.workflow is a JSON string ({len(text):,} characters) holding "
            "a workflow: send the workflow as an object, not a JSON string"
        )
    }
    [posted] = api.done_attempts(job)
    assert len(json.dumps(posted.body)) < 300
    run_ok(api, invert_job())


def test_comfyui_killed_mid_job_is_reported_at_once_and_the_next_job_works(api, worker):
    job = api.queue(invert_job(hang=True))
    wait_running(worker)
    comfy = worker.comfy_pid()
    assert comfy is not None
    killed = time.monotonic()
    os.kill(comfy, signal.SIGKILL)  # as the kernel's OOM killer would
    body = api.result(job)
    posted = api.done_attempts(job)[0].at
    assert posted - killed < 5, posted - killed  # not after JOB_TIMEOUT (30 s)
    assert set(body) == {"error"}, body  # ComfyUI came back: the worker is not replaced
    assert body["error"].startswith("ComfyUI exited (code -9) while running the job.")
    assert body["error"].endswith("ComfyUI is being restarted for the next job.")
    assert pixel(run_ok(api, invert_job())) == (245, 55, 225)
    assert worker.comfy_pid() not in (None, comfy)
    assert not pid_alive(comfy)


def test_the_stand_in_hands_no_job_to_a_poll_the_worker_hung_up_on():
    # RunPod holds job-take open; a worker that lets go of it (a shutdown) must not be
    # counted as having taken what arrives next, or a test could not tell it let go
    with RunPodAPI(take_hold=30) as stand_in:
        url = stand_in.env()["RUNPOD_WEBHOOK_GET_JOB"].replace("$ID", stand_in.worker_id)
        with pytest.raises(requests.ReadTimeout):
            requests.get(url + "&job_in_progress=0", timeout=0.3)
        stand_in.wait(lambda: stand_in.arrived("job-take") == 1, 5, "the poll")
        job = stand_in.queue({"workflow": "x"})
        stand_in.wait(lambda: bool(stand_in.calls("job-take")), 5, "the poll to end")
        [abandoned] = stand_in.calls("job-take")
        assert (abandoned.status, abandoned.job_id) == (CLIENT_GONE, None)
        answer = requests.get(url + "&job_in_progress=0", timeout=5)
        assert answer.json() == {"id": job, "input": {"workflow": "x"}}
        assert stand_in.taken(job) == 1
