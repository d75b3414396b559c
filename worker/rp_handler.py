"""The RunPod handler: one serverless job in, one ComfyUI prompt run, its outputs back.

`serve()` is started by the boot sequence (worker/__main__.py) once the models are verified
and ComfyUI answers; it hands `handler` to `runpod.serverless.start`.

`handler` is a coroutine: RunPod's SDK runs it as an asyncio task and stops a job (the user's
/cancel, the endpoint's execution timeout) by cancelling that task. The blocking ComfyUI work
runs on a thread (`run_job`), so the SDK's event loop stays free to receive the stop signal,
and the cancellation reaches `handler`, which stops the prompt before it lets the job go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import runpod

from worker import provenance
from worker.black_frames import BLACK_OUTPUT_MESSAGE, output_is_black
from worker.comfy.client import (
    CancelToken,
    ComfyClient,
    ComfyError,
    ComfyGone,
    ComfyStuck,
    JobTimeout,
)
from worker.comfy.process import ComfyProcess, ComfyStartError
from worker.config import Config
from worker.image_fetch import fetch_image
from worker.job_files import BootFiles, remove
from worker.job_input import (
    JobInputError,
    JobSpec,
    check_output_prefixes,
    parse_job_input,
    rename_references,
    scope_outputs,
)
from worker.model_paths import search_dirs
from worker.models_check import ModelCheck
from worker.outputs import (
    RESULT_KEYS,
    BucketUploader,
    OutputError,
    OutputFile,
    base64_size,
    check_response_size,
    collect_outputs,
    inline_entry,
    raw_budget,
    too_large,
)
from worker.policy.classes import ClassPolicy, ClassPolicyError
from worker.policy.inputs import InputChecker, InputError, is_link
from worker.policy.models import (
    EMBEDDINGS_FOLDER,
    ModelPolicyError,
    VerifiedModels,
    combo_inputs,
    enforce,
    linked_text_uses,
    model_uses,
    node_checkpoint_uses,
)
from worker.policy.paths import FILE_NAMES, PathInputError, check_file_names, confine_paths
from worker.shutdown import STOP_WAIT, Shutdown, StopPoll

log = logging.getLogger("worker")


@dataclass
class Runtime:
    config: Config
    comfy: ComfyProcess
    client: ComfyClient
    uploader: BucketUploader | None = None
    models: ModelCheck | None = None  # what the boot verified, for the model policy
    classes: ClassPolicy | None = None  # None: every class (unit tests that build a Runtime)
    checker: InputChecker | None = None  # the inputs against /object_info, made at boot
    boot_files: BootFiles | None = None  # input/, output/, temp/ as the boot found them
    contained: str = ""  # what contains ComfyUI, as the boot log said it
    # a restart after a crash runs once the crashed job's result is out; the next job waits
    restarting: threading.Thread | None = None
    restart_failure: dict[str, Any] | None = None
    # ComfyUI's combo inputs and model folders, read from it at the first job that needs them
    combos: dict[str, frozenset[str]] | None = None
    folders: list[str] | None = None
    model_dirs: dict[str, list[Path]] | None = None  # from the extra-model-paths file, once


_runtime: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime


class _Progress:
    """Forwards ComfyUI's `progress` messages as RunPod progress updates, at most one per
    PROGRESS_INTERVAL (each update is an HTTP call) and always the last step of a node."""

    def __init__(self, job: dict[str, Any], spec: JobSpec, interval: float):
        self.job = job
        self.prompt = spec.prompt
        self.titles = spec.titles
        self.interval = interval
        self.last = 0.0
        # Only RunPod's job-done webhook receives these; without it there is no one to tell.
        self.enabled = bool(os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"))

    def __call__(self, node: str, value: int, maximum: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < self.interval and value < maximum):
            return
        self.last = now
        runpod.serverless.progress_update(
            self.job,
            {
                "node": node,
                "class_type": self.prompt.get(node, {}).get("class_type"),
                "title": self.titles.get(node),
                "step": value,
                "max": maximum,
            },
        )


async def handler(job: dict[str, Any]) -> dict[str, Any]:
    """One job, as RunPod's SDK runs it. Cancelled, it stops the job's prompt (interrupt and
    queue deletion at once), waits until the job's thread has let go of ComfyUI (the prompt
    stopped, the job's folders queued for removal; ComfyUI restarted if the prompt would not
    stop), then re-raises CancelledError: the next job starts on an idle ComfyUI.

    When the worker is shutting down (worker.shutdown), the job ends the same way if RunPod
    cancels it, and past SHUTDOWN_GRACE it is stopped and fails with an error saying why."""
    cancel = CancelToken()
    job_id = str(job.get("id"))
    work = asyncio.ensure_future(asyncio.to_thread(run_job, job, cancel))
    stopping = asyncio.ensure_future(_shutdown.stopping(job_id))
    try:
        # asyncio.wait, unlike awaiting the task, leaves `work` running when this is cancelled
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        log.warning("job %s was stopped by RunPod; stopping its prompt", job_id)
        # during a shutdown no next job needs an idle ComfyUI: the wait is bounded as below
        await _stop_prompt(work, cancel, limit=STOP_WAIT if _shutdown.requested else None)
        raise
    finally:
        stopping.cancel()
    if work.done():
        return work.result()
    reason = stopping.result()
    if reason == "cancel":
        log.warning("job %s was stopped by RunPod during the shutdown; stopping its prompt", job_id)
        await _stop_prompt(work, cancel, limit=STOP_WAIT)
        raise asyncio.CancelledError  # as the SDK's own stop: RunPod already knows
    log.warning("job %s: stopping its prompt, the worker is shutting down", job_id)
    if not await _stop_prompt(work, cancel, limit=STOP_WAIT):
        log.warning(
            "job %s still holds ComfyUI %g s after the stop; posting its error", job_id, STOP_WAIT
        )
    elif work.exception() is None and "error" not in work.result():
        return work.result()  # it finished while it was being stopped: the result stands
    grace = _shutdown.grace
    why = (
        "a second SIGTERM came before the job finished"
        if reason == "second-sigterm"
        else f"the job did not finish within {grace:g} s of it (SHUTDOWN_GRACE={grace:g})"
    )
    return {
        "error": (
            f"the worker is shutting down (RunPod sent SIGTERM) and {why}; its prompt was "
            "stopped. Send the job again: another worker will run it."
        )
    }


async def _stop_prompt(
    work: asyncio.Future[Any], cancel: CancelToken, limit: float | None = None
) -> bool:
    """Stops the job's prompt and waits until its thread has let go of ComfyUI; whether it
    did. With `limit`, at most that many seconds, and only for the job's thread (the interrupt
    call, if still going, finishes on its own)."""
    cancel.cancel()
    pending = {work}
    rt = _runtime
    if cancel.prompt_id is not None and rt is not None:
        # Not left to the job's thread: it may be inside a blocking call right now.
        pending.add(
            asyncio.ensure_future(asyncio.to_thread(rt.client.interrupt_now, cancel.prompt_id))
        )
    loop = asyncio.get_running_loop()
    deadline = None if limit is None else loop.time() + limit
    while not (work.done() if deadline is not None else all(t.done() for t in pending)):
        timeout = None if deadline is None else deadline - loop.time()
        if timeout is not None and timeout <= 0:
            return False
        try:  # a second stop signal for the same job must not cut this wait short
            waiting = {task for task in pending if not task.done()}
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            continue
    return True


def run_job(job: dict[str, Any], cancel: CancelToken | None = None) -> dict[str, Any]:
    """The blocking part of a job: its input checked, its prompt run, its outputs returned."""
    rt = _runtime
    if rt is None:
        return {"error": "the worker is not initialised (start it with worker/start.sh)"}
    started = time.perf_counter()
    try:
        spec = parse_job_input(
            job.get("input"),
            workflows_dir=rt.config.workflows_dir,
            allow_raw=rt.config.allow_raw_workflows,
            max_image_bytes=rt.config.max_input_image_bytes,
        )
    except JobInputError as exc:
        return {"error": f"invalid input: {exc}"}
    except Exception as exc:
        log.exception("reading the job input failed unexpectedly")
        return {"error": f"internal error in the worker: {type(exc).__name__}: {exc}"}
    failure = _await_restart(rt)
    if failure is None and not rt.comfy.alive():
        failure = _restart(rt, "ComfyUI was not running when the job arrived")
    if failure is not None:
        return failure
    scope = f"job-{uuid.uuid4().hex[:12]}"
    if rt.boot_files is not None:
        rt.boot_files.begin(scope)
    try:
        return _run(rt, job, spec, scope, started, cancel)
    except (JobInputError, ClassPolicyError, InputError) as exc:
        return {"error": f"invalid input: {exc}"}
    except ComfyGone:
        # The error goes out at once, with the lines ComfyUI logged before it exited; the
        # restart runs after it, and the next job waits for it (_await_restart).
        code = rt.comfy.returncode
        message = (
            f"ComfyUI exited (code {code}) while running the job. Its last log lines:\n"
            f"{rt.comfy.tail()}"
        )
        _restart_later(rt, message)
        return {"error": message + "\nComfyUI is being restarted for the next job."}
    except JobTimeout as exc:
        if not exc.stopped:
            return _restart(rt, str(exc)) or {
                "error": f"{exc}; it did not stop, so ComfyUI was restarted"
            }
        return {"error": str(exc)}
    except ComfyStuck as exc:
        return _restart(rt, str(exc)) or {"error": f"{exc}, so ComfyUI was restarted"}
    except (ComfyError, OutputError) as exc:
        return {"error": str(exc)}
    except Exception as exc:
        log.exception("job failed unexpectedly")
        return {"error": f"internal error in the worker: {type(exc).__name__}: {exc}"}
    finally:
        _cleanup(rt, scope)


def _run(
    rt: Runtime,
    job: dict[str, Any],
    spec: JobSpec,
    scope: str,
    started: float,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    config, client = rt.config, rt.client
    # Every check on the prompt runs before anything is uploaded or queued: the classes, then
    # each input against its class's declaration, giving the values the nodes will get; every
    # later rule reads those.
    titles = spec.titles
    if rt.classes is not None:
        rt.classes.check(spec.prompt, titles, rt.checker.declared if rt.checker else None)
    if rt.checker is not None:
        spec.prompt = rt.checker.normalise(spec.prompt, titles)
    known = None
    if rt.boot_files is not None:
        uploads = {image.name for image in spec.images}
        known = {f: rt.boot_files.names(f) | uploads for f in ("input", "output")}
    try:
        check_output_prefixes(spec.prompt)
        check_file_names(spec.prompt, known)
        confine_paths(
            spec.prompt, config.comfyui_dir / "input" / scope, config.comfyui_dir / "output" / scope
        )
    except PathInputError as exc:
        raise JobInputError(str(exc)) from None
    _check_models(rt, spec)
    renames: dict[str, str] = {}
    for image in spec.images:
        data = image.data
        if data is None:
            assert image.url is not None
            data = fetch_image(
                image.url,
                max_bytes=config.image_url_max_bytes,
                timeout=config.image_url_timeout,
                allow_private=config.image_url_allow_private,
            )
        # A folder per job: a job's inputs never replace files that were there before it
        # (nor another job's), and they leave with the folder.
        renames[image.name] = client.upload_image(image.name, data, subfolder=scope)
    prompt = scope_outputs(rename_references(spec.prompt, renames), scope)
    inputs_done = time.perf_counter()
    result = client.run(
        prompt,
        timeout=config.job_timeout,
        on_progress=_Progress(job, spec, config.progress_interval),
        extra_data=spec.extra_data,
        titles=spec.titles,
        interrupt_grace=config.interrupt_grace,
        cancel=cancel,
    )
    ran = time.perf_counter()
    files = collect_outputs(result.outputs, scope)
    if not files:
        raise OutputError(
            "the workflow finished but saved no output files: it needs a saving "
            "node (SaveImage, VHS_VideoCombine with save_output on, ...)"
        )
    with contextlib.ExitStack() as spools:
        contents = _read_outputs(rt, files, spools)
        if config.black_frame_guard:
            _guard_black(contents, config.black_threshold)
        output: dict[str, Any] = {"images": [], "videos": []}
        for f, body in contents:
            if rt.uploader is not None:
                entry = rt.uploader.upload(f, body, str(job["id"]), job_folder=scope)
            else:
                body.seek(0)
                entry = inline_entry(f, body.read())
            output.setdefault(f.kind, []).append(entry)
    done = time.perf_counter()
    output = {k: output[k] for k in RESULT_KEYS if k in output}
    output["prompt_id"] = result.prompt_id
    output["timings"] = {
        "inputs_ms": round((inputs_done - started) * 1000, 1),
        "comfyui_ms": round((ran - inputs_done) * 1000, 1),
        "outputs_ms": round((done - ran) * 1000, 1),
        "total_ms": round((done - started) * 1000, 1),
    }
    if rt.contained:
        output["containment"] = rt.contained
    if (build := provenance.record()) is not None:
        output["provenance"] = build  # which image served this job (worker/provenance.py)
    # the whole response, not only its files: names, timings and provenance count too
    check_response_size(output, config.max_inline_bytes, bucket=rt.uploader is not None)
    return output


# A job's outputs are held in memory up to this many bytes in all; past it they go to
# temporary files, so a gigabyte video, or a thousand frames, reach the bucket without being
# held whole by the worker (all are read before any is uploaded: the black-frame guard may
# still fail the job).
SPOOL_IN_MEMORY = 16 << 20


def _spool(memory: int) -> BinaryIO:
    """A spool for one output: in memory up to `memory` bytes, else (or past it) on disk."""
    if memory:
        return tempfile.SpooledTemporaryFile(max_size=memory)
    return tempfile.TemporaryFile()


def _read_outputs(
    rt: Runtime, files: list[OutputFile], spools: contextlib.ExitStack
) -> list[tuple[OutputFile, BinaryIO]]:
    """Each output streamed from ComfyUI into a spool file. Without a bucket every byte
    returns inline, so reading stops as soon as the outputs' base64 passes MAX_INLINE_BYTES."""
    limit = rt.config.max_inline_bytes
    inline = rt.uploader is None
    contents: list[tuple[OutputFile, BinaryIO]] = []
    used = 0  # base64 characters of the outputs read so far
    memory = SPOOL_IN_MEMORY  # bytes the next outputs may still hold in memory
    for f in files:
        # closed (and a file on disk removed) when the job's `spools` stack closes
        body = spools.enter_context(_spool(memory))
        allowed = raw_budget(limit - used) if inline else None
        size = rt.client.view_into(f.filename, f.subfolder, f.type, body, allowed)
        if memory and size <= memory:  # still in memory (a spool rolls over once past it)
            memory -= size
        used += base64_size(size)
        if inline and used > limit:
            raise too_large(f"the outputs are more than {used:,} bytes as base64", limit)
        body.seek(0)
        contents.append((f, body))
    return contents


