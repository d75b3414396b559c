"""How every process in ComfyUI's interpreter starts: environment, containment and API key.

The boot makes one `Setup` and hands it to ComfyUI's process (and to the SageAttention import
check, which runs the same way): the scrubbed environment (worker/comfy/environment.py) with
ComfyUI's caches and temporary files in folders it may write; the Landlock ruleset that the
launcher applies before exec (worker/comfy/containment.py), or none; and, in serverless mode,
the key ComfyUI's API then demands (worker/comfy/api_guard.py).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from worker.comfy import containment
from worker.comfy.environment import child_environment
from worker.comfy.landlock import Ruleset
from worker.comfy.user import NODE_WRITABLE, WRITABLE, ComfyUser, make_folder
from worker.config import Config
from worker.model_paths import search_dirs

API_GUARD = Path(__file__).resolve().parent / "api_guard.py"
# Cache variables whose folders ComfyUI writes (torch, Triton, CUDA's JIT, everything XDG).
CACHE_VARS = ("XDG_CACHE_HOME", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "CUDA_CACHE_PATH")


@dataclass(frozen=True)
class Setup:
    env: dict[str, str]
    ruleset: Ruleset | None  # None: not contained
    contained: str  # what is in force, as the boot log and every job's output say it
    api_key: str | None  # None: ComfyUI's API is open (pod mode)

    def wrap(self, command: Sequence[str]) -> list[str]:
        """`command` as it is started: behind the containment launcher when there is one."""
        if self.ruleset is None:
            return list(command)
        # The launcher needs only the standard library: ComfyUI's own interpreter runs it,
        # which ComfyUI's user can always execute (the worker's may live where it cannot).
        return containment.launcher_command(self.ruleset, list(command), python=command[0])


def plan(config: Config, user: ComfyUser | None, private: Path) -> Setup:
    """The setup for this boot. `private` is a folder of the worker's own for ComfyUI's
    temporary files (and its caches when it runs as the worker's user: never the worker's own
    home). Raises containment.ContainmentUnavailable when CONTAINMENT=required cannot be met."""
    decision = containment.decide(config.containment)
    env = child_environment(
        os.environ,
        extra=config.comfyui_env_pass,
        home=user.home if user else None,
        user=user.name if user else None,
    )
    if user is None:
        env.setdefault("XDG_CACHE_HOME", str(private / "cache"))
        env.setdefault("TRITON_CACHE_DIR", str(private / "triton"))
        env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(private / "torchinductor"))
    # CUDA's JIT cache defaults to ~/.nv, which containment does not let it write
    env.setdefault("CUDA_CACHE_PATH", str(Path(env["XDG_CACHE_HOME"]) / "nv-compute"))
    env["TMPDIR"] = str(private / "tmp")
    writable = [Path(env[name]) for name in (*CACHE_VARS, "TMPDIR") if env.get(name)]
    # ComfyUI's own folders must exist before it starts: contained, it cannot create them
    for folder in [*(config.comfyui_dir / name for name in WRITABLE), *writable]:
        make_folder(folder, user)
    ruleset = None
    if decision.applied:
        ruleset = containment.comfy_ruleset(
            comfyui_dir=config.comfyui_dir,
            python=config.comfyui_python,
            read_extra=[*_model_folders(config, env), API_GUARD],
            write_extra=[*writable, *(config.comfyui_dir / rel for rel in NODE_WRITABLE)],
            port=config.comfyui_port,
        )
    api_key = None
    if config.mode == "serverless":
        api_key = config.comfyui_api_key or secrets.token_urlsafe(32)
    return Setup(env, ruleset, containment.describe(decision, user.name if user else None), api_key)


def _model_folders(config: Config, env: dict[str, str]) -> list[Path]:
    """What ComfyUI reads besides its own tree: the model roots the worker verified, RunPod's
    model cache and the worker's links to it, the extra-model-paths file, a Hub cache."""
    found = [
        d
        for dirs in search_dirs(config.comfyui_dir, config.extra_model_paths).values()
        for d in dirs
    ]
    found += list(config.hf_cache_roots)
    if config.extra_model_paths is not None:
        found.append(config.extra_model_paths.parent)
    if config.cache_links is not None:
        found.append(config.cache_links)
    found += [Path(env[name]) for name in ("HF_HOME", "HF_HUB_CACHE") if env.get(name)]
    return [*found, *config.containment_read]
