"""The black-frame guard on real H.264 mp4 files, decoded with PyAV as in the image."""

from __future__ import annotations

import io
import tempfile

import av
import pytest
from PIL import Image

from worker.black_frames import output_is_black


def _mp4(frames: list[Image.Image]) -> bytes:
    """Encode RGB frames as H.264 in an mp4, the way VideoHelperSuite's video/h264-mp4 does."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=16)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(image)))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def _black(count: int = 8) -> list[Image.Image]:
    return [Image.new("RGB", (96, 64)) for _ in range(count)]


def _as_the_handler_reads_it(data: bytes, on_disk: bool):
    """The output as the handler holds it: a spool file, in memory (mode "w+b") or rolled over
    to disk, positioned at its end as after the read from ComfyUI."""
    spool = tempfile.SpooledTemporaryFile(max_size=1 << 20)  # noqa: SIM115
    spool.write(data)
    if on_disk:
        spool.rollover()
    return spool


def test_an_all_black_video_is_caught():
    assert output_is_black(_mp4(_black()), "x_00001.mp4", threshold=8) is True


@pytest.mark.parametrize("on_disk", [False, True])
def test_a_black_video_in_the_handlers_spool_file_is_caught(on_disk):
    video = _mp4(_black())  # encoded once: two encodings differ in their timestamps
    with _as_the_handler_reads_it(video, on_disk) as spool:
        assert output_is_black(spool, "x_00001.mp4", threshold=8) is True
        spool.seek(0)
        assert spool.read() == video  # left readable for the upload


@pytest.mark.parametrize("where", [0, 7])
def test_one_visible_frame_makes_the_video_a_result(where):
    frames = _black()
    frames[where] = Image.new("RGB", (96, 64), (200, 200, 200))
    assert output_is_black(_mp4(frames), "x_00001.mp4", threshold=8) is False


def test_an_undecodable_video_is_not_called_black():
    assert output_is_black(b"\x00\x00\x00\x18ftypmp42 not really", "x.mp4", threshold=8) is None
