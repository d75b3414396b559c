"""The environment ComfyUI runs with: an allow-list of the worker's, never its credentials.

ComfyUI runs whatever a job's nodes do, and some nodes evaluate caller-supplied text (RES4LYF's
`Sigmas Math*` reach `os.environ` through `torch.os`). The worker holds the bucket keys, the Hub
token, S3 keys for model fetches and, on RunPod, the key it takes jobs with; none of them is
ComfyUI's business. So ComfyUI starts with only the variables below, and a few forced values.
docs/worker.md lists the same rules; keep both in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Passed on by exact name when the worker has them.
ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TERM",
        "HOME",
        "USER",
        "LOGNAME",
        "XDG_CACHE_HOME",
        "VIRTUAL_ENV",
        # Triton links its launchers against the CUDA driver stub found through these, and
        # compiles them with $CC.
        "LD_LIBRARY_PATH",
        "LIBRARY_PATH",
        "CC",
        "CXX",
        # Where an offline Hub cache lives (nodes that read from it); never the token.
        "HF_HOME",
        "HF_HUB_CACHE",
        "HF_HUB_DISABLE_TELEMETRY",
    }
)
# Passed on by prefix: locale, GPU and CUDA runtime, torch/Triton tuning, BLAS threads, and
# the interpreter's own switches (PYTHONPATH, PYTHONUNBUFFERED, ...).
ALLOWED_PREFIXES = (
    "LC_",
    "CUDA_",
    "CUBLAS_",
    "CUDNN_",
    "NVIDIA_",
    "PYTORCH_",
    "TORCH_",
    "TORCHINDUCTOR_",
    "TRITON_",
    "OMP_",
    "MKL_",
    "PYTHON",
)
# Always set for ComfyUI, whatever the worker has: nothing downloads or installs at run time.
FORCED = {"HF_HUB_OFFLINE": "1", "PIP_NO_INDEX": "1", "UV_OFFLINE": "1"}
# Never passed, not even when named in COMFYUI_ENV_PASS: the credentials the worker holds.
CREDENTIAL_PREFIXES = ("BUCKET_", "AWS_", "RUNPOD_", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# A prefix is not a promise about every name under it: NVIDIA_API_KEY (NVIDIA's hosted API)
# begins with NVIDIA_. A name under an allowed prefix with one of these words is a credential
# by its look, and is passed only when the operator names it in COMFYUI_ENV_PASS.
SECRET_WORDS = frozenset(
    {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS"}
)


class EnvPassError(ValueError):
    """COMFYUI_ENV_PASS names a variable that must never reach ComfyUI."""


def is_credential(name: str) -> bool:
    return name.upper().startswith(CREDENTIAL_PREFIXES)


def check_pass_names(names: Iterable[str]) -> tuple[str, ...]:
    """The extra names an operator wants passed; refuses any credential by name."""
    names = tuple(names)
    refused = [n for n in names if is_credential(n)]
    if refused:
        raise EnvPassError(
            f"{', '.join(refused)} cannot be passed to ComfyUI: the bucket, AWS, Hub and "
            "RunPod credentials stay with the worker"
        )
    return names


def looks_secret(name: str) -> bool:
    """Whether a word of the name (split at '_') says it holds a secret (NVIDIA_API_KEY)."""
    return any(word in SECRET_WORDS for word in name.upper().split("_"))


def allowed(name: str) -> bool:
    if is_credential(name):
        return False
    if name in ALLOWED_NAMES:
        return True
    return name.startswith(ALLOWED_PREFIXES) and not looks_secret(name)


def child_environment(
    env: Mapping[str, str],
    *,
    extra: Iterable[str] = (),
    home: str | None = None,
    user: str | None = None,
) -> dict[str, str]:
    """ComfyUI's environment, built from the worker's `env`.

    `extra`: further names the operator passes on (COMFYUI_ENV_PASS, checked at boot).
    `home`/`user`: when ComfyUI runs as another user, its home and name replace the worker's
    (root's home is not writable for it), and the Triton, torch and XDG caches default to
    folders in that home unless the operator set them.
    """
    extra = set(check_pass_names(extra))
    child = {k: v for k, v in env.items() if allowed(k) or k in extra}
    if user is not None:
        child["USER"] = child["LOGNAME"] = user
    if home is not None:
        child["HOME"] = home
        child.setdefault("XDG_CACHE_HOME", f"{home}/.cache")
        child.setdefault("TRITON_CACHE_DIR", f"{home}/.triton/cache")
        child.setdefault("TORCHINDUCTOR_CACHE_DIR", f"{home}/.cache/torchinductor")
    child.update(FORCED)
    return child
