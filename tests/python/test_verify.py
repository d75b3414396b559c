"""`compare`: the pure half of `bake python verify`, one kind of drift per test."""

from __future__ import annotations

from bake.locks.requirements import parse_requirements_lock
from bake.python.verify import Environment, Installed, TorchInfo, compare, expected_cuda

HASH = " --hash=sha256:" + "a" * 64


def lock_of(*lines: str):
    return parse_requirements_lock("".join(f"{line}{HASH}\n" for line in lines))


def env_of(*dists: tuple[str, str], torch: TorchInfo | None = None, **markers: str):
    return Environment(
        markers or {"sys_platform": "linux", "platform_machine": "x86_64"},
        tuple(Installed(n, v, f"/site/{n}") for n, v in dists),
        torch,
    )


def test_matching_environment_has_no_problems_and_our_own_extras_are_allowed():
    lock = lock_of("numpy==2.0.0", "pillow==11.0")
    env = env_of(
        ("numpy", "2.0"),
        ("pillow", "11.0"),
        ("comfy-bake", "0.1.0"),
        ("sageattention", "2.2.0"),
        ("pip", "24.0"),
    )
    assert compare(lock, env) == []


def test_a_distribution_installed_twice_is_named_with_both_places():
    lock = lock_of("numpy==2.0.0")
    env = env_of(("numpy", "2.0.0"), ("numpy", "1.26.4"))
    assert compare(lock, env) == [
        "numpy: installed 2 times (2.0.0 at /site/numpy, 1.26.4 at /site/numpy); "
        "requirements.lock pins 2.0.0"
    ]


def test_pins_for_another_platform_are_not_expected():
    lock = lock_of("pywin32==306 ; sys_platform == 'win32'", "numpy==2.0.0")
    assert compare(lock, env_of(("numpy", "2.0.0"))) == []


def test_torch_that_does_not_import_is_a_problem():
    lock = lock_of("torch==2.10.0")
    env = env_of(("torch", "2.10.0"), torch=TorchInfo(error="OSError: libcudart.so.12"))
    assert compare(lock, env) == [
        "torch is installed but does not import: OSError: libcudart.so.12"
    ]


def test_sm_120a_counts_as_sm_120():
    lock = lock_of("torch==2.10.0", "nvidia-cuda-runtime-cu12==12.8.90")
    torch = TorchInfo("2.10.0", "12.8", ("sm_90a", "sm_120a"))
    env = env_of(("torch", "2.10.0"), ("nvidia-cuda-runtime-cu12", "12.8.90"), torch=torch)
    assert compare(lock, env) == []


def test_expected_cuda_follows_the_lock():
    assert expected_cuda(lock_of("torch==2.10.0+cu128")) == "12.8"
    assert expected_cuda(lock_of("torch==2.10.0+cu130")) == "13.0"
    assert expected_cuda(lock_of("torch==2.10.0", "nvidia-cuda-runtime-cu12==12.8.90")) == "12.8"
    assert expected_cuda(lock_of("torch==2.10.0")) == "12.8"
