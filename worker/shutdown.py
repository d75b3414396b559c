"""What SIGTERM does once the worker serves jobs: decided here, not inherited from the SDK.

RunPod sends SIGTERM when it takes a worker away (a scale-down, a new release, the host going
away) and kills the container some seconds later; it does not document how many (Docker's
own default for `docker stop` is 10). The SDK's handler (runpod 1.12) only stops taking jobs
and lets the running job go on without limit, and from then on it no longer polls the stop
channel: a cancel sent during that drain is not acted on, and a job longer than the host's
grace is killed with its result lost. With no job running, it waits for its long-polls to
return (up to 90 s), during which job-take may still hand it a job that no one will run.

So, in the SDK's production loop (`install` chains onto its SIGTERM handler):
- no job running: the worker stops at once, and the boot stops ComfyUI;
- a job running: it has SHUTDOWN_GRACE seconds to finish; a cancel for it is honoured (the
  stop channel is polled again); past the grace, or at a second SIGTERM, its prompt is stopped
  and the job fails with an error that says so; the worker stops once its result is posted.

The stop itself is bounded (STOP_WAIT): a prompt that will not stop does not hold the error
back until the host kills the container. The worker then leaves by unwinding (SystemExit out of
the SDK's loop, which closes its long-polls before anything else, so no job is handed over on
a connection nobody reads) with `on_exit` called first: a job thread still inside a blocking
call would otherwise hold that exit (asyncio and the interpreter join their threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any, Literal

log = logging.getLogger("worker")

Reason = Literal["cancel", "grace", "second-sigterm"]

# How long a job stopped by the shutdown may take to let go of ComfyUI before its error is
# posted anyway: inside Docker's default 10 s kill grace together with a short SHUTDOWN_GRACE.
STOP_WAIT = 2.0
StopPoll = Callable[[Any], Awaitable[list[str]]]


class Shutdown:
    """The worker's answer to SIGTERM. `jobs_running` counts the jobs the SDK has taken and not
    yet posted; `stop_poll(session)` long-polls RunPod's stop channel (None: none to poll)."""

    def __init__(
        self,
        grace: float,
        jobs_running: Callable[[], int],
        stop_poll: StopPoll | None = None,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.grace = grace
        self._jobs_running = jobs_running
        self._stop_poll = stop_poll
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._requested: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None
        self._since: float | None = None
        self._exit: asyncio.Task[None] | None = None

    @property
    def requested(self) -> bool:
        return self._since is not None

    def elapsed(self) -> float:
        return 0.0 if self._since is None else time.monotonic() - self._since

    def install(self) -> None:
        """Chain onto the SIGTERM handler in place now. Called on the SDK's event loop, after
        the SDK set its own handler (its JobScaler sets it just before starting the loop), so
        the SDK still learns of the signal and stops taking jobs. Idempotent."""
        if self._loop is not None:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._requested = asyncio.Event()
        self._hurry = asyncio.Event()
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            # Signal handlers run between two bytecodes of the main thread, which may be in
            # the middle of the SDK's loop: the decision runs as a loop callback instead.
            # once the loop has closed, the worker is already on its way out
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_signal)
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, on_sigterm)

    def _on_signal(self) -> None:
        assert self._requested is not None and self._hurry is not None
        if self._since is not None:
            log.warning("a second SIGTERM: the running job is stopped now")
            self._hurry.set()
            return
        self._since = time.monotonic()
        self._requested.set()
        if self._jobs_running():
            log.warning(
                "SIGTERM: taking no more jobs; the running job has %g s (SHUTDOWN_GRACE) to finish",
                self.grace,
            )
        else:
            log.warning("SIGTERM: no job is running; stopping")
        assert self._loop is not None
        self._exit = self._loop.create_task(self._exit_when_idle())

    async def _exit_when_idle(self) -> None:
        # The SDK counts a job until its result is posted: the exit never cuts a post short.
        while self._jobs_running():
            await asyncio.sleep(0.05)
        log.info("stopping: no job left to finish")
        if self._on_exit is not None:
            self._on_exit()  # the worker's own guard on its exit (rp_handler)
        # Out of the SDK's loop (asyncio propagates SystemExit from a task), which cancels its
        # pending long-polls. The SDK's own SIGINT handler exits the same way.
        raise SystemExit(0)

    async def stopping(self, job_id: str) -> Reason:
        """Returns once the shutdown must end the job `job_id`: "cancel" when RunPod's stop
        channel names it, "grace" when SHUTDOWN_GRACE has passed, "second-sigterm" when another
        SIGTERM came first. Without a shutdown it never returns (the caller cancels it when
        the job ends)."""
        if self._requested is None or self._hurry is None:
            await asyncio.Future()  # never set: this worker runs outside the SDK's loop
        assert self._requested is not None and self._hurry is not None
        await self._requested.wait()
        waits: dict[asyncio.Future[Any], Reason] = {
            asyncio.ensure_future(asyncio.sleep(max(0.0, self.grace - self.elapsed()))): "grace",
            asyncio.ensure_future(self._hurry.wait()): "second-sigterm",
        }
        if self._stop_poll is not None:
            waits[asyncio.ensure_future(self._stopped(job_id))] = "cancel"
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        reasons = {waits[task] for task in done}
        # a cancel wins (nothing is posted for it); then whichever came, the grace first
        return next(r for r in ("cancel", "grace", "second-sigterm") if r in reasons)

    async def _stopped(self, job_id: str) -> None:
        """Long-polls the stop channel until it names `job_id`: the SDK stopped polling it."""
        from runpod.http_client import AsyncClientSession

        assert self._stop_poll is not None
        async with AsyncClientSession() as session:
            while True:
                try:
                    ids = await asyncio.wait_for(self._stop_poll(session), timeout=90)
                except Exception as exc:  # a timeout, aiohttp's errors, an HTTP status
                    log.debug("stop channel poll during the shutdown: %s", exc)
                    await asyncio.sleep(0.5)
                    continue
                if job_id in ids:
                    return
                if not ids:
                    await asyncio.sleep(0.2)  # a server that answers at once must not spin us
