"""CI runs with least privilege: no permission at the workflow level, each job names what it
needs (write access only where something is pushed), each credential reaches only the step that
uses it (Hugging Face and R2: the models step of update-locks; node and Python resolution run
with none), and zizmor, run offline, finds nothing in .github/workflows.

Each rule is also run against the workflow a careless maintainer would write, to show that it
catches it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
SECRET = re.compile(r"\$\{\{\s*secrets\.([A-Za-z0-9_]+)\s*\}\}")
TOKEN = re.compile(r"\$\{\{\s*(?:github\.token|secrets\.GITHUB_TOKEN)\s*\}\}")

# Where a write permission may be granted, and why: (workflow, job) -> scopes.
WRITES = {
    ("build.yml", "image"): {"packages"},  # push the image to GHCR
    ("update-locks.yml", "propose"): {"contents", "pull-requests"},  # push a branch, open a PR
}
# Which step (by the command it runs) may see which repository secrets.
MODEL_SECRETS = {
    "HF_TOKEN",
    "R2_ENDPOINT_URL",
    "R2_ACCESS_KEY_ID",
    "R2_SECRET_ACCESS_KEY",
    "DASIWA_R2_BUCKET",
    "DASIWA_HIGH_KEY",
    "DASIWA_LOW_KEY",
}


def load(text: str) -> dict:
    data = yaml.safe_load(text)
    if True in data:  # YAML 1.1 reads the key `on` as True
        data["on"] = data.pop(True)
    return data


def permission_problems(name: str, workflow: dict) -> list[str]:
    found = []
    top = workflow.get("permissions", "(not set: the repository default, often write-all)")
    if top != {}:
        found.append(f"{name}: workflow-level permissions must be {{}}, found {top!r}")
    for job_name, job in workflow["jobs"].items():
        granted = job.get("permissions")
        if not isinstance(granted, dict):
            found.append(f"{name}: job {job_name} must name its permissions, found {granted!r}")
            continue
        writes = {scope for scope, level in granted.items() if level == "write"}
        allowed = WRITES.get((name, job_name), set())
        if writes - allowed:
            found.append(f"{name}: job {job_name} may not write {sorted(writes - allowed)}")
    return found


def secret_problems(name: str, workflow: dict) -> list[str]:
    """Secrets outside the one step that needs them: never at workflow or job level."""
    found = []
    for where, holder in [("workflow", workflow), *workflow["jobs"].items()]:
        env_text = yaml.safe_dump(holder.get("env", {}))
        if SECRET.search(env_text) or TOKEN.search(env_text):
            found.append(f"{name}: {where} env holds a credential: give it to the one step")
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            text = yaml.safe_dump({k: v for k, v in step.items() if k != "name"})
            used = set(SECRET.findall(text)) - {"GITHUB_TOKEN"}
            label = f"{name}: {job_name}: step {step.get('name') or step.get('uses')!r}"
            run = step.get("run", "")
            if used & MODEL_SECRETS:
                runs_models = re.search(r"update-locks\.py --models\b", run)
                other_kinds = re.search(r"update-locks\.py [^\n]*--(nodes|python|apt)\b", run)
                is_build = step.get("uses", "").startswith("docker/build-push-action@")
                if not (runs_models and not other_kinds) and not is_build:
                    found.append(f"{label} sees {sorted(used & MODEL_SECRETS)}")
            elif used:
                found.append(f"{label} sees {sorted(used)}")
            if re.search(r"update-locks\.py [^\n]*--(nodes|python)\b", run) and used:
                found.append(f"{label} resolves nodes or Python with credentials")
    return found


def workflows() -> list[tuple[str, dict]]:
    return [(p.name, load(p.read_text(encoding="utf-8"))) for p in sorted(WORKFLOWS.glob("*.yml"))]


def test_every_job_names_its_permissions_and_only_the_pushing_jobs_write():
    assert [p for name, wf in workflows() for p in permission_problems(name, wf)] == []


def test_each_credential_reaches_only_the_step_that_needs_it():
    assert [p for name, wf in workflows() for p in secret_problems(name, wf)] == []


def test_nodes_and_python_resolve_in_steps_of_their_own_without_credentials():
    workflow = load((WORKFLOWS / "update-locks.yml").read_text(encoding="utf-8"))
    steps = workflow["jobs"]["resolve"]["steps"]
    by_kind = {}
    for step in steps:
        for kind in re.findall(
            r"update-locks\.py --(nodes|python|models|apt)\b", step.get("run", "")
        ):
            by_kind.setdefault(kind, []).append(step)
    assert set(by_kind) == {"nodes", "python", "models", "apt"}
    assert all(len(found) == 1 for found in by_kind.values()), "one step per kind"
    for kind in ("nodes", "python", "apt"):
        assert "env" not in by_kind[kind][0], f"the {kind} step takes no credential"
    models = by_kind["models"][0]
    assert {SECRET.search(v).group(1) for v in models["env"].values()} == MODEL_SECRETS
    order = [steps.index(by_kind[k][0]) for k in ("nodes", "python", "models", "apt")]
    assert order == sorted(order), "the Python lock is compiled from the nodes lock"


CARELESS = """\
name: update-locks
on: {schedule: [{cron: "0 0 * * 1"}]}
permissions:
  contents: write
  pull-requests: write