def _check_models(rt: Runtime, spec: JobSpec) -> None:
    """The model policy: see worker.policy.models. ComfyUI's combo inputs are read once;
    its model folders' files on every job (a file may appear after the boot)."""
    config = rt.config
    if rt.combos is None:
        rt.combos = combo_inputs(rt.client.get_json("/object_info"))
    if rt.folders is None:
        rt.folders = [str(f) for f in rt.client.get_json("/models")]
    if rt.model_dirs is None:
        rt.model_dirs = search_dirs(config.comfyui_dir, config.extra_model_paths)
    check = rt.models or ModelCheck()
    verified = VerifiedModels(check.locked_dests, check.verified_paths, check.identities)
    uses = model_uses(
        spec.prompt,
        combos=rt.combos,
        folders=rt.folders,
        list_folder=lambda folder: rt.client.get_json(f"/models/{folder}"),
        dirs=rt.model_dirs,
        verified=verified,
        skip=FILE_NAMES,
    )
    uses += node_checkpoint_uses(spec.prompt, config.comfyui_dir, verified)
    if rt.checker is not None and (text_inputs := _linked_text(rt, spec.prompt)):
        listed = rt.client.get_json(f"/models/{EMBEDDINGS_FOLDER}")
        dirs = rt.model_dirs.get(EMBEDDINGS_FOLDER, [])
        unverified = [f for f in listed if verified.check(EMBEDDINGS_FOLDER, f, dirs)]
        uses += linked_text_uses(spec.prompt, text_inputs, unverified)
    try:
        enforce(uses, config.model_policy, spec.titles)
    except ModelPolicyError as exc:
        raise JobInputError(str(exc)) from None


