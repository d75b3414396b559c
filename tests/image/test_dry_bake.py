"""The dry bake: the Dockerfile's own `python -m bake` steps, in its order, against local
stand-ins for the internet, then the worker booted on the result and one job run through it.

What stands in for what:
- GitHub: bare repositories on disk; git's `url.<base>.insteadOf` (in a GIT_CONFIG_GLOBAL of
  this test) sends the lock's real https://github.com/... URLs to them. ComfyUI's repository
  holds the fake ComfyUI, so the worker starts "ComfyUI" from what `nodes install` put there.
- Hugging Face: a Hub-compatible server on loopback (HF_ENDPOINT) that requires a token, which
  reaches `models fetch` only through the variables the Dockerfile's secret mounts set.
- Plain URLs (RIFE): a file server on loopback.
- The image's Python environment: this test's interpreter, and a requirements.lock listing
  exactly its distributions with the sha256 of the files uv.lock installed them from.
- The image's filesystem: a temporary root; /comfyui, /wheels, /opt/bake and /tmp map into it.

The test locks keep the real entry names, URLs, model names and destinations; only the
content is small and the sources local. Not run here: apt, pip, the cuobjdump check (no CUDA)
and the COPY steps, which the recipe tests cover by reading the Dockerfile.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name
from support import fake_comfyui
from support.dockerfile import Dockerfile, Instruction, bake_commands, parse
from support.fake_comfyui.runner import WorkerProcess
from support.gitrepos import GitWorld
from support.hfserver import HubServer
from support.httpserver import FileServer
from support.modelfiles import blob, entry, write_lock

from bake.locks.models import HfSource, UrlSource, load_models_lock
from bake.locks.nodes import GitSource, NodeEntry, NodesLock, load_nodes_lock, write_nodes_lock
from bake.nodes.resolve import update_nodes

ROOT = Path(__file__).resolve().parents[2]
HF_TEST_TOKEN = "dry-bake-test-token"
FAKE_HOOKS = ("FakeCrash", "FakeHang", "FakeIgnoreInterrupt")
# BuildKit secret id -> the value this test provides for it (what `--secret id=...` would).
SECRETS = {"hf_token": HF_TEST_TOKEN}
# What `--build-arg NAME=...` would set (build.yml passes the commit this way).
BUILD_ARGS = {"BAKE_COMMIT": "c0ffee" * 6 + "c0ff"}

# A SageAttention stand-in with an in-tree build backend (nothing to download): its wheel
# records the build environment, so the test sees what the Dockerfile's ENV passed on.
SAGE_BACKEND = """\
import json, os, zipfile

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "sageattention-2.2.0-py3-none-any.whl"
    seen = {k: os.environ.get(k) for k in ("TORCH_CUDA_ARCH_LIST", "CUDA_HOME", "MAX_JOBS")}
    info = "sageattention-2.2.0.dist-info"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as whl:
        whl.writestr("sageattention/__init__.py", "")
        whl.writestr("sageattention/build_env.json", json.dumps(seen))
        whl.writestr(info + "/METADATA",
                     "Metadata-Version: 2.1\\nName: sageattention\\nVersion: 2.2.0\\n")
        whl.writestr(info + "/WHEEL", "Wheel-Version: 1.0\\nGenerator: test\\n"
                     "Root-Is-Purelib: true\\nTag: py3-none-any\\n")
        whl.writestr(info + "/RECORD", "")
    return name
"""
SAGE_PYPROJECT = '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'


class ImageRoot:
    """The image's filesystem, rooted in a temporary directory."""

    MAPPED = ("/comfyui", "/wheels", "/opt/bake", "/tmp")

    def __init__(self, root: Path):
        self.root = root

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def translate(self, word: str) -> str:
        for prefix in self.MAPPED:
            if word == prefix or word.startswith(prefix + "/"):
                return str(self.path(word))
        return word


