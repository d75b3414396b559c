"""The docs stand alone and tell the truth about the tree: every relative link and every
repository path they name exists, they cite no file a user does not have, and every command of
the README's synopsis answers --help as pasted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
# A path of this repository named in backticks or plain text: it starts at a top-level folder
# or file of the tree (not after a `/`, which makes it a path inside the image or elsewhere).
TOP = sorted(
    p.name
    for p in ROOT.iterdir()
    if p.is_dir() and (not p.name.startswith(".") or p.name in (".github", ".ci"))
)
REPO_PATH = re.compile(
    r"(?<![\w/.$-])((?:" + "|".join(re.escape(t) for t in TOP) + r")/[\w./-]*[\w-])"
)
NOT_OURS = re.compile(r"\b(DESIGN\.md|comfyui-api\.md|upstream\.md)|\.\./shared")


def doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_relative_link_exists(doc):
    missing = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (doc.parent / target.split("#")[0]).exists():
            missing.append(target)
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_repository_path_named_exists(doc):
    missing = []
    for line in doc.read_text().splitlines():
        for path in REPO_PATH.findall(line):
            # `tests/worker/test_real_*.py` style patterns and placeholders are not paths.
            if any(c in path for c in "*<>{}"):
                continue
            if not (ROOT / path).exists() and not list(ROOT.glob(path + "*")):
                missing.append(path)
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_docs_cite_no_file_a_user_does_not_have(doc):
    cited = [m.group(0) for m in NOT_OURS.finditer(doc.read_text())]
    assert cited == []


def synopsis() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Commands", 1)[1].split("```", 2)[1]
    return [
        line.split("[")[0].split(" --")[0].strip()
        for line in block.splitlines()[1:]
        if line and not line.startswith(" ")
    ]


def test_the_synopsis_lists_the_commands():
    commands = synopsis()
    assert "scripts/update-locks.py" in commands and "worker/start.sh" in commands
    assert sum(c.startswith("python -m bake") for c in commands) >= 6


@pytest.mark.parametrize("command", synopsis())
def test_every_synopsis_command_answers_help_as_pasted(command):
    words = command.split()
    if words[:1] == ["python"]:
        # The form the README gives for a fresh shell: the project environment's interpreter.
        words[0] = sys.executable
    result = subprocess.run(
        [*words, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.lower().startswith("usage:"), result.stdout[:200]