def _linked_text(rt: Runtime, prompt: dict[str, Any]) -> dict[str, frozenset[str]]:
    """Class -> its STRING inputs, for the prompt's classes that take a CLIP (text encoders)
    and get one of those texts through a link; empty when none does."""
    assert rt.checker is not None
    found: dict[str, frozenset[str]] = {}
    for node in prompt.values():
        declared = rt.checker.declared.get(node["class_type"], {})
        if not any(entry[0] == "CLIP" for entry in declared.values()):
            continue
        texts = frozenset(n for n, entry in declared.items() if entry[0] == "STRING")
        if any(n in texts and is_link(v) for n, v in node.get("inputs", {}).items()):
            found[node["class_type"]] = texts
    return found


def _guard_black(contents: list[tuple[OutputFile, BinaryIO]], threshold: int) -> None:
    for f, data in contents:
        if f.kind in ("images", "videos") and output_is_black(data, f.filename, threshold):
            raise OutputError(BLACK_OUTPUT_MESSAGE.format(name=f.filename))


def _restart(rt: Runtime, why: str) -> dict[str, Any] | None:
    """Restart ComfyUI; None when it is back, else a result that asks RunPod for a new worker."""
    log.warning("%s; restarting ComfyUI", why.splitlines()[0])
    try:
        rt.comfy.restart()
    except ComfyStartError as exc:
        log.error("ComfyUI did not come back: %s", exc)
        return {
            "error": f"{why}\nComfyUI could not be restarted ({exc}); this worker is being "
            "replaced.",
            "refresh_worker": True,
        }
    rt.client.ws = None  # the old socket belonged to the dead process
    return None


