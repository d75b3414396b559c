"""The black-frame guard: an output whose every frame is black is a failure, not a result.

SageAttention with Wan 2.2 FP8 weights on an RTX 5090 can produce all-black video (upstream
SageAttention issue #221). Images and animated images are read with Pillow; videos with PyAV
(`av`, which ComfyUI's requirements install). When a file cannot be decoded the guard says so
(returns None) rather than guessing.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO, NamedTuple

from PIL import Image, UnidentifiedImageError

log = logging.getLogger("worker")

BLACK_OUTPUT_MESSAGE = (
    "every frame of output {name!r} is black. This is the known SageAttention + Wan 2.2 FP8 "
    "issue on RTX 5090 (SageAttention issue #221). Set SAGE_ATTENTION=off on the endpoint (or "
    "use fp16/bf16 weights, or KJNodes' PathchSageAttentionKJ with "
    "sageattn_qk_int8_pv_fp16_cuda) and run the job again."
)


def frame_is_black(frame: Image.Image, threshold: int) -> bool:
    """No pixel of the frame is brighter than `threshold` (0-255 luma)."""
    low_high = frame.convert("L").getextrema()
    return int(low_high[1]) <= threshold


# What the guard spends on one output: a job chooses the bytes it decodes (a 7 KB GIF of 300
# frames at 4000x4000 kept it decoding for 22 s after a sub-second prompt, outside JOB_TIMEOUT).
# Black output is black throughout, so a sample of frames is enough to call it; an output the
# budget cannot judge is returned unjudged (None), never failed.
MAX_FRAMES = 48  # frames looked at, evenly spread over the file where its length is known
MAX_FRAME_PIXELS = 40_000_000  # a frame larger than this is not decoded to be checked
MAX_SECONDS = 3.0


def all_black(
    frames: Iterable[Image.Image], threshold: int, *, max_seconds: float = MAX_SECONDS
) -> bool | None:
    """True if every frame looked at is black, False at the first that is not, None with no
    frames or when the time budget ran out before one was found not black."""
    seen = False
    deadline = time.monotonic() + max_seconds
    for frame in frames:
        if frame.width * frame.height > MAX_FRAME_PIXELS:
            return None
        seen = True
        if not frame_is_black(frame, threshold):
            return False
        if time.monotonic() > deadline:
            return None
    return True if seen else None


class _Unread(NamedTuple):
    """A frame too large to decode for the guard: its size only."""

    width: int
    height: int


def _source(data: bytes | BinaryIO) -> BinaryIO:
    """A readable file from the start: the output's bytes, or its spool file rewound."""
    if isinstance(data, bytes):
        return io.BytesIO(data)
    data.seek(0)
    return data


def _pillow_frames(data: bytes | BinaryIO) -> Iterator[Image.Image]:
    with Image.open(_source(data)) as img:
        if img.width * img.height > MAX_FRAME_PIXELS:
            yield img  # its size is known unread: all_black stops at it
            return
        count = getattr(img, "n_frames", 1)
        step = max(1, -(-count // MAX_FRAMES))  # ceil: at most MAX_FRAMES frames
        for index in range(0, count, step):
            img.seek(index)
            yield img.copy()


def _pyav_frames(data: bytes | BinaryIO) -> Iterator[Image.Image]:
    import av  # in the image: ComfyUI's requirements install PyAV

    # mode "r" said outright: PyAV takes it from a file object's `mode`, and a spool file in
    # memory says "w+b", which would open the video for writing and decode nothing
    with av.open(_source(data), mode="r") as container:
        stream = container.streams.video[0]
        step = max(1, -(-(stream.frames or 0) // MAX_FRAMES))
        for index, frame in enumerate(container.decode(stream)):
            if index // step >= MAX_FRAMES:
                return
            if index % step == 0:
                if frame.width * frame.height > MAX_FRAME_PIXELS:
                    yield _Unread(frame.width, frame.height)  # all_black stops at it
                    return
                yield frame.to_image()


def output_is_black(data: bytes | BinaryIO, filename: str, threshold: int) -> bool | None:
    """Whether every frame of an output file is black; None when it cannot be decoded."""
    try:
        return all_black(_pillow_frames(data), threshold)
    except Image.DecompressionBombError:
        # a valid but very large image (a 16384 x 11000 save): larger than Pillow decodes
        # unasked, so not checked, never an error of the job
        log.warning("black-frame guard: %s is too large to decode, not checked", filename)
        return None
    except (UnidentifiedImageError, OSError, ValueError):
        pass
    try:
        return all_black(_pyav_frames(data), threshold)
    except ImportError:
        log.warning("black-frame guard: PyAV (`av`) is not installed, %s was not checked", filename)
    except Exception as exc:
        log.warning("black-frame guard: could not decode %s (%s)", filename, exc)
    return None
