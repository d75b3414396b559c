"""A models-lock dest can only hold model data, and a pin is bounded and complete: each attack
is a real models.lock.yaml given to `bake check --strict` (what the image build runs), which
must refuse it with one line naming the entry; the legitimate layouts keep passing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.lockdata import REPO, VALID_REQUIREMENTS

from bake.cli import main

SHA, BLAKE, REV = "d" * 64, "c" * 64, "a" * 40


def lock_text(dest: str, *, placement: str = "image", size: str = "254", extra: str = "") -> str:
    """A fully locked url entry `evil` at `dest` (YAML double-quoted: escapes work), beside
    the legitimate RIFE checkpoint inside Frame-Interpolation's folder."""
    return f"""\
version: 1
models:
  evil:
    dest: {dest}
    locked:
      blake3: {BLAKE}
      sha256: {SHA}
      size: {size}
    original:
      source: url
      url: https://example.invalid/file
    placement: {placement}
  rife47:
    dest: custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife/rife47.pth
    locked:
      blake3: {BLAKE}
      sha256: {SHA}
      size: 254
    original:
      source: url
      url: https://example.invalid/rife47.pth
    placement: image
{extra}"""


def check(tmp_path: Path, text: str, capsys) -> tuple[int, list[str]]:
    path = tmp_path / "models.lock.yaml"
    path.write_text(text, encoding="utf-8")
    code = main(["check", "--strict", "--lock", str(path)])
    err = capsys.readouterr().err.splitlines()
    return code, [line for line in err if line.startswith("error: ")]


ATTACKS = [
    # (dest as written in YAML, what the one error line says)
    ("main.py", "is code, not model data"),
    ("./models/vae/x.safetensors", "must be written as 'models/vae/x.safetensors'"),
    ("models//vae/x.safetensors", "must be written as 'models/vae/x.safetensors'"),
    ("custom_nodes/__init__vae.py", "is code, not model data"),
    ("custom_nodes/ComfyUI-KJNodes/nodes/nodes.py", "a file ending in .py is code"),
    (".git/config", "the component '.git' is hidden"),
    (".bake-stamps/x.json", "the component '.bake-stamps' is hidden"),
    ("custom_nodes/ComfyUI-KJNodes/.bake/nodes-manifest.json", "'.bake' is hidden"),
    ("models/vae/.git/config", "'.git' is hidden"),
    # a .gitignore would make foreign files in a node's folder look like generated data
    ("custom_nodes/ComfyUI-KJNodes/sub/.gitignore", "'.gitignore' is hidden"),
    ("models/vae/.x.safetensors.lock", "is hidden"),
    ("extra_model_paths.yaml", "expected a path under models/ or inside a custom node's folder"),
    ("user/default/comfy.settings.json", "expected a path under models/"),
    ("custom_nodes/evil.bin", "expected a path under models/ or inside a custom node's folder"),
    ("custom_nodes/ComfyUI-KJNodes/web/js/evil.js", "a file ending in .js is code"),
    ("custom_nodes/ComfyUI-KJNodes/web/x.HTML", "a file ending in .html is code"),
    ("models/loras/helper.cpython-311-x86_64-linux-gnu.so", "a file ending in .so is code"),
    ("models/loras/libcuda.so.1", "a file ending in .so is code"),
    ("models/loras/x.pyc", "a file ending in .pyc is code"),
    ("models/loras/run.sh", "a file ending in .sh is code"),
    ("models/loras/notebook.ipynb", "a file ending in .ipynb is code"),
    ('"models/vae/x.safetensors\\nerror: forged line"', "control character U+000A"),
    ('"models/vae/x\\0.safetensors"', "control character U+0000"),
    ('"models/vae/x\\e[2K.safetensors"', "control character U+001B"),
    ('"models/vae/x\\u2028y.safetensors"', "control character U+2028"),
    # a right-to-left override shows "evil\u202eyp.pth" as "evilhtp.py" in a review
    ('"models/vae/evil\\u202Eyp.pth"', "control character U+202E"),
]


