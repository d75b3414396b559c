"""Builds the real ComfyUI's interpreter before the `real_comfyui` tests run, when any is selected.

The first build on a machine takes minutes (torch, then every node's requirements): done here, once
per session and before any test starts, it is not counted against one test's timeout. A failed
build is remembered and reported by each test of the tier (a skip, or a failure when CI=true).
"""

from __future__ import annotations

import pytest
from support import real_comfyui


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(item.get_closest_marker("real_comfyui") for item in session.items):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        real_comfyui.prepare(reporter.write_line if reporter is not None else print)


@pytest.fixture(scope="session")
def real_worker(tmp_path_factory: pytest.TempPathFactory):
    """One worker (RunPod local API) on one real ComfyUI with VideoHelperSuite and the test
    node pack, shared by the tier: ComfyUI takes seconds to start on the CPU."""
    worker = real_comfyui.worker_process(
        tmp_path_factory.mktemp("real-worker"),
        env={"JOB_TIMEOUT": str(real_comfyui.REAL_JOB_TIMEOUT), "INTERRUPT_GRACE": "3"},
    )
    worker.start()
    try:
        worker.wait_ready(timeout=240)
        yield worker
    finally:
        worker.stop()
