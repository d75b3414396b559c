"""The GitHub workflows: they parse, they pin every third-party action to a commit, the test
workflow runs the README's test command, and the build passes credentials only as BuildKit
secrets that the Dockerfile mounts."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from support.dockerfile import parse

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
USES = re.compile(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as the boolean True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


ALL = ["test.yml", "build.yml", "update-locks.yml", "reproducible.yml"]


@pytest.mark.parametrize("name", ALL)
def test_workflow_parses_and_has_jobs(name):
    workflow = load(name)
    assert workflow["jobs"], name
    for job in workflow["jobs"].values():
        assert job.get("runs-on") and job.get("steps")


@pytest.mark.parametrize("name", ALL)
def test_third_party_actions_are_pinned_by_commit(name):
    lines = (WORKFLOWS / name).read_text().splitlines()
    uses = [(n, m) for n, line in enumerate(lines, 1) if (m := USES.match(line))]
    assert uses
    for number, match in uses:
        ref, comment = match.group(1), match.group(2)
        if ref.startswith("./"):
            continue
        assert PINNED.match(ref), f"{name}:{number}: {ref} is not pinned to a 40-hex commit"
        assert re.search(r"#\s*v\d", comment), f"{name}:{number}: say which version the sha is"


def test_the_test_workflow_runs_the_readme_command_on_pushes_and_pull_requests():
    workflow = load("test.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    # the README's command, split in two jobs: the real-ComfyUI tier, and everything else
    commands = [step["run"].strip() for step in workflow["jobs"]["test"]["steps"] if "run" in step]
    assert commands == ['./scripts/test -m "not real_comfyui"']
    real = workflow["jobs"]["real-comfyui"]
    tests = [step for step in real["steps"] if "scripts/test" in step.get("run", "")]
    assert [step["run"].strip() for step in tests] == ["./scripts/test -m real_comfyui"]
    assert (ROOT / "scripts" / "test").is_file()


def test_the_real_comfyui_job_gets_its_source_from_the_nodes_lock():
    workflow = load("test.yml")
    real = workflow["jobs"]["real-comfyui"]
    assert real["permissions"] == {"contents": "read"}
    fetch = next(step for step in real["steps"] if "bake nodes install" in step.get("run", ""))
    target = re.search(r"--comfyui-dir\s+\"?([^\s\"]+)", fetch["run"]).group(1)
    [test] = [step for step in real["steps"] if "scripts/test" in step.get("run", "")]
    assert test["env"]["COMFYUI_SRC"] == target.replace("$RUNNER_TEMP", "${{ runner.temp }}")
    assert real["steps"].index(fetch) < real["steps"].index(test)


def build_steps(workflow: dict) -> list[dict]:
    return [s for s in steps(workflow) if s.get("uses", "").startswith("docker/build-push-action@")]


def pushes(step: dict) -> bool:
    outputs = str(step["with"].get("outputs", ""))
    return step["with"].get("push") is True or "push=true" in outputs.split(",")


def build_step(workflow: dict) -> dict:
    """The step that builds the whole image and pushes it."""
    found = [s for s in build_steps(workflow) if pushes(s)]
    assert len(found) == 1
    return found[0]


def test_the_build_frees_disk_then_builds_with_the_actions_cache_and_pushes():
    workflow = load("build.yml")
    all_steps = steps(workflow)
    build = build_step(workflow)
    free = [i for i, s in enumerate(all_steps) if "rm -rf" in s.get("run", "")]
    assert free and free[0] < all_steps.index(build), "free disk space before building"
    uses = [s.get("uses", "").split("@")[0] for s in all_steps]
    assert "docker/setup-buildx-action" in uses
    login = next(s for s in all_steps if s.get("uses", "").startswith("docker/login-action@"))
    assert login["with"]["registry"] == "ghcr.io"
    assert "target" not in build["with"], "the pushed image is the Dockerfile's final stage"
    assert build["with"]["cache-from"].startswith("type=gha")
    # The Actions cache (10 GB) gets the stages below the models, never the models themselves.
    cached = [s for s in build_steps(workflow) if "cache-to" in s["with"]]
    assert cached and all(s["with"].get("target") == "runtime" for s in cached)
    assert all(s["with"]["cache-to"].startswith("type=gha") for s in cached)
    assert "mode=max" in cached[0]["with"]["cache-to"]
    assert all_steps.index(cached[0]) < all_steps.index(build)
    assert workflow["jobs"]["image"]["permissions"]["packages"] == "write"


def test_the_build_tags_the_commit_and_latest_on_the_default_branch():
    workflow = load("build.yml")
    meta = next(s for s in steps(workflow) if s.get("uses", "").startswith("docker/metadata"))
    tags = meta["with"]["tags"]
    assert "type=sha,format=long" in tags
    assert "type=raw,value=latest,enable={{is_default_branch}}" in tags
    assert build_step(workflow)["with"]["tags"] == "${{ steps.meta.outputs.tags }}"


def test_build_secrets_reach_only_buildkit_secret_mounts():
    workflow = load("build.yml")
    build = build_step(workflow)
    passed = {}
    for line in build["with"]["secrets"].strip().splitlines():
        secret_id, _, value = line.strip().partition("=")
        assert re.fullmatch(r"\$\{\{ secrets\.[A-Z0-9_]+ \}\}", value), line
        passed[secret_id] = value
    # Everywhere else in the workflow, only the registry login may touch a secret.
    for other in build_steps(workflow):
        assert other is build or "secrets" not in other["with"], "only the pushing build fetches"
    for step in steps(workflow):
        text = yaml.safe_dump({k: v for k, v in step.items() if k != "name"})
        if step is build:
            text = yaml.safe_dump({k: v for k, v in build["with"].items() if k != "secrets"})
        elif step.get("uses", "").startswith("docker/login-action@"):
            assert step["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"
            continue
        assert "secrets." not in text, f"a secret outside BuildKit secrets: {step}"
    assert "env" not in workflow and all("env" not in j for j in workflow["jobs"].values())
    # The ids passed are exactly the ids the Dockerfile mounts.
    mounted = {
        mount["id"]
        for instruction in parse(ROOT / "Dockerfile").instructions
        for mount in instruction.mounts()
        if mount.get("type") == "secret"
    }
    assert set(passed) == mounted


# -- update-locks.yml: resolves the locks where the network is and proposes a pull request ---


def test_update_locks_runs_weekly_and_on_demand_for_chosen_kinds_and_names():
    workflow = load("update-locks.yml")
    assert workflow["on"]["schedule"], "a weekly run keeps the pins moving"
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert {"kinds", "names"} <= set(inputs)
    commands = "\n".join(s.get("run", "") for s in steps(workflow))
    assert "scripts/bootstrap" in commands
    assert "scripts/update-locks.py" in commands
    assert "gh pr create" in commands and "gh pr edit" in commands, "one pull request, updated"


def test_update_locks_has_least_permissions():
    # the job that runs the resolvers cannot write; the one that can runs none of them
    workflow = load("update-locks.yml")
    assert workflow["permissions"] == {}
    resolve, propose = workflow["jobs"]["resolve"], workflow["jobs"]["propose"]
    assert resolve["permissions"] == {"contents": "read"}
    assert propose["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert "update-locks.py" not in "\n".join(s.get("run", "") for s in propose["steps"])


def test_update_locks_takes_credentials_only_from_secrets_and_never_expands_input_in_scripts():
    workflow = load("update-locks.yml")
    text = (WORKFLOWS / "update-locks.yml").read_text()
    # A credential never sits in the file itself: every token-like variable comes from secrets.
    for step in steps(workflow):
        for name, value in step.get("env", {}).items():
            if re.search(r"TOKEN|SECRET|KEY|ENDPOINT|BUCKET", name):
                assert re.fullmatch(r"\$\{\{ (secrets\.[A-Z0-9_]+|github\.token) \}\}", value), (
                    f"{name} = {value!r}"
                )
        # Expressions pasted into a script are a code-injection path (a crafted input or branch
        # name); they reach the shell only through env.
        assert "${{" not in step.get("run", ""), f"an expression inside a script: {step}"
    assert "persist-credentials: false" in text
    assert "env" not in workflow
    assert all(set(job.get("env", {})) <= {"BRANCH"} for job in workflow["jobs"].values())


def test_the_build_checks_the_locks_first_and_reports_them_in_the_summary():
    workflow = load("build.yml")
    assert workflow["jobs"]["image"]["needs"] == "locks"
    check = "\n".join(s.get("run", "") for s in workflow["jobs"]["locks"]["steps"])
    assert "python -m bake check --strict" in check
    assert re.search(r"update-locks\.py [^\n]*--apt[^\n]*--check", check), "the snapshot too"
    assert "GITHUB_STEP_SUMMARY" in check


# -- same commit, same layers -----------------------------------------------------------------


def test_every_build_stamps_the_commits_time_and_the_image_clamps_file_times():
    workflow = load("build.yml")
    all_steps = steps(workflow)
    [commit] = [s for s in all_steps if s.get("id") == "commit"]
    assert "git log -1 --pretty=%ct" in commit["run"] and "GITHUB_OUTPUT" in commit["run"]
    for step in build_steps(workflow):
        assert step["env"]["SOURCE_DATE_EPOCH"] == "${{ steps.commit.outputs.epoch }}"
        assert all_steps.index(commit) < all_steps.index(step)
    build = build_step(workflow)
    assert "rewrite-timestamp=true" in build["with"]["outputs"].split(",")
    assert "push" not in build["with"], "push is in outputs (both at once is refused)"
    # the image config's `created` label is the commit's time, not the run's
    meta = next(s for s in all_steps if s.get("uses", "").startswith("docker/metadata"))
    assert "org.opencontainers.image.created={{commit_date" in meta["with"]["labels"]


def test_the_build_records_its_commit_in_the_provenance_record():
    build = build_step(load("build.yml"))
    args = dict(line.strip().split("=", 1) for line in build["with"]["build-args"].splitlines())
    assert args["BAKE_COMMIT"] == "${{ github.sha }}"
    final = parse(ROOT / "Dockerfile").final
    assert any("BAKE_COMMIT" in a.assignments() for a in final.of("ARG"))


def test_the_reproducibility_check_builds_the_runtime_twice_without_cache_and_compares():
    workflow = load("reproducible.yml")
    assert set(workflow["on"]) == {"workflow_dispatch"}, "on demand only: two full builds"
    assert workflow["permissions"] == {}
    assert workflow["jobs"]["compare"]["permissions"] == {"contents": "read"}
    text = (WORKFLOWS / "reproducible.yml").read_text()
    assert "secrets." not in text, "no credential: the runtime target fetches no model"
    runs = "\n".join(s.get("run", "") for s in steps(workflow))
    build = re.search(r"for n in 1 2; do(.*?)done", runs, re.S)
    assert build, "two builds"
    command = build.group(1)
    for flag in ("--no-cache", "--target runtime", "--build-arg SOURCE_DATE_EPOCH"):
        assert flag in command, flag
    assert "rewrite-timestamp=true" in command and "type=oci" in command
    assert 'SOURCE_DATE_EPOCH="$(git log -1 --pretty=%ct)"' in runs
    assert "docker buildx prune --all --force" in command, "the second build reuses nothing"
    compare = re.search(r"python3 scripts/compare-layers (.*?)/mnt/builds/build-1\.tar", runs, re.S)
    assert compare and "--expect-differ sageattention" in compare.group(1)
    assert (ROOT / "scripts" / "compare-layers").is_file()
    assert "GITHUB_STEP_SUMMARY" in runs


def test_update_locks_moves_the_apt_snapshot_with_the_other_pins():
    workflow = load("update-locks.yml")
    assert "apt" in workflow["on"]["workflow_dispatch"]["inputs"]["kinds"]["options"]
    runs = "\n".join(s.get("run", "") for s in steps(workflow))
    assert "flags=(--nodes --python --models --apt)" in runs
    assert re.search(r"git add [^\n]*apt\.lock\.yaml", runs)


# -- layer compression: zstd by default, gzip on request ---------------------------------------


def layer_options(step: dict, chosen: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run the workflow's compression step as the runner would, with CHOSEN set."""
    output = tmp_path / f"output-{chosen or 'empty'}"
    output.write_text("")
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=ROOT,  # the runner's working directory: the checkout
        env={"PATH": os.environ["PATH"], "CHOSEN": chosen, "GITHUB_OUTPUT": str(output)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_build_pushes_zstd_layers_with_a_switch_back_to_gzip(tmp_path):
    workflow = load("build.yml")
    all_steps = steps(workflow)
    build = build_step(workflow)
    # The switch: a run's input, else the repository variable, else zstd.
    choice = workflow["on"]["workflow_dispatch"]["inputs"]["layer_compression"]
    assert choice["type"] == "choice" and choice["options"] == ["zstd", "gzip"]
    assert choice["default"] == "zstd"
    [step] = [s for s in all_steps if s.get("id") == "layers"]
    assert step["env"]["CHOSEN"] == (
        "${{ inputs.layer_compression || vars.LAYER_COMPRESSION || 'zstd' }}"
    )
    assert "${{" not in step["run"], "the choice reaches the script through env only"
    assert all_steps.index(step) < all_steps.index(build)
    # The pushed image's exporter options: the fixed ones, then the step's.
    outputs = build["with"]["outputs"]
    fixed, _, chosen = outputs.rpartition(",")
    assert fixed.split(",") == ["type=image", "push=true", "rewrite-timestamp=true"]
    assert chosen == "${{ steps.layers.outputs.options }}"

    def options(value: str) -> dict[str, str]:
        result = layer_options(step, value, tmp_path)
        assert result.returncode == 0, result.stderr
        text = (tmp_path / f"output-{value}").read_text()
        [line] = text.splitlines()
        name, _, given = line.partition("=")
        assert name == "options"
        return dict(option.split("=", 1) for option in given.split(","))

    # zstd at BuildKit's default level 3, every layer (the base image's too) recompressed, and
    # OCI media types: zstd has no Docker layer type that runtimes accept.
    assert options("zstd") == {
        "compression": "zstd",
        "compression-level": "3",
        "force-compression": "true",
        "oci-mediatypes": "true",
    }
    # gzip is what the build pushed before: BuildKit's default, nothing forced.
    assert options("gzip") == {"compression": "gzip"}
    bad = layer_options(step, "zstd,push=false", tmp_path)
    assert bad.returncode != 0 and "zstd or gzip" in bad.stdout
    # Only the pushed image changes format: the cached stages keep the Actions cache's own.
    cached = [s for s in build_steps(workflow) if s is not build]
    assert cached and all("outputs" not in s["with"] for s in cached)
    # The switch is documented where a maintainer looks for it.
    doc = (ROOT / "docs" / "image.md").read_text()
    assert "LAYER_COMPRESSION" in doc and "layer_compression" in doc


def test_the_reproducibility_check_compares_the_layers_the_build_pushes():
    # Compression is part of a layer's digest: a check of gzip layers says nothing about the
    # zstd ones a host pulls. Both take their options from the one script, by the same choice.
    runs = "\n".join(s.get("run", "") for s in steps(load("reproducible.yml")))
    [build] = [s for s in steps(load("reproducible.yml")) if "for n in 1 2" in s.get("run", "")]
    assert build["env"]["CHOSEN"] == "${{ vars.LAYER_COMPRESSION || 'zstd' }}"
    assert 'layers="$(scripts/layer-options "$CHOSEN")"' in runs
    assert "rewrite-timestamp=true,$layers" in runs
    [layers] = [s for s in steps(load("build.yml")) if s.get("id") == "layers"]
    assert 'scripts/layer-options "$CHOSEN"' in layers["run"]


def test_both_image_workflows_build_with_one_pinned_buildkit():
    images = set()
    for name in ("build.yml", "reproducible.yml"):
        [setup] = [
            s for s in steps(load(name)) if s.get("uses", "").startswith("docker/setup-buildx")
        ]
        options = setup.get("with", {}).get("driver-opts", "")
        found = re.fullmatch(r"image=moby/buildkit:v\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?", options)
        assert found, f"{name}: BuildKit not pinned to a release: {options!r}"
        images.add(options)
    assert len(images) == 1, images
