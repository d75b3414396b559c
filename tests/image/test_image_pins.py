"""The Dockerfile's outside inputs are pinned by digest and recorded: the frontend its
`# syntax=` line names, every `FROM` image, and every image a `COPY --from` or `RUN
--mount=...,from=` names instead of a stage. `bake check` (which the image's first stage runs)
refuses each way a careless or hostile edit could let one float, and `bake provenance` records
each with its digest, including those reached through an ARG or a `--from`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.dockerfile import parse

from bake.check import check_repo
from bake.errors import BakeError
from bake.locks.dockerfile import check_dockerfile, inputs
from bake.provenance import base_images, dockerfile_record

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = "docker/dockerfile:1.22.0@sha256:" + "f" * 64
UBUNTU = "ubuntu:24.04@sha256:" + "1" * 64
BUSYBOX = "busybox:1.37@sha256:" + "2" * 64
SYNTAX = f"# syntax={FRONTEND}\n"


def problems(text: str) -> list[str]:
    return inputs(text).problems


def test_the_committed_dockerfile_passes_and_names_its_frontend_by_digest():
    found = inputs((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    assert found.problems == []
    assert found.frontend is not None
    assert found.frontend["image"].startswith("docker/dockerfile:1.")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", found.frontend["digest"])
    # every FROM of an image, and the final `FROM models-${WITH_MODELS}` resolved to a stage
    images = {use.image for use in found.images}
    assert images == {
        "nvidia/cuda:12.8.0-cudnn-devel-ubuntu24.04",
        "nvidia/cuda:12.8.0-cudnn-runtime-ubuntu24.04",
    }


def test_the_image_build_runs_the_check_on_the_dockerfile_first():
    dockerfile = parse(ROOT / "Dockerfile")
    lockcheck = dockerfile.stages[0]
    assert lockcheck.name == "lockcheck"
    copied = " ".join(i.value for i in lockcheck.of("COPY"))
    assert "Dockerfile" in copied.split()[:-1]
    assert any("python -m bake check --strict" in i.value for i in lockcheck.of("RUN"))


# -- the frontend -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "said"),
    [
        ("# syntax=docker/dockerfile:1\n", "the frontend `docker/dockerfile:1` is not pinned"),
        ("# syntax=docker/dockerfile:1.22.0\n", "is not pinned by digest"),
        ("# syntax=docker/dockerfile:latest\n", "is not pinned by digest"),
        ("# syntax=evil.example/frontend@sha256:abc\n", "is not pinned by digest"),
        ("", "no `# syntax=` parser directive"),
        # after a comment, `# syntax=` is a comment: the builder's built-in frontend reads it
        (f"# the recipe\n{SYNTAX}", "no `# syntax=` parser directive"),
        (f"\n{SYNTAX}", "no `# syntax=` parser directive"),
        (f"{SYNTAX}# syntax=docker/dockerfile:1\n", "a second `syntax` parser directive"),
    ],
)
def test_a_frontend_not_named_by_digest_is_refused(head, said):
    found = problems(f"{head}FROM {UBUNTU}\n")
    assert len(found) == 1 and said in found[0], found


def test_directives_are_read_as_buildkit_reads_them():
    for head in (
        f"#syntax={FRONTEND}\n",
        f"# SYNTAX = {FRONTEND}\n",
        f"# check=error=true\n{SYNTAX}",
    ):
        assert problems(f"{head}FROM {UBUNTU}\n") == []


# -- images ---------------------------------------------------------------------------------

REFUSED = [
    ("a tag", "FROM ubuntu:24.04\n", "line 2: FROM ubuntu:24.04: is not a stage above it"),
    ("no tag", "FROM ubuntu\n", "FROM ubuntu: is not a stage above it, so an image"),
    ("--platform flag", "FROM --platform=linux/amd64 ubuntu:24.04 AS x\n", "FROM ubuntu:24.04"),
    (
        "an ARG default that is a tag",
        "ARG BASE=ubuntu:24.04\nFROM ${BASE}\n",
        "FROM ${BASE} (= ubuntu:24.04): is not a stage above it",
    ),
    (
        "an ARG without a default",
        "ARG BASE\nFROM $BASE\n",
        "FROM $BASE: does not resolve to an image pinned by digest or a stage above it",
    ),
    (
        "an ARG declared after FROM is not seen by FROM",
        f"FROM {UBUNTU} AS a\nARG BASE={UBUNTU}\nFROM ${{BASE}}\n",
        "FROM ${BASE}: does not resolve",
    ),
    (
        "an expansion form not understood",
        f"ARG BASE={UBUNTU}\nFROM ${{BASE%@*}}\n",
        "does not resolve",
    ),
    (
        "a stage defined below",
        f"FROM later\nFROM {UBUNTU} AS later\n",
        "FROM later: is not a stage above it, so an image",
    ),
    (
        "COPY --from an image by tag",
        f"FROM {UBUNTU}\nCOPY --from=nginx:latest /etc/nginx /etc/nginx\n",
        "COPY --from nginx:latest: is not a stage above it, so an image",
    ),
    (
        "COPY --from a stage index that is not above",
        f"FROM {UBUNTU}\nCOPY --from=3 /x /x\n",
        "COPY --from 3: names no stage above it",
    ),
    (
        "COPY --from an ARG without a default",
        f"FROM {UBUNTU}\nARG SRC\nCOPY --from=${{SRC}} /x /x\n",
        "COPY --from ${SRC}: does not resolve",
    ),
    (
        "RUN --mount from an image by tag",
        f"FROM {UBUNTU}\nRUN --mount=type=bind,from=alpine:3,source=/,target=/a true\n",
        "RUN --mount from alpine:3: is not a stage above it",
    ),
    (
        "RUN --mount cache from an image",
        f"FROM {UBUNTU}\nRUN --mount=type=cache,target=/c,from=python:3.12 true\n",
        "RUN --mount from python:3.12",
    ),
    (
        "a continued line",
        f"FROM {UBUNTU}\nCOPY \\\n    --from=nginx \\\n    /a /b\n",
        "line 3: COPY --from nginx",
    ),
]


@pytest.mark.parametrize(("text", "said"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_an_image_that_could_float_is_refused(text, said):
    found = problems(SYNTAX + text)
    assert len(found) == 1 and said in found[0], found


ACCEPTED = [
    ("a digest", f"FROM {UBUNTU}\n"),
    ("a stage", f"FROM {UBUNTU} AS base\nFROM base\n"),
    ("a stage in another case", f"FROM {UBUNTU} AS Base\nFROM BASE AS next\n"),
    ("scratch", "FROM scratch\n"),
    ("an ARG default pinned", f"ARG BASE={UBUNTU}\nFROM ${{BASE}}\n"),
    ("an ARG chosen stage", f"ARG V=1\nFROM {UBUNTU} AS s-1\nFROM s-${{V}}\n"),
    ("a :- default", f"FROM {UBUNTU} AS s\nARG X\nFROM ${{X:-s}}\n"),
    ("COPY --from a stage", f"FROM {UBUNTU} AS a\nFROM {UBUNTU}\nCOPY --from=a /x /x\n"),
    ("COPY --from a stage index", f"FROM {UBUNTU}\nFROM {UBUNTU}\nCOPY --from=0 /x /x\n"),
    ("COPY --from a digest", f"FROM {UBUNTU}\nCOPY --from={BUSYBOX} /bin/sh /sh\n"),
    (
        "a heredoc body is not an instruction",
        f"FROM {UBUNTU}\nRUN <<EOF\nFROM nginx:latest\nCOPY --from=evil /a /b\nEOF\n",
    ),
]


@pytest.mark.parametrize("text", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_pinned_images_and_stages_pass(text):
    assert problems(SYNTAX + text) == []


# -- bake check and bake provenance ---------------------------------------------------------


@pytest.fixture
def root(tmp_path):
    for name in (
        "nodes.lock.yaml",
        "models.lock.yaml",
        "requirements.lock",
        "apt.lock.yaml",
        "node-classes.yaml",
        "Dockerfile",
    ):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_bake_check_fails_on_the_repository_dockerfile_with_a_floating_image(root):
    assert check_repo(root).errors == []
    dockerfile = root / "Dockerfile"
    text = dockerfile.read_text(encoding="utf-8")
    # a maintainer "simplifies" the frontend line and copies a tool out of a tagged image
    text = re.sub(r"^# syntax=\S+", "# syntax=docker/dockerfile:1", text, count=1)
    text = text.replace(
        "COPY --link --from=python /opt/venv /opt/venv",
        "COPY --link --from=python /opt/venv /opt/venv\nCOPY --from=ghcr.io/astral-sh/uv:latest "
        "/uv /usr/local/bin/uv",
    )
    dockerfile.write_text(text, encoding="utf-8")
    errors = check_repo(root).errors
    assert len(errors) == 2, errors
    assert all(e.startswith(f"{dockerfile}: line ") for e in errors)
    assert "the frontend `docker/dockerfile:1` is not pinned by digest" in errors[0]
    assert "COPY --from ghcr.io/astral-sh/uv:latest: is not a stage above it" in errors[1]
    assert check_dockerfile(dockerfile) == errors


def test_bake_check_on_the_command_line_says_so(root):
    dockerfile = root / "Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text(encoding="utf-8").replace(
            "FROM nvidia/cuda:12.8.0-cudnn-runtime-ubuntu24.04@sha256:", "FROM nvidia/cuda:x@x:"
        ),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "bake", "check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "BAKE_ROOT": str(root)},
    )
    assert done.returncode == 1
    assert "FROM nvidia/cuda:x@x:" in done.stderr and "not pinned by digest" in done.stderr


def test_provenance_records_the_frontend_and_every_image_reference():
    text = (
        SYNTAX
        + f"ARG BASE={UBUNTU}\n"
        + "FROM ${BASE} AS build\n"
        + f"COPY --from={BUSYBOX} /bin/busybox /bin/busybox\n"
        + "FROM build\n"
        + f"RUN --mount=type=bind,from={BUSYBOX},source=/bin,target=/b true\n"
    )
    record = dockerfile_record(text)
    assert record["frontend"] == {
        "image": "docker/dockerfile:1.22.0",
        "digest": "sha256:" + "f" * 64,
    }
    assert record["images"] == [
        {
            "image": "busybox:1.37",
            "digest": "sha256:" + "2" * 64,
            "uses": [
                {"line": 4, "instruction": "COPY --from", "stage": "build"},
                {"line": 6, "instruction": "RUN --mount from", "stage": "1"},
            ],
        },
        {
            "image": "ubuntu:24.04",
            "digest": "sha256:" + "1" * 64,
            "uses": [{"line": 3, "instruction": "FROM", "stage": "build"}],
        },
    ]
    assert record["sha256"].startswith("sha256:")
    # FROM ${BASE} was dropped from the record before; it is a base image like any other
    assert base_images(text) == [{"image": "ubuntu:24.04", "digest": "sha256:" + "1" * 64}]


def test_provenance_refuses_what_check_refuses():
    with pytest.raises(BakeError, match=r"Dockerfile: line 3: COPY --from busybox:latest"):
        dockerfile_record(SYNTAX + f"FROM {UBUNTU}\nCOPY --from=busybox:latest /a /b\n")
    with pytest.raises(BakeError, match="the frontend `docker/dockerfile:1` is not pinned"):
        base_images(f"# syntax=docker/dockerfile:1\nFROM {UBUNTU}\n")