def github_repos(world: GitWorld, real: NodesLock) -> None:
    """A local bare repository behind every URL of the real nodes lock."""
    fake = Path(fake_comfyui.__file__).parent
    for node in real.entries():
        repo = world.repo(node.name)
        if node.kind == "comfyui":
            files: dict[str, str | bytes] = {
                "main.py": (fake / "main.py").read_text(),
                "object_info.json.gz": (fake / "object_info.json.gz").read_bytes(),
                "requirements.txt": "aiohttp\npillow\n",
            }
        elif node.kind == "source_build":
            files = {
                "pyproject.toml": SAGE_PYPROJECT,
                "backend.py": SAGE_BACKEND,
                "README.md": "# SageAttention\n",
            }
        else:
            files = {"__init__.py": "NODE_CLASS_MAPPINGS = {}\n"}
        if node.requirements_file:
            files.setdefault(node.requirements_file, "numpy\n")
        repo.commit(files, f"{node.name} at its locked ref")
        if node.original.ref.startswith("v"):
            repo.tag(node.original.ref)
        else:
            repo.force_branch(node.original.ref, repo.head())
        world.mirror(node.original.url, repo)


def nodes_lock(world: GitWorld, path: Path) -> None:
    """The real lock's entries (names, URLs, refs, env), resolved against the local repos the
    way `update-locks --nodes` resolves them against GitHub."""
    real = load_nodes_lock(ROOT / "nodes.lock.yaml")
    github_repos(world, real)
    unlocked = NodesLock(
        NodeEntry(
            "comfyui",
            "comfyui",
            real.comfyui.original,
            requirements_file=real.comfyui.requirements_file,
        ),
        {
            name: NodeEntry(
                name,
                "custom_node",
                GitSource(e.original.url, e.original.ref),
                requirements_file=e.requirements_file,
            )
            for name, e in real.custom_nodes.items()
        },
        {
            name: NodeEntry(name, "source_build", e.original, env=dict(e.env))
            for name, e in real.source_builds.items()
        },
        real.exclude,
    )
    write_nodes_lock(unlocked, path)
    assert update_nodes(path, out=lambda _: None) == 0


def models_lock(hub: HubServer, files: FileServer, path: Path) -> dict[str, bytes]:
    """The real lock's image models (names and destinations), small and served locally."""
    real = load_models_lock(ROOT / "models.lock.yaml")
    entries, contents = [], {}
    for seed, model in enumerate(real.entries("image")):
        data = blob(4096 + seed * 512, seed)
        contents[model.dest] = data
        if isinstance(model.source, HfSource):
            commit = hub.add_file(model.source.repo, model.source.path, data)
            hub.require_token(model.source.repo, HF_TEST_TOKEN)
            entries.append(entry(model.name, model.source, model.dest, data, revision=commit))
        else:
            url = files.add(f"/{model.name}.pth", data)
            entries.append(entry(model.name, UrlSource(url), model.dest, data))
    write_lock(path, *entries)
    return contents


