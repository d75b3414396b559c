"""Jobs through the real stack: RunPod's local API (/runsync) -> the worker -> the fake ComfyUI.

One worker serves every test in this module (booting costs seconds); each test checks that the
job after a failure still works, so a failure that poisons the worker fails a test.
"""

from __future__ import annotations

import base64
import io
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image
from support.fake_comfyui import stub_models
from support.fake_comfyui.runner import REPO, WorkerProcess, pid_alive
from support.httpserver import FileServer

INVERT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "t/inv"}},
}


def png(color=(10, 200, 30), size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def graph(
    *extra_nodes: tuple[str, dict], save: str = "SaveImage", source: str = "2", **save_inputs
) -> dict:
    prompt = json.loads(json.dumps(INVERT))
    for nid, node in extra_nodes:
        prompt[nid] = node
    if save == "VHS_VideoCombine":
        prompt["3"] = {
            "class_type": "VHS_VideoCombine",
            "inputs": {
                "images": [source, 0],
                "frame_rate": 8.0,
                "loop_count": 0,
                "filename_prefix": "v",
                "format": "image/gif",
                "pingpong": False,
                "save_output": True,
                **save_inputs,
            },
        }
    else:
        prompt["3"]["inputs"]["images"] = [source, 0]
    return prompt


class ProgressRecorder:
    """Stands in for RunPod's job-output webhook that progress updates are posted to."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                recorder.posts.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/job-done/$ID?gpu=test"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def files():
    with FileServer() as server:
        yield server


@pytest.fixture(scope="module")
def progress():
    recorder = ProgressRecorder()
    yield recorder
    recorder.stop()


@pytest.fixture(scope="module")
def worker(tmp_path_factory, progress):
    tmp = tmp_path_factory.mktemp("jobs")
    w = WorkerProcess(
        tmp,
        env={
            "JOB_TIMEOUT": "4",
            "INTERRUPT_GRACE": "1",
            "MAX_INLINE_BYTES": "400000",
            "IMAGE_URL_MAX_BYTES": "300000",
            "PROGRESS_INTERVAL": "0",
            "FAKE_COMFYUI_STEP_DELAY": "0.01",
            "RUNPOD_WEBHOOK_POST_OUTPUT": progress.url,
        },
    )
    stub_models(w.comfyui_dir)  # the fake, like ComfyUI, lists the files that are there
    w.start()
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()


def run_ok(worker: WorkerProcess, job_input: dict) -> dict:
    answer = worker.runsync(job_input)
    assert answer["status"] == "COMPLETED", answer
    return answer["output"]


def run_error(worker: WorkerProcess, job_input: dict) -> str:
    answer = worker.runsync(job_input)
    assert answer["status"] == "FAILED", answer
    assert isinstance(answer["error"], str)
    return answer["error"]


def leftover_files(root: Path) -> list[str]:
    """Files still in `root` once the worker's background removal has had its moment."""
    deadline = time.monotonic() + 5
    while True:
        try:
            found = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        except FileNotFoundError:  # a folder went away while it was being listed
            continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_image_job_returns_the_inverted_image(worker):
    output = run_ok(
        worker, {"workflow": INVERT, "images": [{"name": "in.png", "image": b64(png())}]}
    )
    [image] = output["images"]
    assert image["filename"] == "inv_00001_.png" and image["type"] == "base64"
    assert image["content_type"] == "image/png"
    with Image.open(io.BytesIO(base64.b64decode(image["data"]))) as img:
        assert img.size == (64, 48) and img.getpixel((0, 0)) == (245, 55, 225)
    assert output["videos"] == []
    assert set(output["timings"]) == {"inputs_ms", "comfyui_ms", "outputs_ms", "total_ms"}


def test_the_same_job_twice_returns_its_outputs_both_times_and_leaves_no_files(worker):
    job = {"workflow": INVERT, "images": [{"name": "in.png", "image": b64(png((1, 2, 3)))}]}
    first = run_ok(worker, job)
    second = run_ok(worker, job)  # ComfyUI's cache serves the upstream nodes
    assert first["images"][0]["data"] == second["images"][0]["data"]
    assert leftover_files(worker.comfyui_dir / "output") == []
    assert leftover_files(worker.comfyui_dir / "input") == []


def test_a_preview_written_under_the_jobs_prefix_into_temp_leaves_with_the_job(worker):
    # VideoHelperSuite with save_output off writes its file (and side PNG) to temp/<prefix>:
    # the prefix holds the job's folder, and that folder must go with the job's others, or
    # every such job leaves its video on the worker's disk for good
    job = {
        "workflow": graph(
            (
                "4",
                {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "s"}},
            ),
            save="VHS_VideoCombine",
            save_output=False,
        ),
        "images": [{"name": "in.png", "image": b64(png())}],
    }
    run_ok(worker, job)
    assert [f for f in leftover_files(worker.comfyui_dir / "temp") if f.startswith("job-")] == []


