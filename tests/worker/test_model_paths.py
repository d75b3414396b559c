"""The extra-model-paths file the worker writes at boot: the roots the verification searches."""

from __future__ import annotations

from pathlib import Path

import yaml

from worker.config import Config
from worker.model_paths import MODEL_FOLDERS, search_dirs, with_model_paths


def test_the_file_lists_every_model_folder_of_each_existing_volume_root(tmp_path):
    roots = [tmp_path / "workspace", tmp_path / "runpod volume"]
    for root in roots:
        root.mkdir()
    config = with_model_paths(
        Config(comfyui_dir=tmp_path / "c", volume_roots=(*roots, tmp_path / "not-mounted"))
    )
    assert config.extra_model_paths is not None
    data = yaml.safe_load(config.extra_model_paths.read_text())
    # the same roots as the verification: the ones that exist, in order; then the folder of
    # links to the verified `cache` models, which the boot fills
    assert config.cache_links is not None
    assert [entry["base_path"] for entry in data.values()] == [
        *(str(root / "models") for root in roots),
        str(config.cache_links / "models"),
    ]
    for entry in data.values():
        for folder in MODEL_FOLDERS:
            assert entry[folder] == f"{folder}/"
    assert config.extra_model_paths.stat().st_mode & 0o044 == 0o044  # ComfyUI's user reads it


def test_a_user_supplied_file_is_kept_and_is_what_the_policy_reads(tmp_path):
    own = tmp_path / "mine.yaml"
    own.write_text(
        "mine:\n  base_path: /data/models\n  unet: |\n    unet\n    more_unets\n  loras: l/\n"
    )
    config = with_model_paths(Config(extra_model_paths=own, volume_roots=(tmp_path,)))
    assert config.extra_model_paths == own
    dirs = search_dirs(Path("/c"), own)
    assert dirs["diffusion_models"] == [
        Path("/c/models/unet"),
        Path("/c/models/diffusion_models"),
        Path("/data/models/unet"),
        Path("/data/models/more_unets"),
    ]
    assert dirs["loras"] == [Path("/c/models/loras"), Path("/data/models/l")]
