"""What RunPod's SIGTERM does to the worker, through the SDK's production loop.

RunPod sends SIGTERM when it takes a worker away and kills it some seconds later. Each test
starts a worker as the image does (no SDK arguments, RunPod's job API stood in on loopback,
the fake ComfyUI behind it), signals it as RunPod would, and asserts what the client gets
through job-done and that nothing outlives the worker. See worker/shutdown.py.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fake_comfyui import stub_models
from support.fake_comfyui.runner import WorkerProcess, pid_alive
from support.runpod_api import RunPodAPI
from support.runpod_jobs import invert_job, pixel, wait_running

pytestmark = pytest.mark.slow


@pytest.fixture
def api() -> Iterator[RunPodAPI]:
    # RunPod holds job-take and job-stop open for a long time when it has nothing to say
    with RunPodAPI(take_hold=60, stop_hold=60) as stand_in:
        yield stand_in


@pytest.fixture
def make_worker(tmp_path, api) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def make(grace: float) -> WorkerProcess:
        w = WorkerProcess(
            tmp_path / f"w{len(started)}",
            runpod_api=api,
            env={"SHUTDOWN_GRACE": str(grace), "JOB_TIMEOUT": "60", "INTERRUPT_GRACE": "5"},
        )
        started.append(w)  # before it starts: stopped by the fixture whatever happens next
        stub_models(w.comfyui_dir)
        w.start()
        w.wait_ready()
        return w

    yield make
    for w in started:
        w.stop()


def sigterm(w: WorkerProcess) -> float:
    assert w.proc is not None
    w.proc.send_signal(signal.SIGTERM)
    return time.monotonic()


def assert_gone(w: WorkerProcess, comfy: int | None, timeout: float = 15) -> int:
    """The worker exited by itself, and ComfyUI with it; returns the worker's exit code."""
    code = w.wait_exit(timeout)
    assert comfy is not None and not pid_alive(comfy), "ComfyUI outlived the worker"
    return code


