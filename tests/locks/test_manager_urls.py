"""ComfyUI-Manager is refused by name and by URL anywhere in nodes.lock.yaml, however the URL is
disguised: the URL is normalised as servers and git read it (dot segments, percent-escapes,
case, `.git`, trailing slashes, `www.`, scp-like and ssh forms, `git://`, user-info, ports,
query, fragment, git's `transport::` prefix) before it is compared. Each disguise below is a
lock a careless maintainer or an attacker could commit; `bake check --strict` must refuse it,
and every legitimate URL must still pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bake.cli import main
from bake.locks.nodes import git_location

REV = "a" * 40

LOCK = """\
version: 1
comfyui:
  locked: {{date: '2026-01-16T23:02:28-05:00', requirements: [], rev: {rev}}}
  original: {{ref: master, url: '{comfyui}'}}
custom_nodes:
  Helpers:
    locked: {{date: '2026-01-16T23:02:28-05:00', requirements: [], rev: {rev}}}
    original: {{ref: main, url: '{url}'}}
source_builds:
  sageattention:
    locked: {{date: '2026-01-16T23:02:28-05:00', rev: {rev}}}
    original: {{ref: v2.2.0, url: '{sage}'}}
"""

COMFYUI = "https://github.com/comfyanonymous/ComfyUI.git"
SAGE = "https://github.com/thu-ml/SageAttention.git"

DISGUISES = [
    "https://github.com/ltdrdata/ComfyUI-Manager/.",  # passed before: git fetches the Manager
    "https://github.com/ltdrdata/ComfyUI-Manager/./",
    "https://github.com/ltdrdata/ComfyUI-Manager/x/..",
    "https://github.com/ltdrdata/x/../ComfyUI-Manager",
    "https://github.com/ltdrdata/ComfyUI-Manager/%2e",
    "https://github.com/ltdrdata/ComfyUI-Manager/%2E%2E/ComfyUI-Manager",
    "https://github.com/ltdrdata/ComfyUI%2DManager",
    "https://github.com/ltdrdata/%43omfyUI-Manager.git",
    "https://github.com/ltdrdata/ComfyUI%252DManager",  # escaped twice
    "https://github.com/ltdrdata/comfyui-manager",
    "https://github.com/Comfy-Org/COMFYUI-MANAGER",
    "https://github.com/ltdrdata/ComfyUI-Manager.git",
    "https://github.com/ltdrdata/ComfyUI-Manager.GIT/",
    "https://github.com/ltdrdata/ComfyUI-Manager/.git",
    "https://github.com/ltdrdata/ComfyUI-Manager.git.git",
    "https://github.com/ltdrdata/ComfyUI-Manager//",
    "https://github.com/ltdrdata/ComfyUI-Manager.",
    "https://www.github.com/ltdrdata/ComfyUI-Manager",
    "HTTPS://GitHub.COM/ltdrdata/ComfyUI-Manager",
    "https://user:token@github.com/ltdrdata/ComfyUI-Manager",
    "https://github.com:443/ltdrdata/ComfyUI-Manager",
    "https://github.com/ltdrdata/ComfyUI-Manager?tab=readme",
    "https://github.com/ltdrdata/ComfyUI-Manager#main",
    "https://github.com/ltdrdata/ComfyUI-Manager%3Fx=1",
    "https://github.com/ltdrdata/ComfyUI-Manager%2523main",
    "https://github.com/ltdrdata/ComfyUI-Manager/tree/main",
    "https://github.com\\ltdrdata\\ComfyUI-Manager",
    "git@github.com:ltdrdata/ComfyUI-Manager.git",
    "git@github.com:ltdrdata/ComfyUI-Manager/",
    "github.com:ltdrdata/ComfyUI-Manager",
    "ssh://git@github.com/ltdrdata/ComfyUI-Manager.git",
    "ssh://git@github.com:22/ltdrdata/ComfyUI-Manager",
    "ssh://git@github.com/~/ltdrdata/../ltdrdata/ComfyUI-Manager",
    "git://github.com/ltdrdata/ComfyUI-Manager",
    "https::https://github.com/ltdrdata/ComfyUI-Manager",  # git's transport::address form
    "https://github.com/ltdrdata/\uff23omfyUI-Manager",  # fullwidth C (NFKC)
    "file:///srv/mirrors/ComfyUI-Manager.git",
    "/srv/mirrors/ComfyUI-Manager/.git/",
]

LEGITIMATE = [
    "https://github.com/kijai/ComfyUI-KJNodes.git",
    "https://github.com/ltdrdata/ComfyUI-Manager-Helpers",
    "https://github.com/ltdrdata/ComfyUI-Impact-Pack",
    "https://github.com/someone/Manager",
    "https://github.com/someone/ComfyUI-Managerial.git",
    "git@github.com:rgthree/rgthree-comfy.git",
    "ssh://git@github.com:22/cubiq/ComfyUI_essentials",
    "git://example.org/mirrors/ComfyUI-Crystools",
    "https://gitlab.com/group/sub/ComfyUI-Easy-Use.git",
    "https://user@github.com:8443/o/ComfyUI-VideoHelperSuite/",
    "file:///srv/mirrors/ComfyUI-Frame-Interpolation.git",
    "/srv/mirrors/RES4LYF",
]

REFUSED = "ComfyUI-Manager is excluded (it installs code at run time); remove this entry"


def check(tmp_path: Path, capsys, **urls: str) -> tuple[int, list[str]]:
    path = tmp_path / "nodes.lock.yaml"
    values = {"comfyui": COMFYUI, "url": SAGE, "sage": SAGE, "rev": REV, **urls}
    path.write_text(LOCK.format(**values), encoding="utf-8")
    code = main(["check", "--strict", "--lock", str(path)])
    err = capsys.readouterr().err.splitlines()
    return code, [line for line in err if line.startswith("error: ")]


@pytest.mark.parametrize("url", DISGUISES)
def test_a_disguised_manager_url_is_refused_as_a_custom_node(tmp_path, capsys, url):
    code, errors = check(tmp_path, capsys, url=url)
    assert code == 1
    assert errors == [f"error: {tmp_path / 'nodes.lock.yaml'}: custom_nodes.Helpers: {REFUSED}"]


@pytest.mark.parametrize("url", DISGUISES[:6])
def test_the_manager_is_refused_as_comfyui_and_as_a_source_build_too(tmp_path, capsys, url):
    code, errors = check(tmp_path, capsys, comfyui=url)
    assert code == 1 and len(errors) == 1
    assert "comfyui.original.url: ComfyUI-Manager is excluded" in errors[0]
    code, errors = check(tmp_path, capsys, sage=url)
    assert code == 1
    assert errors == [
        f"error: {tmp_path / 'nodes.lock.yaml'}: source_builds.sageattention: {REFUSED}"
    ]


@pytest.mark.parametrize("url", LEGITIMATE)
def test_a_legitimate_url_passes(tmp_path, capsys, url):
    assert check(tmp_path, capsys, url=url) == (0, [])


@pytest.mark.parametrize(
    "name", ["ComfyUI-Manager", "comfyui-manager", "COMFYUI-MANAGER", "\uff23omfyUI-Manager"]
)
def test_the_manager_is_refused_by_its_name_whatever_the_url(tmp_path, capsys, name):
    path = tmp_path / "nodes.lock.yaml"
    text = LOCK.format(comfyui=COMFYUI, url=LEGITIMATE[0], sage=SAGE, rev=REV)
    path.write_text(text.replace("  Helpers:", f"  {name}:"), encoding="utf-8")
    assert main(["check", "--strict", "--lock", str(path)]) == 1
    assert REFUSED in capsys.readouterr().err


def test_git_really_fetches_through_the_dot_segment_disguise(tmp_path):
    # Why the normalisation matters: git (and the servers behind it) resolve `/.` and `/x/..`,
    # so the disguised URL reaches the same repository as the plain one.
    manager = tmp_path / "ltdrdata" / "ComfyUI-Manager"

    def run(*args: str) -> str:
        done = subprocess.run(["git", *args], check=True, capture_output=True, text=True)
        return done.stdout

    run("init", "--quiet", str(manager))
    run("-C", str(manager), "-c", "user.name=x", "-c", "user.email=x@x", "commit", "--quiet",
        "--allow-empty", "-m", "manager")  # fmt: skip
    plain = run("ls-remote", manager.as_uri(), "HEAD")
    for disguise in (f"{manager.as_uri()}/.", f"{manager.as_uri()}/.git/.."):
        assert run("ls-remote", disguise, "HEAD") == plain != ""
        assert git_location(disguise).repository == "comfyui-manager"


def test_normalisation_keeps_host_and_owner():
    location = git_location("ssh://git@WWW.GitHub.com:22/Owner/x/../Repo.git/?q#f")
    assert (location.host, location.parts) == ("github.com", ("owner", "repo"))
    assert git_location("git@github.com:o/r").host == "github.com"
    assert git_location("https://[::1]:8080/a/b.git").parts == ("a", "b")