@pytest.mark.parametrize(("dest", "expected"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_a_dest_that_is_not_model_data_is_refused(tmp_path, capsys, dest, expected):
    code, errors = check(tmp_path, lock_text(dest), capsys)
    assert code == 1
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"error: {tmp_path / 'models.lock.yaml'}: models.evil.dest: ")
    assert expected in errors[0]


LEGITIMATE = [
    "models/vae/wan_2.1_vae.safetensors",
    "models/upscale_models/4x-UltraSharp.pth",
    "models/checkpoints/sd15.ckpt",
    "models/unet/wan2.2-Q4_K_M.gguf",
    "models/onnx/yolox_l.onnx",
    "models/clip_vision/model.bin",
    "models/loras/style.v2.safetensors",
    "custom_nodes/ComfyUI-KJNodes/models/some.pt",
]


@pytest.mark.parametrize("dest", LEGITIMATE)
def test_model_files_under_models_or_a_node_folder_pass(tmp_path, capsys, dest):
    assert check(tmp_path, lock_text(dest), capsys) == (0, [])


def test_a_volume_entry_lies_under_models(tmp_path, capsys):
    # ComfyUI finds volume files through extra_model_paths.yaml, which maps VOLUME/models only
    dest = "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife/rife49.pth"
    code, errors = check(tmp_path, lock_text(dest, placement="volume"), capsys)
    assert code == 1 and len(errors) == 1
    assert "models.evil.dest: a volume entry must lie under models/" in errors[0]
    assert check(tmp_path, lock_text("models/x/y.bin", placement="volume"), capsys) == (0, [])


HF_CACHE_ENTRY = f"""\
  cached:
    dest: {{dest}}
    locked:
      blake3: {BLAKE}
      revision: {REV}
      sha256: {SHA}
      size: 254
    original:
      path: split_files/vae/wan_2.1_vae.safetensors
      repo: Comfy-Org/Wan_2.2_ComfyUI_Repackaged
      revision: main
      source: hf
    placement: cache
"""


def test_a_hub_file_may_come_from_runpods_model_cache(tmp_path, capsys):
    extra = HF_CACHE_ENTRY.format(dest="models/vae/wan_2.1_vae.safetensors")
    assert check(tmp_path, lock_text("models/x/y.bin", extra=extra), capsys) == (0, [])


def test_a_cache_entry_lies_under_models(tmp_path, capsys):
    extra = HF_CACHE_ENTRY.format(dest="custom_nodes/ComfyUI-KJNodes/models/some.pt")
    code, errors = check(tmp_path, lock_text("models/x/y.bin", extra=extra), capsys)
    assert code == 1 and len(errors) == 1
    assert "models.cached.dest: a cache entry must lie under models/" in errors[0]


def test_only_a_hub_file_can_come_from_the_model_cache(tmp_path, capsys):
    code, errors = check(tmp_path, lock_text("models/x/y.bin", placement="cache"), capsys)
    assert code == 1 and len(errors) == 1, errors
    assert "models.evil.placement: cache is for Hugging Face files" in errors[0]
    assert "this entry's source is url: use image or volume" in errors[0]


def test_one_path_cannot_be_a_file_and_a_folder(tmp_path, capsys):
    extra = f"""\
  nested:
    dest: models/vae/x/y.safetensors
    locked:
      blake3: {BLAKE}
      sha256: {SHA}
      size: 254
    original:
      source: url
      url: https://example.invalid/y
    placement: image
"""
    code, errors = check(tmp_path, lock_text("models/vae/x", extra=extra), capsys)
    assert code == 1
    assert errors == [
        f"error: {tmp_path / 'models.lock.yaml'}: models.nested.dest: 'models/vae/x/y.safetensors'"
        " needs 'models/vae/x' to be a folder, but models.evil writes a file there: one path "
        "cannot be a file and a folder"
    ]


def test_size_is_bounded(tmp_path, capsys):
    code, errors = check(tmp_path, lock_text("models/vae/x.bin", size="1" + "0" * 34), capsys)
    assert code == 1
    assert errors == [
        f"error: {tmp_path / 'models.lock.yaml'}: models.evil.locked.size: expected at most "
        f"1099511627776 bytes (1 TiB), found 1{'0' * 34}"
    ]
    # a 1 TiB file is the most a pin may say
    assert check(tmp_path, lock_text("models/vae/x.bin", size=str(1 << 40)), capsys) == (0, [])


def test_a_hub_pin_needs_its_sha256(tmp_path, capsys):
    text = f"""\
version: 1
models:
  vae:
    dest: models/vae/wan_2.1_vae.safetensors
    locked:
      blake3: {BLAKE}
      revision: {REV}
      size: 254
    original:
      path: split_files/vae/wan_2.1_vae.safetensors
      repo: Org/Repo
      source: hf
    placement: image
"""
    code, errors = check(tmp_path, text, capsys)
    assert code == 1 and len(errors) == 1
    assert "models.vae.locked.sha256: required for a Hugging Face source" in errors[0]
    fixed = text.replace("      size: 254\n", f"      sha256: {SHA}\n      size: 254\n")
    assert check(tmp_path, fixed, capsys) == (0, [])


def a_repo(tmp_path: Path, models: str) -> Path:
    """The committed nodes lock (nine real nodes), a requirements lock and `models`."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO / "nodes.lock.yaml", root / "nodes.lock.yaml")
    (root / "requirements.lock").write_text(VALID_REQUIREMENTS, encoding="utf-8")
    (root / "models.lock.yaml").write_text(models, encoding="utf-8")
    return root


def test_frame_interpolation_keeps_its_rife_checkpoint_with_the_real_nodes_lock(
    tmp_path, capsys, monkeypatch
):
    root = a_repo(tmp_path, lock_text("models/vae/x.safetensors"))
    monkeypatch.setenv("BAKE_ROOT", str(root))
    assert main(["check"]) == 0, capsys.readouterr().err
    assert "error:" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "folder",
    [
        "ComfyUI-Frame-Interp",  # no such node: a typo or a stale entry
        "comfyui-frame-interpolation",  # Linux compares names exactly: a second folder
        "ComfyUI-Manager",  # excluded: it installs code at run time
    ],
)
def test_a_model_inside_a_folder_no_locked_node_owns_is_refused(
    tmp_path, capsys, monkeypatch, folder
):
    root = a_repo(tmp_path, lock_text(f"custom_nodes/{folder}/ckpts/rife/rife49.pth"))
    monkeypatch.setenv("BAKE_ROOT", str(root))
    assert main(["check"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert (
        f"models.evil.dest: 'custom_nodes/{folder}/ckpts/rife/rife49.pth' is inside" in (errors[0])
    )
    assert "which is not a custom node of the nodes lock" in errors[0]


def test_verify_cannot_print_a_forged_line(tmp_path, capsys):
    """The dest with a newline never reaches verify's output: the lock is refused first, and
    the refusal shows the dest escaped, on one line."""
    path = tmp_path / "models.lock.yaml"
    path.write_text(lock_text('"models/vae/x.safetensors\\nerror: all models verified"'))
    code = main(["models", "verify", "--comfyui-dir", str(tmp_path), "--lock", str(path)])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert len(err) == 1 and "control character U+000A" in err[0]
    assert not any(line.startswith("error: all models") for line in err)