def requirements_lock(path: Path) -> None:
    """This interpreter's distributions, pinned with the hashes uv.lock installed them from."""
    uv_lock = tomllib.loads((ROOT / "uv.lock").read_text())
    hashes = {}
    for package in uv_lock["package"]:
        files = [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
        key = (canonicalize_name(package["name"]), package.get("version"))
        hashes[key] = sorted({f["hash"] for f in files if "hash" in f})
    lines = ["# The dry bake's interpreter, pinned from uv.lock.", ""]
    for dist in sorted(metadata.distributions(), key=lambda d: canonicalize_name(d.name)):
        name = canonicalize_name(dist.name)
        found = hashes.get((name, dist.version))
        if not found:  # our own project (editable) and the venv's own tools
            continue
        lines.append(f"{name}=={dist.version} \\")
        lines += [f"    --hash={h} \\" for h in found[:-1]] + [f"    --hash={found[-1]}"]
    path.write_text("\n".join(lines) + "\n")


def bake_steps(dockerfile: Dockerfile) -> list[tuple[Instruction, list[str]]]:
    return [
        (i, argv)
        for i in dockerfile.instructions
        if i.keyword == "RUN"
        for argv in bake_commands(i.value)
    ]


def workdir_of(dockerfile: Dockerfile, instruction: Instruction) -> str:
    """The WORKDIR in force at a RUN (the last one before it in its stage's lineage)."""
    workdir = "/"
    for stage in reversed(dockerfile.lineage(instruction.stage)):
        for candidate in stage.of("WORKDIR"):
            if candidate.line < instruction.line:
                workdir = candidate.value
    return workdir


def step_env(
    dockerfile: Dockerfile, instruction: Instruction, image: ImageRoot, base: dict[str, str]
) -> dict[str, str]:
    """What the RUN sees: the stage's ENV (paths mapped) and its secret mounts' variables."""
    env = dict(base)
    for name, value in dockerfile.env(instruction.stage).items():
        if name not in ("PATH", "VIRTUAL_ENV"):
            env[name] = image.translate(value)
    # a stage's ARG with a default is in the environment of its RUNs, as Docker sets it
    for stage in reversed(dockerfile.lineage(instruction.stage)):
        for arg in stage.of("ARG"):
            if arg.line < instruction.line:
                for name, value in arg.assignments().items():
                    if name in BUILD_ARGS:
                        env[name] = BUILD_ARGS[name]
                    elif value is not None:
                        env[name] = image.translate(value)
    for mount in instruction.mounts():
        if mount.get("type") == "secret" and mount.get("id") in SECRETS:
            env[mount["env"]] = SECRETS[mount["id"]]
    return env


@pytest.mark.slow
def test_the_dockerfile_bake_steps_build_a_root_the_worker_boots_and_serves(tmp_path, monkeypatch):
    dockerfile = parse(ROOT / "Dockerfile")
    image = ImageRoot(tmp_path / "image")
    locks = image.path("/opt/bake")
    locks.mkdir(parents=True)
    world = GitWorld.create(tmp_path, monkeypatch)
    monkeypatch.setenv("BAKE_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "BAKE_ROOT", "MODELS_LOCK"):
        monkeypatch.delenv(name, raising=False)
    nodes_lock(world, locks / "nodes.lock.yaml")
    requirements_lock(locks / "requirements.lock")
    # as the runtime stage's COPY puts them beside the locks (the provenance record reads them)
    shutil.copy(ROOT / "apt.lock.yaml", locks / "apt.lock.yaml")
    shutil.copy(ROOT / "Dockerfile", locks / "Dockerfile")
    # the class table as reviewed at this world's commits, with the fake ComfyUI's test hooks
    # (which it registers too) under ComfyUI
    table = yaml.safe_load((ROOT / "node-classes.yaml").read_text())
    world_lock = yaml.safe_load((locks / "nodes.lock.yaml").read_text())
    table["packs"]["ComfyUI"]["rev"] = world_lock["comfyui"]["locked"]["rev"]
    for name, node in world_lock["custom_nodes"].items():
        table["packs"][name]["rev"] = node["locked"]["rev"]
    table["packs"]["ComfyUI"]["classes"].update(dict.fromkeys(FAKE_HOOKS, "unreviewed"))
    (locks / "node-classes.yaml").write_text(yaml.safe_dump(table))

    with HubServer() as hub, FileServer() as files:
        contents = models_lock(hub, files, locks / "models.lock.yaml")
        base = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf")}
        steps = bake_steps(dockerfile)
        assert len(steps) >= 5
        for instruction, argv in steps:
            workdir = workdir_of(dockerfile, instruction)
            command = [sys.executable, "-m", "bake", *map(image.translate, argv)]
            result = subprocess.run(
                command,
                cwd=image.translate(workdir),
                capture_output=True,
                text=True,
                env=step_env(dockerfile, instruction, image, base),
                timeout=240,
            )
            assert result.returncode == 0, (
                f"Dockerfile line {instruction.line}: python -m bake {' '.join(argv)} "
                f"failed:\n{result.stdout}\n{result.stderr}"
            )
            assert HF_TEST_TOKEN not in result.stdout + result.stderr, "a credential was logged"

    # SageAttention: one wheel, built with the arch list the Dockerfile and lock give.
    wheels = list(image.path("/wheels").glob("sageattention-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as whl:
        seen = json.loads(whl.read("sageattention/build_env.json"))
    assert seen["TORCH_CUDA_ARCH_LIST"] == "12.0"

    # ComfyUI and every node at its locked commit, every image model at its destination.
    comfyui = image.path("/comfyui")
    lock = yaml.safe_load((locks / "nodes.lock.yaml").read_text())
    for name, node in lock["custom_nodes"].items():
        head = subprocess.run(
            ["git", "-C", str(comfyui / "custom_nodes" / name), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert head.stdout.strip() == node["locked"]["rev"], name
    assert (comfyui / "main.py").is_file()
    for dest, data in contents.items():
        assert (comfyui / dest).read_bytes() == data, dest
    # Nothing build-specific rides along in the model layers (stamps hold inodes and mtimes).
    assert not (comfyui / ".bake-stamps").exists()

    # The provenance record names what this build was made of: the wheel actually built, the
    # commit given as a build argument, every node's pin and the license found in its folder.
    record_path = image.path("/opt/bake/provenance.json")
    record_bytes = record_path.read_bytes()
    record = json.loads(record_bytes)
    assert record_bytes == (json.dumps(record, sort_keys=True, indent=2) + "\n").encode()
    assert record["commit"] == BUILD_ARGS["BAKE_COMMIT"]
    wheel = record["sageattention"]["wheel"]
    assert wheel["file"] == wheels[0].name
    assert wheel["sha256"] == "sha256:" + hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    for name, node in lock["custom_nodes"].items():
        assert record["custom_nodes"][name]["rev"] == node["locked"]["rev"], name
        assert "license" in record["custom_nodes"][name]
    assert {m: e["sha256"] for m, e in record["models"].items() if e["placement"] == "image"} == {
        m: e["locked"]["sha256"]
        for m, e in yaml.safe_load((locks / "models.lock.yaml").read_text())["models"].items()
        if e["placement"] == "image"
    }
    record_digest = "sha256:" + hashlib.sha256(record_bytes).hexdigest()

    # Boot the worker on that root, with the image's run-time ENV, and run the sample job.
    final_env = {
        name: image.translate(value)
        for name, value in dockerfile.env(dockerfile.final).items()
        if name not in ("PATH", "VIRTUAL_ENV")
    }
    job = json.loads((ROOT / "test_input.json").read_text())["input"]
    worker_env = {**final_env, "MODEL_VERIFY": "full", "COMFYUI_DIR": str(comfyui)}
    # Only the bake steps run here, not the useradd that creates the image's COMFYUI_USER;
    # tests/worker/test_comfyui_user.py boots the worker with ComfyUI under another user.
    worker_env["COMFYUI_USER"] = ""
    with WorkerProcess(image.root, env=worker_env) as worker:
        worker.wait_ready(timeout=120)
        try:
            answer = worker.runsync(job, timeout=120)
        finally:
            log = worker.log()
            print(log[-6000:])  # shown by pytest only when the test fails
    assert answer.get("status") == "COMPLETED", f"{answer}\n{log}"
    videos = answer["output"].get("videos") or []
    assert videos and videos[0]["filename"].endswith(".mp4"), answer["output"]
    # the client can tell exactly which build served the job
    assert answer["output"]["provenance"] == {
        "sha256": record_digest,
        "commit": BUILD_ARGS["BAKE_COMMIT"],
    }
    assert f"provenance: {record_digest}" in log
    # MODEL_VERIFY=full hashed every baked model against the lock before the handler started.
    verified = re.search(r"models: (\d+) verified", log)
    assert verified and int(verified.group(1)) == len(contents), log
    assert HF_TEST_TOKEN not in log
