"""Jobs through RunPod's local API (/runsync) -> the worker -> the real ComfyUI, on the CPU.

The same paths as test_jobs.py exercises against the fake, against the server users run: real
node execution, VideoHelperSuite's real encoder, the real validation answers, and a test node
pack (tests/support/comfy_test_nodes) for a node that raises, hangs or kills ComfyUI. One worker
serves the module (`real_worker`, tests/worker/conftest.py); every failure test then runs a
good job, so a failure that poisons the worker fails a test.
"""

from __future__ import annotations

import base64
import io

import av
import pytest
from PIL import Image
from support.fake_comfyui.runner import WorkerProcess, pid_alive
from support.real_comfyui import REAL_JOB_TIMEOUT

pytestmark = [pytest.mark.real_comfyui, pytest.mark.slow]

SIZE = (64, 48)


def png(color: tuple[int, int, int] = (10, 200, 30), size: tuple[int, int] = SIZE) -> bytes:
    """An image with a gradient, so a wrong pixel order or channel swap shows."""
    img = Image.new("RGB", size, color)
    for x in range(size[0]):
        img.putpixel((x, 0), (x * 4 % 256, 255 - x * 4 % 256, 128))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def graph(*middle: tuple[str, str, str, dict], save: dict | None = None) -> dict:
    """LoadImage("in.png") -> each (id, class, input linked to the previous node, other inputs)
    in turn -> node 9, a SaveImage (or `save`, whose `images` are linked)."""
    prompt: dict = {"1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}}}
    last = "1"
    for node_id, class_type, link, inputs in middle:
        prompt[node_id] = {"class_type": class_type, "inputs": {**inputs, link: [last, 0]}}
        last = node_id
    prompt["9"] = save or {"class_type": "SaveImage", "inputs": {"filename_prefix": "real/out"}}
    prompt["9"]["inputs"]["images"] = [last, 0]
    return prompt


INVERT = graph(("2", "ImageInvert", "image", {}))


def job(prompt: dict, image: bytes | None = None) -> dict:
    return {"workflow": prompt, "images": [{"name": "in.png", "image": b64(image or png())}]}


def run_ok(worker: WorkerProcess, job_input: dict) -> dict:
    answer = worker.runsync(job_input, timeout=120)
    assert answer["status"] == "COMPLETED", answer
    return answer["output"]


def run_error(worker: WorkerProcess, job_input: dict) -> str:
    answer = worker.runsync(job_input, timeout=120)
    assert answer["status"] == "FAILED", answer
    assert isinstance(answer["error"], str)
    return answer["error"]


def rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


def max_difference_from_inverse(got: Image.Image, source: Image.Image) -> int:
    """The largest channel difference between `got` and the inverse of `source`."""
    assert got.size == source.size
    return max(abs(g - (255 - s)) for g, s in zip(got.tobytes(), source.tobytes(), strict=True))


def assert_a_good_job_works(worker: WorkerProcess) -> None:
    source = png((90, 30, 220))
    output = run_ok(worker, job(INVERT, source))
    [image] = output["images"]
    assert max_difference_from_inverse(rgb(base64.b64decode(image["data"])), rgb(source)) <= 1


def test_image_invert_returns_the_inverted_pixels(real_worker):
    source = png()
    output = run_ok(real_worker, job(INVERT, source))
    [image] = output["images"]
    assert image["filename"] == "out_00001_.png" and image["type"] == "base64"
    assert image["content_type"] == "image/png" and image["node_id"] == "9"
    got = rgb(base64.b64decode(image["data"]))
    assert got.size == SIZE
    # ComfyUI holds pixels as floats and saves clip(x * 255) truncated: 1 of difference at most
    assert max_difference_from_inverse(got, rgb(source)) <= 1
    assert output["videos"] == []


def test_frames_to_h264_mp4_come_back_as_a_video_pyav_decodes(real_worker):
    frames = 6
    save = {
        "class_type": "VHS_VideoCombine",
        "inputs": {
            "frame_rate": 8.0,
            "loop_count": 0,
            "filename_prefix": "real/clip",
            "format": "video/h264-mp4",
            "pingpong": False,
            "save_output": True,
            "pix_fmt": "yuv420p",
            "crf": 19,
            "save_metadata": True,
            "trim_to_audio": False,
        },
    }
    prompt = graph(
        ("2", "ImageInvert", "image", {}),
        ("3", "RepeatImageBatch", "image", {"amount": frames}),
        save=save,
    )
    output = run_ok(real_worker, job(prompt))
    [video] = output["videos"]
    assert video["filename"] == "clip_00001.mp4" and video["content_type"] == "video/mp4"
    assert output["images"] == []  # VHS's first-frame PNG is not a separate result
    with av.open(io.BytesIO(base64.b64decode(video["data"]))) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == frames
    assert {(f.width, f.height) for f in decoded} == {SIZE}
    # the inverted colour survived the encoder (h264 is lossy: a loose bound)
    centre = decoded[0].to_image().getpixel((SIZE[0] // 2, SIZE[1] // 2))
    assert max(abs(c - e) for c, e in zip(centre, (245, 55, 225), strict=True)) < 24


def test_a_black_empty_image_is_caught_by_the_black_frame_guard(real_worker):
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
        },
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "real/black"},
        },
    }
    error = run_error(real_worker, {"workflow": prompt})
    assert error.startswith("every frame of output 'black_00001_.png' is black")
    assert "SAGE_ATTENTION=off" in error
    assert_a_good_job_works(real_worker)


