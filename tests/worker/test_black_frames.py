"""The black-frame guard on images and animated outputs."""

from __future__ import annotations

import io

from PIL import Image

from worker.black_frames import BLACK_OUTPUT_MESSAGE, output_is_black


def png(color, size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def animated(colors, fmt="GIF") -> bytes:
    frames = [Image.new("RGB", (32, 24), c) for c in colors]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=60, loop=0)
    return buf.getvalue()


def test_black_and_near_black_images_are_black():
    assert output_is_black(png((0, 0, 0)), "a.png", 10) is True
    assert output_is_black(png((4, 6, 3)), "a.png", 10) is True


def test_a_dark_but_real_image_is_not():
    img = Image.new("RGB", (32, 24), (0, 0, 0))
    img.putpixel((5, 5), (200, 180, 90))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert output_is_black(buf.getvalue(), "a.png", 10) is False


def test_animation_is_black_only_when_every_frame_is():
    assert output_is_black(animated([(0, 0, 0)] * 5), "v.gif", 10) is True
    assert output_is_black(animated([(0, 0, 0)] * 4 + [(90, 90, 90)]), "v.gif", 10) is False
    assert output_is_black(animated([(0, 0, 0)] * 3, "WEBP"), "v.webp", 10) is True


def test_undecodable_output_is_not_guessed():
    assert output_is_black(b"\x00\x00\x00\x18ftypisom" + bytes(64), "v.mp4", 10) is None


def test_the_message_names_the_cause_and_the_switch():
    message = BLACK_OUTPUT_MESSAGE.format(name="v.mp4")
    assert "SageAttention" in message and "Wan 2.2 FP8" in message
    assert "SAGE_ATTENTION=off" in message


def huge_black_png(width: int = 20000, height: int = 10000) -> bytes:
    """A real, valid PNG over Pillow's decompression-bomb limit (200 Mpx), small on disk."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    packer = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte, then one grey byte per pixel
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_valid_image_too_large_to_decode_is_not_checked_and_not_an_error():
    assert output_is_black(huge_black_png(), "big.png", 10) is None


def test_a_long_animation_is_judged_on_a_sample_of_its_frames(monkeypatch):
    # what a job can make the guard decode: many frames; all of them black but one in the
    # middle, which the even sample steps over, and one it lands on
    import worker.black_frames as guard

    looked = []
    real = guard.frame_is_black
    monkeypatch.setattr(
        guard, "frame_is_black", lambda frame, t: looked.append(1) or real(frame, t)
    )
    # near-black frames that differ from their neighbours (so none is merged into another)
    colors = [(i % 5, 0, 0) for i in range(300)]
    assert output_is_black(animated(colors), "many.gif", 10) is True
    assert 0 < len(looked) <= guard.MAX_FRAMES
    colors[147] = (255, 255, 255)  # 300 frames, every 7th looked at: 147 is one of them
    assert output_is_black(animated(colors), "many.gif", 10) is False


def test_a_frame_over_the_pixel_budget_is_not_decoded_and_not_judged():
    import worker.black_frames as guard

    big = png((0, 0, 0), size=(8000, 6000))  # 48 Mpx: over the budget, under Pillow's limit
    assert guard.MAX_FRAME_PIXELS < 8000 * 6000
    assert output_is_black(big, "big.png", 10) is None