def _restart_later(rt: Runtime, why: str) -> None:
    """Restart ComfyUI on a thread of its own, so the job's error is not held back for it."""

    def restart() -> None:
        rt.restart_failure = _restart(rt, why)

    rt.restarting = threading.Thread(target=restart, name="restart-comfyui", daemon=True)
    rt.restarting.start()


def _await_restart(rt: Runtime) -> dict[str, Any] | None:
    """Wait for a restart a previous job left running; a result that asks RunPod for a new
    worker when it failed, else None."""
    if rt.restarting is None:
        return None
    rt.restarting.join()
    rt.restarting = None
    failure, rt.restart_failure = rt.restart_failure, None
    return failure


_cleanups: queue.Queue[Path] = queue.Queue()


def _cleanup(rt: Runtime, scope: str) -> None:
    """Once the job's result is built: remove its input, output and temp folders, and, when no
    other job runs, whatever else it left in them (worker.job_files).

    The removal (a walk and rmdirs) runs on a background thread instead of delaying the
    response; until then nothing of it can be loaded (a job loads only its own uploads and the
    files the boot found).
    """
    if rt.boot_files is not None:
        paths = rt.boot_files.end(scope)
    else:
        paths = [rt.config.comfyui_dir / kind / scope for kind in ("input", "output", "temp")]
    for path in paths:
        _cleanups.put(path)