def test_validation_errors_in_the_real_shape_are_named_node_by_node(real_worker):
    # The worker's own checks refuse what the class declares against (a value over its max)...
    prompt = graph(
        ("2", "ImageInvert", "image", {}),
        (
            "4",
            "ImageScale",
            "image",
            {"upscale_method": "nearest-exact", "width": 99999, "height": 8, "crop": "disabled"},
        ),
    )
    prompt["4"]["_meta"] = {"title": "Resize"}
    error = run_error(real_worker, job(prompt))
    assert error == (
        "invalid input: node 4 \"Resize\" (ImageScale), input 'width': 99999 is above its "
        "maximum 16384"
    )
    # ...and ComfyUI's validation, in its real shape, what they leave to it
    del prompt["4"]["inputs"]["width"]
    prompt["5"] = {"class_type": "ImageInvert", "inputs": {}}
    error = run_error(real_worker, job(prompt))
    assert error.startswith("Workflow validation failed: ")
    assert "node 4 \"Resize\" (ImageScale), input 'width': Required input is missing" in error
    assert_a_good_job_works(real_worker)


def test_an_unknown_node_class_is_named(real_worker):
    prompt = graph(("2", "NoSuchNodeClass", "image", {}))
    prompt["2"]["_meta"] = {"title": "Upscale"}
    error = run_error(real_worker, job(prompt))
    assert error == (
        'invalid input: node 2 "Upscale" (NoSuchNodeClass): ComfyUI has no node class '
        "'NoSuchNodeClass'"
    )
    assert_a_good_job_works(real_worker)


def test_a_node_that_raises_is_reported_with_its_exception(real_worker):
    prompt = graph(("2", "BakeTestRaise", "images", {}))
    prompt["2"]["_meta"] = {"title": "Boom"}
    error = run_error(real_worker, job(prompt))
    assert error == (
        'ComfyUI failed while running node 2 "Boom" (BakeTestRaise): '
        "RuntimeError: comfy-bake test node: raised on purpose"
    )
    assert_a_good_job_works(real_worker)


def test_a_node_that_hangs_past_job_timeout_is_interrupted(real_worker):
    pid = real_worker.comfy_pid()
    error = run_error(real_worker, job(graph(("2", "BakeTestHang", "images", {"seconds": 0}))))
    assert error == (
        f"the job did not finish within {REAL_JOB_TIMEOUT} s (JOB_TIMEOUT); "
        "the prompt was interrupted"
    )
    assert real_worker.comfy_pid() == pid  # the interrupt was enough: no restart
    assert_a_good_job_works(real_worker)


def test_a_node_that_ignores_the_interrupt_gets_comfyui_restarted(real_worker):
    pid = real_worker.comfy_pid()
    error = run_error(
        real_worker, job(graph(("2", "BakeTestIgnoreInterrupt", "images", {"seconds": 120})))
    )
    assert error.endswith("the prompt was interrupted; it did not stop, so ComfyUI was restarted")
    assert real_worker.comfy_pid() not in (None, pid)
    assert not pid_alive(pid)
    assert_a_good_job_works(real_worker)


def test_a_node_that_kills_comfyui_is_reported_and_comfyui_restarted(real_worker):
    pid = real_worker.comfy_pid()
    error = run_error(real_worker, job(graph(("2", "BakeTestKill", "images", {}))))
    assert error.startswith("ComfyUI exited (code -9) while running the job.")
    assert "BakeTestKill: killing ComfyUI in the middle of a prompt" in error
    # the error came before the restart; the next job waits for it and works
    assert error.endswith("ComfyUI is being restarted for the next job.")
    assert_a_good_job_works(real_worker)
    assert real_worker.comfy_pid() not in (None, pid)
    assert not pid_alive(pid)