def test_named_workflow_with_overrides_returns_an_mp4_and_reports_progress(worker, progress):
    job = json.loads((REPO / "test_input.json").read_text())["input"]
    posts_before = len(progress.posts)
    output = run_ok(worker, job)
    [video] = output["videos"]
    assert video["filename"] == "wan_flf_00001.mp4" and video["content_type"] == "video/mp4"
    data = base64.b64decode(video["data"])
    assert data[4:8] == b"ftyp" and data[28:32] == b"free"
    # what the fake's encoder received: the overrides reached ComfyUI
    assert json.loads(data[32:]) == {"frames": 33, "width": 480, "height": 480, "frame_rate": 16.0}
    updates = [p["output"] for p in progress.posts[posts_before:]]
    sampler = [u for u in updates if u["title"] == "Seed"]
    assert sampler and sampler[-1] == {
        "node": "84",
        "class_type": "KSamplerAdvanced",
        "title": "Seed",
        "step": 10,
        "max": 10,
    }
    assert all(p["status"] == "IN_PROGRESS" for p in progress.posts[posts_before:])


def test_gif_video_output_is_returned_under_videos(worker):
    output = run_ok(
        worker,
        {
            "workflow": graph(save="VHS_VideoCombine"),
            "images": [{"name": "in.png", "image": b64(png())}],
        },
    )
    [video] = output["videos"]
    assert video["filename"] == "v_00001.gif" and video["content_type"] == "image/gif"
    assert output["images"] == []  # VHS's first-frame PNG is not a separate result


def test_image_by_url(worker, files):
    url = files.add("/start.png", png((100, 100, 100)))
    output = run_ok(worker, {"workflow": INVERT, "images": [{"name": "in.png", "image": url}]})
    with Image.open(io.BytesIO(base64.b64decode(output["images"][0]["data"]))) as img:
        assert img.getpixel((0, 0)) == (155, 155, 155)


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        (
            {"workflow": INVERT, "images": [{"name": "in.png", "image": "%%%"}]},
            "invalid input: input.images[0].image is not valid base64",
        ),
        (
            {"workflow": INVERT, "images": [{"name": "../in.png", "image": b64(png())}]},
            "invalid input: input.images[0].name '../in.png' is not a safe file name: no path "
            "separators, no '..', no leading '.', at most 200 characters",
        ),
        (
            {"workflow": "no_such_workflow"},
            "invalid input: unknown workflow 'no_such_workflow'; available: wan_flf_i2v",
        ),
        (
            {"workflow": INVERT, "overrides": {"Missing.seed": 1}},
            "invalid input: input.overrides 'Missing.seed': no node has the id or title 'Missing' "
            "(titles: -)",
        ),
    ],
)
def test_bad_input_is_one_clear_error(worker, job, expected):
    assert run_error(worker, job) == expected


def test_bad_image_urls(worker, files):
    missing = files.url("/nope.png")
    big = files.add("/big.png", bytes(400_000))
    assert "answered HTTP 404" in run_error(
        worker, {"workflow": INVERT, "images": [{"name": "in.png", "image": missing}]}
    )
    assert "over the limit of 300000 (IMAGE_URL_MAX_BYTES)" in run_error(
        worker, {"workflow": INVERT, "images": [{"name": "in.png", "image": big}]}
    )


