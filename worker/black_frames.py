"""The black-frame guard: an output whose every frame is black is a failure, not a result.

SageAttention with Wan 2.2 FP8 weights on an RTX 5090 can produce all-black video (upstream
SageAttention issue #221). Images and animated images are read with Pillow; videos with PyAV
(`av`, which ComfyUI's requirements install). When a file cannot be decoded the guard says so
(returns None) rather than guessing.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator

from PIL import Image, ImageSequence, UnidentifiedImageError

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


def all_black(frames: Iterable[Image.Image], threshold: int) -> bool | None:
    """True if every frame is black, False at the first that is not, None with no frames."""
    seen = False
    for frame in frames:
        seen = True
        if not frame_is_black(frame, threshold):
            return False
    return True if seen else None


def _pillow_frames(data: bytes) -> Iterator[Image.Image]:
    with Image.open(io.BytesIO(data)) as img:
        for frame in ImageSequence.Iterator(img):
            yield frame.copy()


def _pyav_frames(data: bytes) -> Iterator[Image.Image]:
    import av  # in the image: ComfyUI's requirements install PyAV

    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            yield frame.to_image()


def output_is_black(data: bytes, filename: str, threshold: int) -> bool | None:
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
