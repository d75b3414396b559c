"""Where ComfyUI looks for models: one source of truth for ComfyUI and the worker.

At boot the worker writes the extra-model-paths file it passes to ComfyUI from VOLUME_ROOTS,
the same roots the model verification searches, so ComfyUI cannot load a model from a root
that was never verified, plus a folder of links to the verified `cache` models (RunPod's model
cache, see worker.models_check), which holds nothing else. A user-supplied EXTRA_MODEL_PATHS
is used as it is, and the model policy reads that file instead.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from worker.config import Config

# ComfyUI's own model folders below <root>/models (folder_paths.py), with the older folder
# names ComfyUI still searches for some of them.
MODEL_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("checkpoints",),
    "configs": ("configs",),
    "loras": ("loras",),
    "vae": ("vae",),
    "text_encoders": ("text_encoders", "clip"),
    "diffusion_models": ("unet", "diffusion_models"),
    "clip_vision": ("clip_vision",),
    "style_models": ("style_models",),
    "embeddings": ("embeddings",),
    "diffusers": ("diffusers",),
    "vae_approx": ("vae_approx",),
    "controlnet": ("controlnet", "t2i_adapter"),
    "gligen": ("gligen",),
    "upscale_models": ("upscale_models",),
    "latent_upscale_models": ("latent_upscale_models",),
    "hypernetworks": ("hypernetworks",),
    "photomaker": ("photomaker",),
    "classifiers": ("classifiers",),
    "model_patches": ("model_patches",),
    "audio_encoders": ("audio_encoders",),
}
LEGACY_NAMES = {"unet": "diffusion_models", "clip": "text_encoders"}


def model_paths_yaml(roots: list[Path], cache_links: Path | None = None) -> str:
    """The extra-model-paths file for these volume roots: every model folder below
    `<root>/models`, in the roots' order; then `<cache_links>/models`, where the boot links
    the verified files of `cache` models (RunPod's model cache)."""
    lines = [
        "# Written by the worker at boot from VOLUME_ROOTS (the roots the model verification",
        "# searches); do not edit: set EXTRA_MODEL_PATHS to use a file of your own.",
    ]
    named = [(f"volume_{i}", root) for i, root in enumerate(roots)]
    if cache_links is not None:
        named.append(("hf_cache", cache_links))
    for name, root in named:
        lines += ["", f"{name}:", f"  base_path: {_quoted(str(root / 'models'))}"]
        lines += [f"  {folder}: {folder}/" for folder in MODEL_FOLDERS]
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def with_model_paths(config: Config) -> Config:
    """`config` with the extra-model-paths file ComfyUI gets: the user's EXTRA_MODEL_PATHS,
    else one written now from the volume roots that exist (as the verification does)."""
    if config.extra_model_paths is not None:
        return config
    roots = [root for root in config.volume_roots if root.is_dir()]
    folder = Path(tempfile.mkdtemp(prefix="comfy-bake-"))
    folder.chmod(0o755)  # ComfyUI may run as another user: it must read the file
    links = folder / "hf-cache"
    (links / "models").mkdir(parents=True)
    links.chmod(0o755)
    (links / "models").chmod(0o755)
    path = folder / "extra_model_paths.yaml"
    path.write_text(model_paths_yaml(roots, links), encoding="utf-8")
    path.chmod(0o644)
    return dataclasses.replace(config, extra_model_paths=path, cache_links=links)


def search_dirs(comfyui_dir: Path, extra_model_paths: Path | None) -> dict[str, list[Path]]:
    """Model folder -> the directories ComfyUI searches for it: its own models/ folder, then
    the extra-model-paths file's entries (read as ComfyUI reads it)."""
    dirs: dict[str, list[Path]] = {
        folder: [comfyui_dir / "models" / name for name in names]
        for folder, names in MODEL_FOLDERS.items()
    }
    if extra_model_paths is None or not extra_model_paths.is_file():
        return dirs
    import yaml

    data = yaml.safe_load(extra_model_paths.read_text(encoding="utf-8")) or {}
    here = extra_model_paths.resolve().parent
    for entry in data.values() if isinstance(data, dict) else ():
        if not isinstance(entry, dict):
            continue
        base = entry.get("base_path")
        if base is not None:
            base = Path(os.path.expandvars(os.path.expanduser(str(base))))
            base = base if base.is_absolute() else here / base
        for key, value in entry.items():
            if key in ("base_path", "is_default") or value is None:
                continue
            folder = LEGACY_NAMES.get(key, key)
            for line in str(value).split("\n"):
                if line.strip():
                    path = Path(line.strip())
                    path = (base / path) if base is not None else path
                    path = path if path.is_absolute() else here / path
                    dirs.setdefault(folder, []).append(Path(os.path.normpath(path)))
    return dirs
