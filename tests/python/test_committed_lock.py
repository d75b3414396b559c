"""What the committed requirements.lock must hold for an RTX 5090 image, read from the file."""

from __future__ import annotations

from pathlib import Path

from bake.locks.requirements import load_requirements_lock
from bake.python.compile import missing_project_dependencies

REPO = Path(__file__).resolve().parents[2]
LOCK = load_requirements_lock(REPO / "requirements.lock")
# PyPI's torch 2.10.0 for cp312 manylinux_2_28 x86_64: the original wheel and the build-tag-3
# rebuild that installers prefer. Whichever is chosen, its hash must be in the lock.
TORCH_LINUX_WHEELS = (
    "sha256:787124e7db3b379d4f1ed54dd12ae7c741c16a4d29b49c0226a89bea50923ffb",
    "sha256:98c01b8bb5e3240426dcde1446eed6f40c778091c8544767ef1168fc663a05a6",
)


def version(name: str) -> str:
    return LOCK.pins[name].version


def test_torch_is_the_cuda_12_8_build():
    assert (version("torch"), version("torchvision"), version("torchaudio")) == (
        "2.10.0",
        "0.25.0",
        "2.10.0",
    )
    assert version("nvidia-cuda-runtime-cu12").startswith("12.8.")
    assert version("triton") == "3.6.0"
    assert "+cpu" not in version("torch")
    assert set(TORCH_LINUX_WHEELS) <= set(LOCK.pins["torch"].hashes)


def test_exactly_one_opencv():
    assert [n for n in LOCK.pins if n.startswith("opencv")] == ["opencv-contrib-python-headless"]


def test_what_the_worker_needs_is_there_and_what_breaks_sm_120_is_not():
    for name in ("runpod", "deepdiff", "jsondiff", "pywavelets", "ffmpeg-python", "requests"):
        assert name in LOCK.pins, name
    for name in ("xformers", "flash-attn", "onnxruntime-gpu", "sageattention"):
        assert name not in LOCK.pins, name


def test_every_project_dependency_is_an_intent():
    # The image installs comfy-bake with --no-deps: the lock must carry its dependencies.
    assert (
        missing_project_dependencies(
            (REPO / "pyproject.toml").read_text(), (REPO / "requirements.in").read_text()
        )
        == []
    )


def test_the_lock_installs_from_wheels_except_pixeloe():
    assert "--only-binary :all:" in LOCK.options
    assert "--no-binary pixeloe" in LOCK.options
