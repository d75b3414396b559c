"""Test-only ComfyUI custom nodes that misbehave on purpose, for the real-ComfyUI tier.

The real-ComfyUI tests copy this folder into their ComfyUI copy's `custom_nodes/`, so that the
worker meets, against the real server, the failures it must survive in production: a node that
raises, one that runs past JOB_TIMEOUT (and stops when interrupted, as well-behaved nodes do),
one that ignores the interrupt, and one that kills the ComfyUI process. Each passes its `images`
through, so a SaveImage after it puts it on the path ComfyUI executes.

Never shipped: only tests/ references this folder.
"""

from __future__ import annotations

import os
import signal
import time

import comfy.model_management  # ComfyUI's own module: present where these nodes are loaded

CATEGORY = "comfy-bake tests"


class _PassThrough:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}


class BakeTestRaise(_PassThrough):
    def run(self, images):
        raise RuntimeError("comfy-bake test node: raised on purpose")


class BakeTestHang(_PassThrough):
    """Runs for `seconds` (0: until interrupted), checking for ComfyUI's interrupt."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"images": ("IMAGE",), "seconds": ("FLOAT", {"default": 0.0, "min": 0.0})}
        }

    @classmethod
    def IS_CHANGED(cls, **kwargs):  # never served from ComfyUI's cache
        return float("nan")

    def run(self, images, seconds):
        deadline = time.monotonic() + seconds if seconds > 0 else float("inf")
        while time.monotonic() < deadline:
            comfy.model_management.throw_exception_if_processing_interrupted()
            time.sleep(0.05)
        return (images,)


class BakeTestIgnoreInterrupt(_PassThrough):
    """Sleeps `seconds` without ever looking at ComfyUI's interrupt flag."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"images": ("IMAGE",), "seconds": ("FLOAT", {"default": 60.0, "min": 0.0})}
        }

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")

    def run(self, images, seconds):
        time.sleep(seconds)
        return (images,)


class BakeTestKill(_PassThrough):
    """Kills the ComfyUI process it runs in, as the kernel's OOM killer would."""

    def run(self, images):
        print("BakeTestKill: killing ComfyUI in the middle of a prompt", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        return (images,)


NODE_CLASS_MAPPINGS = {
    "BakeTestRaise": BakeTestRaise,
    "BakeTestHang": BakeTestHang,
    "BakeTestIgnoreInterrupt": BakeTestIgnoreInterrupt,
    "BakeTestKill": BakeTestKill,
}