def test_validation_error_names_node_class_and_input_and_the_next_job_works(worker):
    prompt = json.loads(json.dumps(INVERT))
    prompt["4"] = {
        "class_type": "ImageScale",
        # what the worker's own checks leave to ComfyUI: required inputs left out
        "inputs": {"image": ["1", 0], "upscale_method": "area", "height": 8},
        "_meta": {"title": "Resize"},
    }
    prompt["3"]["inputs"]["images"] = ["4", 0]
    error = run_error(
        worker, {"workflow": prompt, "images": [{"name": "in.png", "image": b64(png())}]}
    )
    assert error.startswith("Workflow validation failed: ")
    assert "node 4 \"Resize\" (ImageScale), input 'width': Required input is missing" in error
    assert "node 4 \"Resize\" (ImageScale), input 'crop': Required input is missing" in error
    test_image_job_returns_the_inverted_image(worker)


def test_execution_error_names_node_type_and_exception(worker):
    error = run_error(
        worker,
        {"workflow": INVERT, "images": [{"name": "in.png", "image": b64(b"this is not a png")}]},
    )
    assert error.startswith(
        "ComfyUI failed while running node 1 (LoadImage): "
        "PIL.UnidentifiedImageError: cannot identify image file"
    )
    test_image_job_returns_the_inverted_image(worker)


def test_black_outputs_are_errors_naming_sageattention(worker):
    black = b64(png((0, 0, 0)))
    for prompt in (graph(source="1"), graph(save="VHS_VideoCombine", source="1")):
        error = run_error(
            worker, {"workflow": prompt, "images": [{"name": "in.png", "image": black}]}
        )
        assert "is black" in error and "SageAttention" in error
        assert "SAGE_ATTENTION=off" in error
    assert leftover_files(worker.comfyui_dir / "output") == []


def test_a_result_over_the_payload_limit_asks_for_a_bucket(worker):
    rng = random.Random(1)
    noise = Image.frombytes("RGB", (400, 400), bytes(rng.getrandbits(8) for _ in range(480000)))
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    error = run_error(
        worker, {"workflow": INVERT, "images": [{"name": "in.png", "image": b64(buf.getvalue())}]}
    )
    assert error.startswith("the outputs are ")
    assert "bytes as base64, over the 400,000 bytes a response may carry (MAX_INLINE_BYTES" in error
    assert "BUCKET_ENDPOINT_URL" in error


def test_one_websocket_and_no_frontend_requests_across_jobs(worker):
    test_image_job_returns_the_inverted_image(worker)  # connected, whatever ran before
    stats = worker.comfy_get("/fake/stats", timeout=5).json()
    for _ in range(3):
        test_image_job_returns_the_inverted_image(worker)
    after = worker.comfy_get("/fake/stats", timeout=5).json()
    for counted in ("websocket connections", "GET /ws", "GET /", "GET /object_info"):
        assert after.get(counted, 0) == stats.get(counted, 0), counted
    assert after["POST /prompt"] == stats["POST /prompt"] + 3


def test_a_hung_prompt_hits_the_timeout_and_is_interrupted(worker):
    pid = worker.comfy_pid()
    error = run_error(
        worker,
        {
            "workflow": graph(
                ("5", {"class_type": "FakeHang", "inputs": {"seconds": 0, "images": ["2", 0]}}),
                source="5",
            ),
            "images": [{"name": "in.png", "image": b64(png())}],
        },
    )
    assert error == "the job did not finish within 4 s (JOB_TIMEOUT); the prompt was interrupted"
    assert worker.comfy_pid() == pid  # the interrupt was enough: no restart
    test_image_job_returns_the_inverted_image(worker)