def comfyuis_in(comfyui_dir: Path) -> list[int]:
    """The processes running in `comfyui_dir` (as ComfyUI does): after the worker, none."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cwd").resolve() == comfyui_dir.resolve():
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to look at
            continue
    return found


def test_an_idle_worker_stops_at_once_and_takes_no_job_after_sigterm(api, make_worker):
    w = make_worker(grace=5)
    comfy = w.comfy_pid()
    signalled = sigterm(w)
    time.sleep(0.3)
    # A job RunPod routes here now would be handed over by the SDK's job-take long-poll,
    # still held open, and never run: the worker has let go of that poll.
    late = api.queue(invert_job())
    assert assert_gone(w, comfy) == 0
    assert time.monotonic() - signalled < 5  # not once the long-poll returns
    assert api.taken(late) == 0
    assert "SIGTERM: no job is running; stopping" in w.log()


def test_a_job_that_finishes_within_the_grace_posts_its_result(api, make_worker):
    w = make_worker(grace=30)
    comfy = w.comfy_pid()
    job = api.queue(invert_job(hang=True))
    wait_running(w)
    sigterm(w)
    queued_after = api.queue(invert_job())  # RunPod may still route a job here
    time.sleep(0.5)
    w.comfy_post("/fake/release", timeout=5)  # the job's last node finishes
    body = api.result(job, timeout=15)
    assert set(body) == {"output"}, body
    assert pixel(body["output"]) == (245, 55, 225)
    assert assert_gone(w, comfy) == 0
    assert api.taken(queued_after) == 0  # left for another worker


def test_a_job_past_the_grace_fails_saying_why_and_its_prompt_is_stopped(api, make_worker):
    w = make_worker(grace=1)
    comfy = w.comfy_pid()
    job = api.queue(invert_job(hang=True))
    wait_running(w)
    signalled = sigterm(w)
    body = api.result(job, timeout=15)
    posted = time.monotonic() - signalled
    assert set(body) == {"error"}, body
    assert body["error"] == (
        "the worker is shutting down (RunPod sent SIGTERM) and the job did not finish within "
        "1 s of it (SHUTDOWN_GRACE=1); its prompt was stopped. Send the job again: another "
        "worker will run it."
    )
    assert 1 <= posted < 5, posted  # the grace, then at once: inside a 10 s kill
    assert assert_gone(w, comfy) == 0
    assert len(api.done_attempts(job)) == 1


def test_a_cancel_during_the_grace_stops_the_job(api, make_worker):
    w = make_worker(grace=60)
    comfy = w.comfy_pid()
    job = api.queue(invert_job(hang=True))
    wait_running(w)
    sigterm(w)
    time.sleep(1)  # the SDK's own stop poll has ended by now
    api.stop(job)
    stopped = time.monotonic()
    # the prompt is stopped and the worker exits: long before the 60 s grace would end it
    assert assert_gone(w, comfy) == 0
    assert time.monotonic() - stopped < 5
    assert api.done_attempts(job) == []  # as any cancel: RunPod already knows
    # Ours or the SDK's: a stop long-poll the SDK had in flight at SIGTERM may still deliver it
    # (on a loaded machine); either way the job is cancelled, not run on or posted.
    log = w.log()
    assert f"job {job} was stopped by RunPod during the shutdown" in log or "Job stopped." in log


def test_a_second_sigterm_stops_the_job_at_once(api, make_worker):
    w = make_worker(grace=600)
    comfy = w.comfy_pid()
    job = api.queue(invert_job(hang=True))
    wait_running(w)
    sigterm(w)
    time.sleep(0.5)
    again = sigterm(w)
    body = api.result(job, timeout=15)
    assert time.monotonic() - again < 5
    assert body["error"].startswith("the worker is shutting down (RunPod sent SIGTERM)")
    assert assert_gone(w, comfy) == 0


def test_a_prompt_that_will_not_stop_does_not_hold_back_the_error_or_the_exit(api, make_worker):
    # A node that ignores ComfyUI's interrupt: the job's thread would wait INTERRUPT_GRACE (5 s)
    # and then restart ComfyUI. The error goes out STOP_WAIT (2 s) after the grace instead,
    # and the worker leaves with ComfyUI stopped and no second ComfyUI started behind it.
    w = make_worker(grace=1)
    comfy = w.comfy_pid()
    job = invert_job(hang=True)
    job["workflow"]["4"]["class_type"] = "FakeIgnoreInterrupt"
    job["workflow"]["4"]["inputs"]["seconds"] = 60
    queued = api.queue(job)
    wait_running(w)
    signalled = sigterm(w)
    body = api.result(queued, timeout=15)
    posted = time.monotonic() - signalled
    assert body["error"].startswith("the worker is shutting down (RunPod sent SIGTERM)"), body
    assert 3 <= posted < 5.5, posted  # grace + STOP_WAIT, not grace + INTERRUPT_GRACE + restart
    assert assert_gone(w, comfy) == 0
    assert comfyuis_in(w.comfyui_dir) == []  # not even one the job's thread restarted


def test_the_bounded_stop_waits_for_the_jobs_thread_not_for_a_slow_interrupt(monkeypatch):
    # A job that finishes while its prompt is being stopped keeps its result even when ComfyUI
    # is slow to answer the interrupt (the handler posts the result when the stop returns True).
    import asyncio
    from types import SimpleNamespace

    from worker import rp_handler
    from worker.comfy.client import CancelToken

    class SlowInterrupt:
        def interrupt_now(self, prompt_id: str) -> None:
            time.sleep(3)

    monkeypatch.setattr(rp_handler, "_runtime", SimpleNamespace(client=SlowInterrupt()))

    def job() -> dict[str, Any]:
        time.sleep(0.2)
        return {"images": ["ok"]}

    async def stop() -> tuple[bool, float]:
        cancel = CancelToken()
        cancel.prompt_id = "p1"
        work = asyncio.ensure_future(asyncio.to_thread(job))
        started = time.monotonic()
        stopped = await rp_handler._stop_prompt(work, cancel, limit=2.0)
        return stopped, time.monotonic() - started

    stopped, took = asyncio.run(stop())
    assert stopped is True
    assert took < 1.5, took
