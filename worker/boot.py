"""The boot sequence behind worker/start.sh: verify, start ComfyUI, then serve jobs.

In serverless mode model verification runs in a thread while ComfyUI starts on 127.0.0.1
(ComfyUI loads no weights at start, and only the handler can reach it), the SageAttention
import check runs beside both, and the handler starts only when all three succeeded. In pod
mode ComfyUI listens on every interface for interactive use, so it is started only once the
models are verified: nobody can queue a prompt on an unverified model. Any failure exits
non-zero with every reason printed.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from urllib.parse import quote

from worker import provenance
from worker.comfy.containment import ContainmentUnavailable
from worker.comfy.launch import plan
from worker.comfy.process import (
    ComfyProcess,
    ComfyStartError,
    finish_sage_check,
    start_sage_check,
)
from worker.comfy.user import ComfyUserError, check_code_read_only, prepare_folders, resolve
from worker.config import Config, ConfigError
from worker.model_paths import with_model_paths
from worker.model_warm import warm
from worker.models_check import ModelCheck, check_models
from worker.policy.classes import ClassPolicy, ClassTableError

log = logging.getLogger("worker")


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[worker] %(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _preload() -> None:
    # The RunPod SDK (and its FastAPI server) take seconds to import: do it while ComfyUI
    # starts instead of after. So does everything else that only the handler needs.
    import worker.rp_handler  # noqa: F401

    if "--rp_serve_api" in sys.argv:
        import runpod.serverless.modules.rp_fastapi  # noqa: F401

        # what uvicorn would import lazily when it starts serving
        for name in (
            "uvicorn.loops.auto",
            "uvicorn.protocols.http.auto",
            "uvicorn.protocols.websockets.auto",
            "uvicorn.lifespan.on",
        ):
            with contextlib.suppress(ImportError):
                importlib.import_module(name)


def main() -> int:
    started = time.monotonic()
    _setup_logging()
    # The SDK logs every job's full output at its default level (DEBUG): base64 outputs would
    # be formatted and written twice per job.
    os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")
    try:
        config = with_model_paths(Config.from_env())
    except ConfigError as exc:
        log.error("configuration: %s", exc)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    log.info(
        "mode %s, ComfyUI in %s on %s:%d, models %s, SageAttention %s",
        config.mode,
        config.comfyui_dir,
        config.listen,
        config.comfyui_port,
        config.model_verify,
        "on" if config.sage_attention else "off",
    )
    log.info("provenance: %s", provenance.describe(provenance.load()))
    if not (config.comfyui_dir / "main.py").is_file():
        log.error(
            "no ComfyUI at %s (COMFYUI_DIR): %s/main.py does not exist",
            config.comfyui_dir,
            config.comfyui_dir,
        )
        return 1
    try:
        user = resolve(config.comfyui_user)
        if user is not None:
            check_code_read_only(config.comfyui_dir, user)
            prepare_folders(config.comfyui_dir, user)
    except (ComfyUserError, OSError) as exc:
        log.error("ComfyUI's user: %s", exc)
        return 2 if isinstance(exc, ComfyUserError) else 1
    private = Path(tempfile.mkdtemp(prefix="comfy-bake-run-"))
    private.chmod(0o755)  # ComfyUI's user reaches its folders inside (worker.comfy.launch)
    try:
        setup = plan(config, user, private)
    except ContainmentUnavailable as exc:
        log.error("containment: %s", exc)
        return 2
    log.info("containment: %s", setup.contained)
    try:
        classes = ClassPolicy.load(
            config.node_classes_file,
            everything=config.node_classes == "all",
            by_name=config.allow_node_classes,
            code=config.allow_code_nodes,
        )
    except ClassTableError as exc:
        log.error("node classes: %s", exc)
        return 2

    checked: list[ModelCheck] = []

    def verify() -> None:
        try:
            checked.append(check_models(config))
        except Exception as exc:  # a crash in verification must still stop the boot
            log.exception("model verification crashed")
            checked.append(ModelCheck(ok=False, errors=[f"verification crashed: {exc}"]))
            return
        if config.model_warm and checked[0].ok:
            # the files the check did not read, into the page cache while ComfyUI starts
            warm(checked[0].unread_paths)

    verifier = threading.Thread(target=verify, name="verify-models", daemon=True)
    verifier.start()
    sage_check = start_sage_check(config, user, setup)
    comfy = ComfyProcess(config, sage=config.sage_attention, user=user, setup=setup)
    preload = threading.Thread(target=_preload, name="preload", daemon=True)
    try:  # from here on, whatever ends the boot (SIGTERM included) stops both children
        if config.mode == "pod":
            verifier.join()  # ComfyUI will be reachable from outside: verified models only
            if not _models_ok(checked[0]):
                return 1
        comfy.start()
        if config.mode == "serverless":
            preload.start()
        sage_problem = finish_sage_check(sage_check, config.comfyui_python, config.start_timeout)
        if sage_problem:
            log.error("%s", sage_problem)
            return 1
        try:
            comfy_seconds = comfy.wait_ready()
            comfy.check_guarded()
        except ComfyStartError as exc:
            log.error("%s", exc)
            return 1
        verifier.join()
        check = checked[0]
        if config.mode != "pod" and not _models_ok(check):
            return 1
        log.info(
            "ready in %.2f s (ComfyUI answered after %.2f s, model verification %.2f s)",
            time.monotonic() - started,
            comfy_seconds,
            check.seconds,
        )
        if config.mode == "pod":
            return _supervise(comfy)
        preload.join()
        return _serve(config, comfy, check, classes, setup.contained)
    finally:
        if sage_check is not None and sage_check.poll() is None:
            sage_check.kill()
            sage_check.wait()
        comfy.close()


def _models_ok(check: ModelCheck) -> bool:
    for line in check.warnings:
        log.warning("models: %s", line)
    if not check.ok:
        log.error("model verification failed; no job will run on these files:")
        for line in check.errors:
            log.error("  %s", line)
        return False
    log.info(
        "models: %d verified (%.1f MiB hashed in %.2f s)",
        check.verified,
        check.hashed_bytes / 2**20,
        check.seconds,
    )
    return True


def _serve(
    config: Config,
    comfy: ComfyProcess,
    models: ModelCheck,
    classes: ClassPolicy,
    contained: str,
) -> int:
    from worker import rp_handler
    from worker.comfy.client import ComfyClient, ComfyError
    from worker.job_files import BootFiles
    from worker.outputs import BucketUploader
    from worker.policy.extras import vhs_extra_inputs
    from worker.policy.inputs import InputChecker
    from worker.policy.models import combo_inputs
    from worker.policy.paths import FILE_NAMES

    client = ComfyClient(
        config.comfyui_url,
        alive=comfy.alive,
        reconnect_timeout=config.ws_reconnect_timeout,
        headers=comfy.auth_headers,
    )
    try:
        client.ensure_connected()
    except ComfyError as exc:
        log.error(
            "ComfyUI answers HTTP but its websocket did not open within %.0f s "
            "(WEBSOCKET_RECONNECT_TIMEOUT): %s",
            config.ws_reconnect_timeout,
            exc,
        )
        return 1
    uploader = BucketUploader(config.bucket) if config.bucket else None
    # Read once, before the first job: what every class declares, for the input checks
    object_info = client.get_json("/object_info")
    log.info("node classes: %s", classes.summary(object_info))
    checker = InputChecker(
        object_info,
        refresh=lambda c: client.get_json(f"/object_info/{quote(c, safe='')}").get(c),
        extra_inputs=vhs_extra_inputs(object_info),
        file_names=frozenset(FILE_NAMES),
    )
    runtime = rp_handler.Runtime(config, comfy, client, uploader, models)
    runtime.classes = classes
    runtime.checker = checker
    runtime.boot_files = BootFiles.take(config.comfyui_dir)
    runtime.contained = contained
    runtime.combos = combo_inputs(object_info)
    rp_handler.install(runtime)
    rp_handler.serve()
    return 0


def _supervise(comfy: ComfyProcess) -> int:
    """Pod mode: keep ComfyUI up for interactive use until the worker is told to stop."""
    log.info("pod mode: ComfyUI is served on %s:%d", comfy.config.listen, comfy.config.comfyui_port)
    while True:
        assert comfy.proc is not None
        code = comfy.proc.wait()
        log.warning(
            "ComfyUI exited with code %s; restarting it. Its last log lines:\n%s",
            code,
            comfy.tail(),
        )
        time.sleep(min(30, 2 ** min(comfy.restarts, 5)))
        try:
            comfy.restart()
        except ComfyStartError as exc:
            log.error("%s", exc)