def _remove_folders() -> None:
    while True:
        remove(_cleanups.get())
        _cleanups.task_done()


threading.Thread(target=_remove_folders, name="remove-job-outputs", daemon=True).start()


def _jobs_running() -> int:
    from runpod.serverless.modules.worker_state import JobsProgress

    return JobsProgress().get_job_count()


def _stop_poll() -> StopPoll | None:
    from runpod.serverless.modules import rp_job

    return rp_job.get_stop_signals if rp_job._job_stop_url() else None


_shutdown = Shutdown(grace=0.0, jobs_running=lambda: 0)


def _on_loop(concurrency: int) -> int:
    # The SDK calls its concurrency modifier on its event loop, first thing and after it set
    # its own SIGTERM handler: the one place to chain onto that handler (worker.shutdown).
    _shutdown.install()
    return concurrency


# How long the normal exit (the SDK's tasks cancelled, its threads joined, ComfyUI stopped by
# the boot) may take before the worker leaves without it.
EXIT_WAIT = 3.0


def _exit_guard() -> None:
    """Called as the shutdown leaves the SDK's loop: if the worker is still here EXIT_WAIT
    seconds later (a job thread stuck in a blocking call holds asyncio's and the interpreter's
    joins), ComfyUI is stopped, and never restarted by a thread still running, the SDK's ping
    process is ended, the log flushed, and the process exits without unwinding further."""

    def exit_later() -> None:
        time.sleep(EXIT_WAIT)
        log.warning(
            "the exit took over %g s (a thread that does not end, or ComfyUI slow to stop); "
            "stopping ComfyUI and leaving",
            EXIT_WAIT,
        )
        if _runtime is not None:
            _runtime.comfy.close()
        for child in multiprocessing.active_children():
            child.terminate()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    threading.Thread(target=exit_later, name="exit-guard", daemon=True).start()


def serve() -> None:
    global _shutdown
    grace = _runtime.config.shutdown_grace if _runtime is not None else 0.0
    _shutdown = Shutdown(
        grace=grace, jobs_running=_jobs_running, stop_poll=_stop_poll(), on_exit=_exit_guard
    )
    runpod.serverless.start({"handler": handler, "concurrency_modifier": _on_loop})