jobs:
  update:
    runs-on: ubuntu-24.04
    env:
      HF_TOKEN: ${{ secrets.HF_TOKEN }}
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with: {persist-credentials: false}
      - name: Resolve everything
        env:
          AWS_SECRET_ACCESS_KEY: ${{ secrets.R2_SECRET_ACCESS_KEY }}
        run: scripts/update-locks.py --nodes --python --models
"""


def test_the_rules_catch_the_single_job_workflow_they_replaced():
    workflow = load(CARELESS)
    assert permission_problems("update-locks.yml", workflow) == [
        "update-locks.yml: workflow-level permissions must be {}, found "
        "{'contents': 'write', 'pull-requests': 'write'}",
        "update-locks.yml: job update must name its permissions, found None",
    ]
    problems = secret_problems("update-locks.yml", workflow)
    assert problems == [
        "update-locks.yml: update env holds a credential: give it to the one step",
        "update-locks.yml: update: step 'Resolve everything' sees ['R2_SECRET_ACCESS_KEY']",
        "update-locks.yml: update: step 'Resolve everything' resolves nodes or Python with "
        "credentials",
    ]


def test_a_write_permission_on_the_test_job_is_caught():
    workflow = load((WORKFLOWS / "test.yml").read_text(encoding="utf-8"))
    workflow["jobs"]["test"]["permissions"] = {"contents": "write"}
    assert permission_problems("test.yml", workflow) == [
        "test.yml: job test may not write ['contents']"
    ]


# -- zizmor -------------------------------------------------------------------------------------


def zizmor() -> Path:
    path = Path(sys.executable).parent / "zizmor"
    assert path.exists(), "zizmor is a dev dependency; run `uv sync` (scripts/bootstrap)"
    return path


def run_zizmor(*inputs: Path) -> subprocess.CompletedProcess[str]:
    # --offline: no audit reaches the network (and no token is looked for); --no-config: only
    # suppressions written in the workflows themselves count, each with its reason beside it.
    env = {k: v for k, v in os.environ.items() if "TOKEN" not in k and k != "GH_HOST"}
    return subprocess.run(
        [zizmor(), "--offline", "--no-config", "--no-progress", "--color=never", *map(str, inputs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_zizmor_finds_nothing_in_the_workflows():
    result = run_zizmor(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout + result.stderr


def test_every_zizmor_suppression_says_why():
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "zizmor: ignore" in line:
                reason = line.split("zizmor: ignore", 1)[1].split("]", 1)[-1]
                assert reason.strip(" :-#"), f"{path.name}:{number}: say why it is suppressed"


@pytest.mark.parametrize(
    ("workflow", "audit"),
    [
        (
            "on: issues\npermissions: {}\njobs:\n  greet:\n    runs-on: ubuntu-24.04\n"
            "    permissions: {}\n    steps:\n"
            '      - run: echo "${{ github.event.issue.title }}"\n',
            "template-injection",
        ),
        (CARELESS.replace("@11bd71901bbe5b1630ceea73d27597364c9af683", "@v4"), "unpinned-uses"),
        (
            "on: push\npermissions: {}\njobs:\n  build:\n    runs-on: ubuntu-24.04\n"
            "    permissions: {contents: read}\n    steps:\n"
            "      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2\n"
            "      - run: make\n",
            "artipacked",
        ),
    ],
    ids=["template injection", "unpinned action", "persisted checkout credentials"],
)
def test_zizmor_catches_what_it_should(tmp_path, workflow, audit):
    # The check above is worth something only if this zizmor, offline, reports real problems.
    # (At its default persona it does not flag `permissions: write-all` on a one-job workflow:
    # the permission rules above are this repository's own for that reason.)
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "bad.yml").write_text(workflow, encoding="utf-8")
    result = run_zizmor(folder / "bad.yml")
    assert result.returncode != 0, result.stdout
    assert audit in result.stdout, result.stdout