def test_a_prompt_that_ignores_the_interrupt_gets_comfyui_restarted(worker):
    pid = worker.comfy_pid()
    error = run_error(
        worker,
        {
            "workflow": graph(
                (
                    "5",
                    {
                        "class_type": "FakeIgnoreInterrupt",
                        "inputs": {"seconds": 30, "images": ["2", 0]},
                    },
                ),
                source="5",
            ),
            "images": [{"name": "in.png", "image": b64(png())}],
        },
    )
    assert "did not stop, so ComfyUI was restarted" in error
    assert worker.comfy_pid() not in (None, pid)
    test_image_job_returns_the_inverted_image(worker)


def test_comfyui_crashing_mid_job_is_a_clear_error_and_the_next_job_works(worker):
    pid = worker.comfy_pid()
    error = run_error(
        worker,
        {
            "workflow": graph(("5", {"class_type": "FakeCrash", "inputs": {"images": ["2", 0]}})),
            "images": [{"name": "in.png", "image": b64(png())}],
        },
    )
    assert error.startswith("ComfyUI exited (code 3) while running the job.")
    # the lines ComfyUI logged before it exited, not the restarted one's start-up
    assert "FakeCrash: exiting in the middle of a prompt" in error
    assert error.count("Starting server") <= 1  # its own start at most, none of a restart
    # the error came before the restart; the next job waits for it and works
    assert error.endswith("ComfyUI is being restarted for the next job.")
    test_image_job_returns_the_inverted_image(worker)
    assert worker.comfy_pid() not in (None, pid)
    assert not pid_alive(pid)  # the crashed process is gone, not left beside the new one


def test_comfyui_dying_while_it_answers_the_queue_is_reported_as_an_exit(worker):
    # The connection drops a moment before the process can be reaped: still an exit, restarted,
    # never a transport error that leaves a dead ComfyUI behind for the next job.
    pid = worker.comfy_pid()
    crash = {"class_type": "FakeCrash", "inputs": {"images": ["2", 0], "at_queue": True}}
    error = run_error(
        worker,
        {"workflow": graph(("5", crash)), "images": [{"name": "in.png", "image": b64(png())}]},
    )
    assert error.startswith("ComfyUI exited (code 3) while running the job."), error
    assert "FakeCrash: exiting while answering POST /prompt" in error
    test_image_job_returns_the_inverted_image(worker)
    assert worker.comfy_pid() not in (None, pid)


def test_comfyui_that_stops_answering_http_is_restarted_and_the_next_job_works(worker):
    pid = worker.comfy_pid()
    # the prompt runs, but its outcome cannot be read: the hook hangs GET /history/<id>
    worker.comfy_session.post(
        worker.comfy_url + "/fake/block", json={"route": "GET /history/{id}"}, timeout=5
    ).raise_for_status()
    error = run_error(
        worker, {"workflow": INVERT, "images": [{"name": "in.png", "image": b64(png())}]}
    )
    assert error.startswith("ComfyUI did not answer GET /history/")
    assert error.endswith("the prompt could not be stopped, so ComfyUI was restarted")
    assert worker.comfy_pid() not in (None, pid)
    test_image_job_returns_the_inverted_image(worker)


def test_an_error_quotes_an_excerpt_of_the_input_never_all_of_it(worker):
    # a common client mistake: the workflow serialised twice, near RunPod's request limit
    padded = json.loads(json.dumps(INVERT))
    padded["1"]["_meta"] = {"title": "x" * 5_000_000}
    text = json.dumps(padded)
    answer = worker.runsync({"workflow": text}, timeout=120)
    assert answer["error"] == (
        f"invalid input: input.workflow is a JSON string ({len(text):,} characters) holding a "
        "workflow: send the workflow as an object, not a JSON string"
    )
    # a 1 MB file name and override key come back as an excerpt with their length
    answer = worker.runsync(
        {"workflow": INVERT, "images": [{"name": "a/" + "b" * 1_000_000, "image": b64(png())}]}
    )
    assert len(answer["error"]) < 400 and "(1,000,002 long)" in answer["error"]
    answer = worker.runsync({"workflow": INVERT, "overrides": {"k" * 1_000_000: 1}})
    assert len(answer["error"]) < 400 and "(1,000,000 long)" in answer["error"]
