"""The nine locked custom nodes in the real ComfyUI, started by the worker as the image starts it.

One worker with every node in nodes.lock.yaml (about 20 s to start on 2 cores) serves both
tests: every locked node imports, and the shipped Wan 2.2 workflow passes the real server's
validation (with zero-byte files where models.lock.yaml puts its models, so it then fails
loading the first of them: what proves the graph, not the weights).
"""

from __future__ import annotations

import json
import re

import pytest
from support import real_comfyui
from support.fake_comfyui.runner import REPO, WorkerProcess

pytestmark = [pytest.mark.real_comfyui, pytest.mark.slow]

# The loaders of the Wan workflow: the job must fail in one of these, at run time.
WAN_LOADERS = ("CLIPLoader", "UNETLoader", "VAELoader")


@pytest.fixture(scope="module")
def all_nodes_worker(tmp_path_factory: pytest.TempPathFactory):
    src, python = real_comfyui.source_and_interpreter()
    tmp = tmp_path_factory.mktemp("real-all-nodes")
    comfyui_dir = real_comfyui.make_comfyui(
        tmp / "comfyui", src, real_comfyui.locked_nodes(), test_nodes=False
    )
    real_comfyui.place_placeholder_models(comfyui_dir)
    worker = WorkerProcess(
        tmp,
        comfyui_dir=comfyui_dir,
        comfyui_python=python,
        env={**real_comfyui.REAL_ENV, "JOB_TIMEOUT": "120"},
    )
    worker.start()
    try:
        worker.wait_ready(timeout=240)
        yield worker
    finally:
        worker.stop()


def test_every_locked_node_imports(all_nodes_worker):
    log = all_nodes_worker.log()
    # ComfyUI's summary once every custom node was loaded:
    #   [comfyui] Import times for custom nodes:
    #   [comfyui]    0.0 seconds: .../custom_nodes/rgthree-comfy
    #   [comfyui]    0.1 seconds (IMPORT FAILED): .../custom_nodes/RES4LYF
    assert "Import times for custom nodes:" in log, log[-4000:]
    imported: dict[str, bool] = {}
    for match in re.finditer(r"\d+\.\d+ seconds( \(IMPORT FAILED\))?: (\S+)", log):
        imported[match.group(2).rstrip("/").rsplit("/", 1)[-1]] = match.group(1) is None
    failed = [name for name in real_comfyui.locked_nodes() if imported.get(name) is False]
    assert failed == [], f"IMPORT FAILED: {failed}\n{log[-6000:]}"
    assert (
        sorted(n for n in real_comfyui.locked_nodes() if n in imported)
        == real_comfyui.locked_nodes()
    )


def test_the_wan_workflow_passes_validation_and_fails_only_loading_the_placeholders(
    all_nodes_worker,
):
    job = json.loads((REPO / "test_input.json").read_text(encoding="utf-8"))["input"]
    answer = all_nodes_worker.runsync(job, timeout=180)
    assert answer["status"] == "FAILED", answer
    error = answer["error"]
    assert not error.startswith("Workflow validation failed"), error
    match = re.match(r"ComfyUI failed while running node (\d+) \"[^\"]+\" \((\w+)\): ", error)
    assert match, error
    assert match.group(2) in WAN_LOADERS, error
