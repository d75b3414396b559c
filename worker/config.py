"""The worker's configuration: every setting comes from the environment, with a default.

docs/worker.md lists each variable; `Config.from_env` is the only place that reads them, so a
typo'd value fails at boot with the variable named instead of misbehaving later.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from worker.comfy.environment import EnvPassError, check_pass_names

WORKER_DIR = Path(__file__).resolve().parent
MAX_URL_EXPIRES = 7 * 24 * 3600  # what S3's (and R2's) SigV4 presigned URLs allow


class ConfigError(ValueError):
    pass


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, default).strip().lower() or default
    aliases = {"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off"}
    if "on" in choices:
        value = aliases.get(value, value)
    if value not in choices:
        raise ConfigError(f"{name}={env.get(name)!r}: expected one of {', '.join(choices)}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    return _choice(env, name, "on" if default else "off", ("on", "off")) == "on"


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r}: must be at least {minimum}")
    return value


@dataclass(frozen=True)
class BucketConfig:
    endpoint_url: str
    bucket: str
    access_key_id: str | None
    secret_access_key: str | None
    region: str
    prefix: str
    url_expires: int
    # "virtual" when BUCKET_ENDPOINT_URL named the bucket in its host (then endpoint_url is
    # the service's host without it); "path" for every other endpoint (R2, MinIO, an IP)
    addressing_style: str = "path"


@dataclass(frozen=True)
class Config:
    comfyui_dir: Path = Path("/comfyui")
    comfyui_python: str = sys.executable
    comfyui_host: str = "127.0.0.1"
    comfyui_port: int = 8188
    comfyui_extra_args: tuple[str, ...] = ()
    # None: written at boot from volume_roots (worker.model_paths); else the user's file
    extra_model_paths: Path | None = None
    mode: str = "serverless"  # or "pod"
    sage_attention: bool = True
    model_verify: str = "full"  # full | fast | off
    model_warm: bool = True  # read unhashed model files into the page cache (worker.model_warm)
    # None: models.lock.yaml in $BAKE_ROOT, else in the nearest parent of the working
    # directory holding a lock, else beside the installed package (bake's lookup)
    models_lock: Path | None = None
    volume_roots: tuple[Path, ...] = (Path("/workspace"), Path("/runpod-volume"))
    fetch_missing: bool = False
    # Hub cache folders searched for `cache` models (RunPod's model cache), and the folder of
    # links to them that the generated extra-model-paths file maps (None: not generated)
    hf_cache_roots: tuple[Path, ...] = (Path("/runpod-volume/huggingface-cache/hub"),)
    cache_links: Path | None = None
    start_timeout: float = 600.0
    stop_timeout: float = 20.0
    job_timeout: float = 1800.0
    interrupt_grace: float = 15.0
    shutdown_grace: float = 5.0
    ws_reconnect_timeout: float = 30.0
    allow_raw_workflows: bool = True
    workflows_dir: Path = WORKER_DIR / "workflows"
    image_url_max_bytes: int = 50 * 1024 * 1024
    image_url_timeout: float = 30.0
    image_url_allow_private: bool = False
    max_inline_bytes: int = 10_000_000
    black_frame_guard: bool = True
    black_threshold: int = 10
    progress_interval: float = 1.0
    bucket: BucketConfig | None = None
    # job-input policy (worker.policy.models, worker.policy.code, worker.policy.paths)
    model_policy: str = "locked"  # locked | open
    allow_code_nodes: bool = False
    # node classes (worker.policy.classes): the reviewed table, or every installed class
    node_classes: str = "reviewed"  # reviewed | all
    allow_node_classes: tuple[str, ...] = ()  # further classes allowed by name
    node_classes_file: Path | None = None  # None: node-classes.yaml where the locks are
    # ComfyUI's containment (worker.comfy.containment) and its API key (worker.comfy.api_guard)
    containment: str = "auto"  # required | auto | off
    containment_read: tuple[Path, ...] = ()  # further folders ComfyUI may read (CONTAINMENT_READ)
    comfyui_api_key: str | None = None  # None: a new random key at every boot
    max_input_image_bytes: int = 50 * 1024 * 1024
    log_prefix: str = "[comfyui] "
    # ComfyUI's user and environment (worker/comfy/user.py, worker/comfy/environment.py)
    comfyui_user: str = ""
    comfyui_env_pass: tuple[str, ...] = ()

    @property
    def listen(self) -> str:
        return "127.0.0.1" if self.mode == "serverless" else "0.0.0.0"

    @property
    def comfyui_url(self) -> str:
        return f"http://{self.comfyui_host}:{self.comfyui_port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        port = int(_number(env, "COMFYUI_PORT", 8188, minimum=1))
        lock = env.get("MODELS_LOCK", "").strip()
        roots = env.get("VOLUME_ROOTS", "/workspace:/runpod-volume")
        return cls(
            comfyui_dir=Path(env.get("COMFYUI_DIR", "/comfyui")),
            comfyui_python=env.get("COMFYUI_PYTHON", "").strip() or sys.executable,
            comfyui_port=port,
            comfyui_extra_args=tuple(env.get("COMFYUI_EXTRA_ARGS", "").split()),
            extra_model_paths=Path(paths) if (paths := env.get("EXTRA_MODEL_PATHS", "")) else None,
            mode=_choice(env, "WORKER_MODE", "serverless", ("serverless", "pod")),
            sage_attention=_flag(env, "SAGE_ATTENTION", True),
            model_verify=_choice(env, "MODEL_VERIFY", "full", ("full", "fast", "off")),
            model_warm=_flag(env, "MODEL_WARM", True),
            models_lock=Path(lock) if lock else None,
            volume_roots=tuple(Path(p) for p in roots.split(":") if p.strip()),
            fetch_missing=_flag(env, "FETCH_MISSING", False),
            hf_cache_roots=tuple(
                Path(p)
                for p in (
                    env.get("HF_CACHE_ROOTS", "").strip() or "/runpod-volume/huggingface-cache/hub"
                ).split(":")
                if p.strip()
            ),
            start_timeout=_number(env, "COMFYUI_START_TIMEOUT", 600.0, minimum=1),
            stop_timeout=_number(env, "COMFYUI_STOP_TIMEOUT", 20.0),
            job_timeout=_number(env, "JOB_TIMEOUT", 1800.0, minimum=0.1),
            interrupt_grace=_number(env, "INTERRUPT_GRACE", 15.0),
            # seconds a running job has after SIGTERM (worker.shutdown); RunPod's own kill
            # grace is undocumented: 5 s leaves time to post the error within Docker's 10
            shutdown_grace=_number(env, "SHUTDOWN_GRACE", 5.0),
            ws_reconnect_timeout=_number(env, "WEBSOCKET_RECONNECT_TIMEOUT", 30.0),
            allow_raw_workflows=_flag(env, "ALLOW_RAW_WORKFLOWS", True),
            workflows_dir=Path(env.get("WORKFLOWS_DIR", str(WORKER_DIR / "workflows"))),
            image_url_max_bytes=int(_number(env, "IMAGE_URL_MAX_BYTES", 50 * 1024 * 1024)),
            image_url_timeout=_number(env, "IMAGE_URL_TIMEOUT", 30.0, minimum=0.1),
            image_url_allow_private=_flag(env, "IMAGE_URL_ALLOW_PRIVATE", False),
            max_inline_bytes=int(_number(env, "MAX_INLINE_BYTES", 10_000_000)),
            black_frame_guard=_flag(env, "BLACK_FRAME_GUARD", True),
            black_threshold=int(_number(env, "BLACK_THRESHOLD", 10)),
            progress_interval=_number(env, "PROGRESS_INTERVAL", 1.0),
            bucket=_bucket_from_env(env),
            model_policy=_choice(env, "MODEL_POLICY", "locked", ("locked", "open")),
            allow_code_nodes=_flag(env, "ALLOW_CODE_NODES", False),
            node_classes=_choice(env, "NODE_CLASSES", "reviewed", ("reviewed", "all")),
            allow_node_classes=tuple(
                name.strip()
                for name in env.get("ALLOW_NODE_CLASSES", "").split(",")
                if name.strip()
            ),
            node_classes_file=Path(f) if (f := env.get("NODE_CLASSES_FILE", "").strip()) else None,
            containment=_choice(env, "CONTAINMENT", "auto", ("required", "auto", "off")),
            containment_read=tuple(
                Path(p) for p in env.get("CONTAINMENT_READ", "").split(":") if p.strip()
            ),
            comfyui_api_key=_api_key(env),
            max_input_image_bytes=int(
                _number(env, "MAX_INPUT_IMAGE_BYTES", 50 * 1024 * 1024, minimum=1)
            ),
            comfyui_user=env.get("COMFYUI_USER", "").strip(),
            comfyui_env_pass=_env_pass(env),
        )


def _api_key(env: Mapping[str, str]) -> str | None:
    key = env.get("COMFYUI_API_KEY", "").strip()
    if not key:
        return None
    if len(key) < 16 or len(key) > 256 or not key.isascii() or not key.isprintable():
        raise ConfigError("COMFYUI_API_KEY: expected 16 to 256 printable ASCII characters")
    return key


def _env_pass(env: Mapping[str, str]) -> tuple[str, ...]:
    names = env.get("COMFYUI_ENV_PASS", "").replace(",", " ").split()
    try:
        return check_pass_names(names)
    except EnvPassError as exc:
        raise ConfigError(f"COMFYUI_ENV_PASS: {exc}") from None


def _bucket_from_env(env: Mapping[str, str]) -> BucketConfig | None:
    endpoint = env.get("BUCKET_ENDPOINT_URL", "").strip()
    if not endpoint:
        return None
    name = env.get("BUCKET_NAME", "").strip()
    endpoint, style, named = _service_endpoint(endpoint, name)
    if name and named and name != named:
        raise ConfigError(
            f"BUCKET_NAME={name!r} but BUCKET_ENDPOINT_URL names the bucket {named!r} in its "
            "host: leave BUCKET_NAME unset, or give the region's endpoint "
            "(https://s3.<region>.amazonaws.com)"
        )
    name = name or named
    if not name:
        raise ConfigError(
            "BUCKET_ENDPOINT_URL is set but BUCKET_NAME is not, and the endpoint is not an "
            "AWS virtual-host endpoint (https://<bucket>.s3.<region>.amazonaws.com) that names "
            "the bucket: set BUCKET_NAME"
        )
    prefix = env.get("BUCKET_PREFIX", "outputs").strip().strip("/")
    parts = prefix.split("/") if prefix else []
    if any(p in ("", ".", "..") or ".." in p or not p.isprintable() for p in parts):
        # S3 takes such a key, but the presigned URL of `a/../b` or `a..b` cannot be fetched
        # from every client: refused before any job runs, not after one
        raise ConfigError(
            f"BUCKET_PREFIX={prefix!r}: expected folder names separated by '/', without empty, "
            "'.' or '..' parts, '..' inside a name or control characters"
        )
    expires = int(_number(env, "BUCKET_URL_EXPIRES", 86400, minimum=1))
    if expires > MAX_URL_EXPIRES:
        raise ConfigError(
            f"BUCKET_URL_EXPIRES={expires}: S3 and R2 sign URLs for at most {MAX_URL_EXPIRES} "
            "seconds (7 days)"
        )
    return BucketConfig(
        endpoint_url=endpoint,
        bucket=name,
        access_key_id=env.get("BUCKET_ACCESS_KEY_ID") or None,
        secret_access_key=env.get("BUCKET_SECRET_ACCESS_KEY") or None,
        region=env.get("BUCKET_REGION", "").strip() or "us-east-1",
        prefix=prefix,
        url_expires=expires,
        addressing_style=style,
    )


# AWS's virtual-host names for S3's API, each form spelled out (a pattern open to any label
# after "s3" read "company.s3-backups.s3...." as the bucket "company"): <bucket>.s3.amazonaws.com,
# .s3.<region>., the legacy .s3-<region>., .s3-external-1., -fips, .dualstack.,
# .s3-accelerate[.dualstack]., and the China regions' .amazonaws.com.cn. Other AWS hosts
# (PrivateLink's vpce-..., website, access-point and control endpoints) are not read as a bucket.
_AWS_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d"
_AWS_VIRTUAL_HOST = re.compile(
    r"(?P<bucket>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)\."
    r"(?P<service>(?:s3(?:-fips)?(?:[.-]dualstack)?(?:[.-](?:" + _AWS_REGION + r"|external-1))?"
    r"|s3-accelerate(?:\.dualstack)?)\.amazonaws\.com(?:\.cn)?)"
)


def _service_endpoint(endpoint: str, bucket: str) -> tuple[str, str, str]:
    """(endpoint, addressing style, the bucket the host names or ""). An endpoint that names
    the bucket in its host, addressed path-style, would put every key under `<bucket>/` inside
    the bucket, outside BUCKET_PREFIX: it becomes the service endpoint. Only AWS's own
    virtual-host names are read as naming a bucket (elsewhere the first label is an account,
    a region, a server name: R2's `<account>.r2.cloudflarestorage.com`); another provider's
    host is read so only when it starts with BUCKET_NAME. A bucket name with dots is addressed
    path-style on the service host: under HTTPS a virtual host with dots does not match the
    provider's wildcard certificate."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower().rstrip(".")  # a fully qualified name's final dot
    aws = _AWS_VIRTUAL_HOST.fullmatch(host)
    if aws is not None:
        named, service = aws["bucket"], aws["service"]
    elif bucket and host.startswith(bucket.lower() + ".") and host.count(".") >= 2:
        named, service = "", host[len(bucket) + 1 :]
    else:
        return endpoint, "path", ""
    netloc = service if parts.port is None else f"{service}:{parts.port}"
    style = "path" if "." in (named or bucket) else "virtual"
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")), style, named
