"""Every malformed lock is refused with one line per problem naming file, entry and field."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml
from support.lockdata import REPO, VALID_REQUIREMENTS, valid_models, valid_nodes

from bake.errors import LockError
from bake.locks.models import dumps_models_lock, parse_models_lock
from bake.locks.nodes import dumps_nodes_lock, parse_nodes_lock
from bake.locks.requirements import parse_requirements_lock


def _problems(parse, data, filename) -> list[str]:
    with pytest.raises(LockError) as info:
        parse(data, filename)
    return [str(p) for p in info.value.problems]


def _break(data: dict, path: str, value) -> dict:
    """Set (or with value=DELETE, remove) the field at a dotted path."""
    data = copy.deepcopy(data)
    *parents, last = path.split("|")
    target = data
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return data


DELETE = object()

NODE_CASES = [
    ("version unknown", "version", 2, "version: unknown lock version: expected 1, found integer 2"),
    ("version missing", "version", DELETE, "version: required field is missing"),
    ("unknown top-level key", "extras", {}, "extras: unknown field"),
    ("unknown entry key", "comfyui|branch", "x", "comfyui.branch: unknown field"),
    (
        "original missing",
        "custom_nodes|rgthree-comfy|original",
        DELETE,
        "custom_nodes.rgthree-comfy.original: required field is missing",
    ),
    ("ref missing", "comfyui|original|ref", DELETE, "comfyui.original.ref: required field"),
    (
        "short rev",
        "comfyui|locked|rev",
        "7ac999bf",
        "comfyui.locked.rev: expected a full commit (40 lowercase hex characters), found string "
        "'7ac999bf'",
    ),
    (
        "non-hex rev",
        "custom_nodes|ComfyUI-KJNodes|locked|rev",
        "z" * 40,
        "custom_nodes.ComfyUI-KJNodes.locked.rev: expected a full commit",
    ),
    (
        "bad date",
        "comfyui|locked|date",
        "yesterday",
        "comfyui.locked.date: expected an ISO 8601 date, found string 'yesterday'",
    ),
    (
        "bad tree hash",
        "custom_nodes|ComfyUI-KJNodes|locked|tree",
        "sha1:abc",
        "custom_nodes.ComfyUI-KJNodes.locked.tree: expected 'tree2-blake3:' and 64",
    ),
    (
        "requirements not a list",
        "comfyui|locked|requirements",
        "torch",
        "comfyui.locked.requirements: expected a list of strings, found string 'torch'",
    ),
    (
        "requirements_file escapes",
        "comfyui|requirements_file",
        "../x.txt",
        "comfyui.requirements_file: must stay inside",
    ),
    (
        "manager by name",
        "custom_nodes|ComfyUI-Manager",
        {"original": {"url": "https://example.invalid/x/y.git", "ref": "main"}},
        "custom_nodes.ComfyUI-Manager: ComfyUI-Manager is excluded",
    ),
    (
        "manager by url, other case and owner",
        "custom_nodes|manager",
        {
            "original": {
                "url": "https://example.invalid/Comfy-Org/comfyui-manager.git",
                "ref": "main",
            }
        },
        "custom_nodes.manager: ComfyUI-Manager is excluded",
    ),
    (
        "duplicate names differing in case",
        "custom_nodes|comfyui-kjnodes",
        {"original": {"url": "https://example.invalid/a/b.git", "ref": "main"}},
        "duplicate name: custom_nodes.ComfyUI-KJNodes already uses it",
    ),
    (
        "env value not a string",
        "source_builds|sageattention|env|TORCH_CUDA_ARCH_LIST",
        12.0,
        "source_builds.sageattention.env.TORCH_CUDA_ARCH_LIST: expected a string",
    ),
    (
        "node name with a slash",
        "custom_nodes|a/b",
        {"original": {"url": "https://example.invalid/a/b.git", "ref": "main"}},
        "custom_nodes.a/b: expected a plain folder name",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "expected"), [c[1:] for c in NODE_CASES], ids=[c[0] for c in NODE_CASES]
)
def test_bad_nodes_lock_names_file_entry_and_field(path, value, expected):
    problems = _problems(parse_nodes_lock, _break(valid_nodes(), path, value), "nodes.lock.yaml")
    assert any(expected in p for p in problems), problems
    assert all(p.startswith("nodes.lock.yaml: ") for p in problems)


MODEL_CASES = [
    (
        "unknown source kind",
        "models|wan_vae|original|source",
        "ftp",
        "models.wan_vae.original.source: unknown source kind: expected one of hf, s3, url, found "
        "string 'ftp'",
    ),
    (
        "hf without repo",
        "models|wan_vae|original|repo",
        DELETE,
        "models.wan_vae.original.repo: required field is missing",
    ),
    (
        "hf without path",
        "models|wan_vae|original|path",
        DELETE,
        "models.wan_vae.original.path: required field is missing",
    ),
    (
        "absolute dest",
        "models|wan_vae|dest",
        "/etc/passwd",
        "models.wan_vae.dest: must be relative to the ComfyUI root, not absolute, found "
        "'/etc/passwd'",
    ),
    (
        "dest escaping the root",
        "models|wan_vae|dest",
        "models/../../x.bin",
        "models.wan_vae.dest: must stay inside the ComfyUI root (no '..')",
    ),
    (
        "duplicate dest",
        "models|rife47|dest",
        "models/vae/wan_2.1_vae.safetensors",
        "is also the dest of models.wan_vae: two entries cannot write one file",
    ),
    (
        "negative size",
        "models|wan_vae|locked|size",
        -1,
        "models.wan_vae.locked.size: expected a whole number of bytes >= 0, found integer -1",
    ),
    (
        "size not an integer",
        "models|wan_vae|locked|size",
        "14.6GB",
        "models.wan_vae.locked.size: expected a whole number of bytes >= 0, found string",
    ),
    (
        "size is a float",
        "models|wan_vae|locked|size",
        1.5,
        "models.wan_vae.locked.size: expected a whole number of bytes >= 0, found number",
    ),
    (
        "short blake3",
        "models|wan_vae|locked|blake3",
        "abc123",
        "models.wan_vae.locked.blake3: expected 64 lowercase hex characters, found string 'abc123'",
    ),
    (
        "non-hex sha256",
        "models|wan_vae|locked|sha256",
        "g" * 64,
        "models.wan_vae.locked.sha256: expected 64 lowercase hex characters",
    ),
    (
        "hf pin without revision",
        "models|wan_vae|locked|revision",
        DELETE,
        "models.wan_vae.locked.revision: required for a Hugging Face source",
    ),
    (
        "bad placement",
        "models|wan_vae|placement",
        "disk",
        "models.wan_vae.placement: expected image, volume or cache, found string 'disk'",
    ),
    (
        "original missing",
        "models|rife47|original",
        DELETE,
        "models.rife47.original: required field is missing",
    ),
    (
        "url source not http",
        "models|rife47|original|url",
        "file:///etc/passwd",
        "models.rife47.original.url: expected an http(s) URL",
    ),
    (
        "s3 env name not a name",
        "models|tuned|original|endpoint_url_env",
        "not a name",
        "models.tuned.original.endpoint_url_env: expected the name of an environment variable",
    ),
    ("unknown model key", "models|wan_vae|sha", "x", "models.wan_vae.sha: unknown field"),
    ("models missing", "models", DELETE, "models: required field is missing"),
]


@pytest.mark.parametrize(
    ("path", "value", "expected"), [c[1:] for c in MODEL_CASES], ids=[c[0] for c in MODEL_CASES]
)
def test_bad_models_lock_names_file_entry_and_field(path, value, expected):
    problems = _problems(parse_models_lock, _break(valid_models(), path, value), "models.lock.yaml")
    assert any(expected in p for p in problems), problems


def test_duplicate_model_names_in_yaml_are_refused():
    # YAML itself keeps the last of two equal keys; names differing in case both survive.
    data = valid_models()
    data["models"]["WAN_VAE"] = copy.deepcopy(data["models"]["rife47"])
    data["models"]["WAN_VAE"]["dest"] = "models/other.bin"
    problems = _problems(parse_models_lock, data, "models.lock.yaml")
    assert any(
        "models.WAN_VAE: duplicate name: models.wan_vae already uses it" in p for p in problems
    )


def test_every_problem_is_reported_not_only_the_first():
    data = _break(valid_models(), "models|wan_vae|locked|size", -5)
    data = _break(data, "models|rife47|dest", "/abs")
    problems = _problems(parse_models_lock, data, "models.lock.yaml")
    assert len(problems) == 2


REQUIREMENT_CASES = [
    (
        "no ==",
        "numpy>=2.0 \\\n    --hash=sha256:" + "1" * 64 + "\n",
        "numpy: expected an exact pin 'name==version', found 'numpy>=2.0'",
    ),
    ("no hash", "numpy==2.2.6\n", "numpy==2.2.6: no --hash"),
    ("short hash", "numpy==2.2.6 --hash=sha256:abc\n", "numpy: expected --hash=sha256:<64 hex>"),
    ("wildcard", "numpy==2.* --hash=sha256:" + "1" * 64 + "\n", "expected an exact pin"),
    ("editable", "-e ./local\n", "unsupported option line '-e ./local'"),
    (
        "pinned twice",
        VALID_REQUIREMENTS.split("pynvml")[0] + "NumPy==2.0.0 --hash=sha256:" + "1" * 64 + "\n",
        "numpy: pinned twice",
    ),
    ("not a requirement", "!!! --hash=sha256:" + "1" * 64 + "\n", "not a requirement"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in REQUIREMENT_CASES], ids=[c[0] for c in REQUIREMENT_CASES]
)
def test_bad_requirements_lock_line_is_refused(text, expected):
    with pytest.raises(LockError) as info:
        parse_requirements_lock(text, "requirements.lock")
    lines = [str(p) for p in info.value.problems]
    assert any(expected in line for line in lines), lines
    assert all(line.startswith("requirements.lock: line ") for line in lines)


def test_valid_requirements_lock_is_read():
    lock = parse_requirements_lock(VALID_REQUIREMENTS)
    assert lock.options == ("--index-url https://pypi.org/simple",)
    assert lock.pins["numpy"].version == "2.2.6"
    assert lock.pins["numpy"].hashes == ("sha256:" + "1" * 64, "sha256:" + "2" * 64)
    assert lock.pins["pynvml"].marker == 'platform_machine != "aarch64"'


def test_valid_locks_pass_and_keep_their_facts():
    nodes = parse_nodes_lock(valid_nodes())
    assert nodes.comfyui.locked.requirements == ("torch", "numpy>=1.25.0")
    assert nodes.get("sageattention").env == {"TORCH_CUDA_ARCH_LIST": "12.0"}
    assert [e.name for e in nodes.unlocked()] == ["rgthree-comfy"]
    models = parse_models_lock(valid_models())
    assert models.get("tuned").source.endpoint_url_env == "TUNED_ENDPOINT"
    assert models.get("rife47").placement == "image"
    assert [e.name for e in models.entries("volume")] == ["tuned"]


def test_invalid_yaml_reports_its_line(tmp_path):
    bad = tmp_path / "nodes.lock.yaml"
    bad.write_text("version: 1\ncomfyui:\n  original: {url: x, ref: [\n")
    result = _run_check("--lock", str(bad))
    assert result.returncode == 1
    assert "nodes.lock.yaml: line 4, column 1: invalid YAML" in result.stderr


def test_canonical_dump_is_stable_whatever_the_input_order(nodes_data, models_data):
    shuffled = dict(reversed(list(nodes_data.items())))
    shuffled["custom_nodes"] = dict(reversed(list(nodes_data["custom_nodes"].items())))
    assert dumps_nodes_lock(parse_nodes_lock(shuffled)) == dumps_nodes_lock(
        parse_nodes_lock(nodes_data)
    )
    text = dumps_models_lock(parse_models_lock(models_data))
    assert dumps_models_lock(parse_models_lock(yaml.safe_load(text))) == text


@pytest.mark.parametrize("name", ["nodes.lock.yaml", "models.lock.yaml"])
def test_committed_locks_round_trip_byte_identical(name):
    from bake.locks.models import load_models_lock
    from bake.locks.nodes import load_nodes_lock

    path = REPO / name
    load, dump = (
        (load_nodes_lock, dumps_nodes_lock)
        if name.startswith("nodes")
        else (load_models_lock, dumps_models_lock)
    )
    assert dump(load(path)) == path.read_text(encoding="utf-8")


def _run_check(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bake", "check", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_bake_check_passes_on_the_committed_locks_with_warnings():
    result = _run_check()
    assert result.returncode == 0, result.stderr
    assert "not locked yet; run `scripts/update-locks.py --models wan_2.1_vae`" in result.stderr


def test_bake_check_strict_refuses_unlocked_entries(tmp_path):
    lock = tmp_path / "models.lock.yaml"
    lock.write_text(dumps_models_lock(parse_models_lock(valid_models())))
    assert _run_check("--lock", str(lock)).returncode == 0
    strict = _run_check("--lock", str(lock), "--strict")
    assert strict.returncode == 1
    assert "error: " in strict.stderr and "models.rife47: not locked yet" in strict.stderr


def test_bake_check_prints_one_line_per_problem(tmp_path):
    data = _break(valid_nodes(), "comfyui|locked|rev", "abc")
    data = _break(data, "version", 3)
    lock = tmp_path / "nodes.lock.yaml"
    lock.write_text(yaml.safe_dump(data))
    result = _run_check("--lock", str(lock))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2, result.stderr


def test_lock_kind_comes_from_content_when_the_name_says_nothing(tmp_path):
    lock = tmp_path / "custom-name.yaml"
    lock.write_text(yaml.safe_dump(_break(valid_models(), "models|wan_vae|locked|size", -1)))
    result = _run_check("--lock", str(lock))
    assert result.returncode == 1
    assert "models.wan_vae.locked.size" in result.stderr


def test_missing_lock_file_is_one_clear_error(tmp_path):
    result = _run_check("--lock", str(tmp_path / "nodes.lock.yaml"))
    assert result.returncode == 1
    assert "cannot read" in result.stderr


def test_model_inside_an_unknown_node_folder_is_refused():
    from bake.check import cross_check

    models = valid_models()
    models["models"]["rife47"]["dest"] = "custom_nodes/ComfyUI-Frame-Interp/ckpts/rife47.pth"
    problems = cross_check(
        parse_nodes_lock(valid_nodes()), parse_models_lock(models), "models.lock.yaml"
    )
    assert problems == [
        "models.lock.yaml: models.rife47.dest: 'custom_nodes/ComfyUI-Frame-Interp/ckpts/"
        "rife47.pth' is inside custom_nodes/ComfyUI-Frame-Interp, which is not a custom node "
        "of the nodes lock"
    ]
    models["models"]["rife47"]["dest"] = "custom_nodes/ComfyUI-KJNodes/x.pth"
    assert cross_check(parse_nodes_lock(valid_nodes()), parse_models_lock(models), "m") == []
    # Linux compares folder names exactly: this would be a second, unlocked folder
    models["models"]["rife47"]["dest"] = "custom_nodes/comfyui-kjnodes/x.pth"
    assert cross_check(parse_nodes_lock(valid_nodes()), parse_models_lock(models), "m") != []


def test_an_unforeseen_failure_is_one_error_line(monkeypatch, capsys):
    from bake import check, cli

    def boom(args):
        raise RuntimeError("unexpected state")

    monkeypatch.setattr(check, "cli", boom)
    assert cli.main(["check"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "error: check: unexpected RuntimeError: unexpected state (set "
        "BAKE_TRACEBACK=1 for the traceback)\n"
    )
    monkeypatch.setenv("BAKE_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        cli.main(["check"])
