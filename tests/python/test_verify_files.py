"""`bake python verify` accounts for every file of a real venv, and names each one it cannot.

A real venv (`python -m venv`) gets tiny real wheels installed by pip, `--no-index
--require-hashes` from a requirements.lock, as the image installs its environment: pip writes
RECORD, INSTALLER, REQUESTED, the entry-point script and the byte-code. Then each test plants
one attack a hostile build step could leave behind and checks that the verify fails naming the
file, without running anything of the environment.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.wheels import Wheel, build_wheel, fake_torch, sha256_of

from bake.errors import PythonEnvError
from bake.locks.requirements import load_requirements_lock
from bake.python import verify
from bake.python.record import read_venv, venv_of_python
from bake.python.verify import check_environment, verify_environment

SITE = "lib/python{}.{}/site-packages".format(*sys.version_info[:2])
TAG = sys.implementation.cache_tag
NOT_LISTED = "unexpected: no locked distribution's RECORD lists it"

ALPHA = Wheel(
    "alpha",
    "1.0",
    files={
        "alpha/__init__.py": 'GREETING = "hello"\n',
        "alpha/cli.py": "def main():\n    print('alpha')\n",
        # pip writes bin/alpha-cli from this, and lists it in RECORD with its own hash
        "alpha-1.0.dist-info/entry_points.txt": "[console_scripts]\nalpha-cli = alpha.cli:main\n",
        # a script shipped in the wheel: pip rewrites its #!python line, then hashes it
        "alpha-1.0.data/scripts/alpha-sh": "#!python\nprint('a data script')\n",
        # data files land outside site-packages (share/), listed as ../../../share/...
        "alpha-1.0.data/data/share/alpha/readme.txt": "data\n",
    },
)
LOCKED = [ALPHA, Wheel("beta", "2.0"), fake_torch("2.0")]
# Two distributions that install the same file with other bytes (the three-OpenCV problem).
CV2_A = Wheel("opencv-python", "4.0", files={"cv2/__init__.py": "KIND = 'gui'\n"})
CV2_B = Wheel("opencv-python-headless", "4.0", files={"cv2/__init__.py": "KIND = 'none'\n"})
OURS = Wheel("comfy-bake", "0.1.0", files={"bake_probe/__init__.py": "X = 1\n"})


def run(args: list[str | Path], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, **kwargs
    )


def lock_text(links: Path, wheels: list[Wheel]) -> str:
    """A requirements.lock as uv writes it: every pin with the sha256 of its wheel."""
    lines = ["# a tiny lock", "--only-binary :all:", ""]
    for wheel in wheels:
        digest = sha256_of(links / wheel.filename)
        lines.append(f"{wheel.name}=={wheel.version} \\\n    --hash=sha256:{digest}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pyfiles")
    links = root / "links"
    for wheel in [*LOCKED, CV2_A, CV2_B, OURS, Wheel("beta", "3.0")]:
        build_wheel(wheel, links)
    lock = root / "requirements.lock"
    lock.write_text(lock_text(links, LOCKED), encoding="utf-8")
    # pip comes from a tool venv (`python -m venv` seeds it offline) and installs into a venv
    # made without one, so the environment under test holds the lock's wheels alone.
    tool = root / "tool"
    assert run([sys.executable, "-m", "venv", tool]).returncode == 0
    venv = root / "pristine"
    assert run([sys.executable, "-m", "venv", "--without-pip", venv]).returncode == 0
    result = pip_install(tool, venv, "--require-hashes", "-r", lock, links=links)
    assert result.returncode == 0, result.stdout + result.stderr
    return {"root": root, "links": links, "lock": lock, "tool": tool, "pristine": venv}


def pip_install(tool: Path, venv: Path, *args, links: Path) -> subprocess.CompletedProcess[str]:
    return run(
        [
            tool / "bin" / "python",
            "-m",
            "pip",
            "--python",
            venv / "bin" / "python",
            "install",
            "--disable-pip-version-check",
            "--no-cache-dir",
            "--no-index",
            "--no-deps",
            "--find-links",
            links,
            *args,
        ],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},  # only pip's own compile
    )


@pytest.fixture
def venv(world, tmp_path) -> Path:
    """A copy of the pristine venv to plant things in (links kept as links)."""
    copy = tmp_path / "venv"
    shutil.copytree(world["pristine"], copy, symlinks=True)
    return copy


@pytest.fixture
def lock(world):
    return load_requirements_lock(world["lock"])


def cli_args(world, **given) -> argparse.Namespace:
    """The arguments `bake python verify` parses, for `verify.cli`: the world's lock, then
    `given` (prefix, python, reference)."""
    args = {"lock": world["lock"], "allow_extra": [], "prefix": None, "python": None}
    return argparse.Namespace(**{**args, **given})


def problems_of(lock, venv: Path, **kwargs) -> list[str]:
    return verify_environment(lock, prefix=venv, **kwargs)


def site(venv: Path) -> Path:
    return venv / SITE


# -- the clean environment --------------------------------------------------------------------


def test_the_clean_environment_passes_with_every_file_accounted_for(lock, venv):
    verdict = check_environment(lock, prefix=venv)
    assert verdict.problems == []
    # what pip wrote beside the wheel's own files is hashed in RECORD too
    record = (site(venv) / "alpha-1.0.dist-info" / "RECORD").read_text()
    for written in ("INSTALLER", "REQUESTED", "../../../bin/alpha-cli", "../../../bin/alpha-sh"):
        assert any(
            line.split(",")[0].endswith(written) and "sha256=" in line
            for line in record.splitlines()
        ), written
    # pip lists its byte-code without a hash: those were proven by compiling their sources
    assert f"alpha/__pycache__/__init__.{TAG}.pyc,," in record
    files = [p for p in venv.rglob("*") if p.is_file() or p.is_symlink()]
    report = verdict.report
    assert report.compiled >= 3  # alpha/__init__, alpha/cli, beta/__init__, torch's modules
    assert report.hashed + report.compiled + report.layout + 3 == len(files)  # + 3 RECORDs
    assert verdict.environment.torch is not None  # asked only once the files had passed


def test_the_venv_python_m_venv_makes_passes_with_pip_allowed(world, tmp_path):
    """pip (and, before Python 3.12, setuptools) come with `python -m venv`: the tool venv
    holds nothing else, every file of it accounted for."""
    lock = tmp_path / "requirements.lock"
    lock.write_text("alpha==1.0 ; sys_platform == 'never' --hash=sha256:" + "0" * 64 + "\n")
    extra = ["setuptools"] if sys.version_info < (3, 12) else []
    verdict = check_environment(
        load_requirements_lock(lock), prefix=world["tool"], allow_extra=extra
    )
    assert verdict.problems == []
    assert verdict.report.compiled > 100  # pip's own byte-code, compiled at install


def test_a_wheel_installed_from_a_file_records_its_direct_url_json(world, lock, venv):
    """`pip install /wheels/sageattention-*.whl` and our own project write direct_url.json,
    which pip lists in RECORD with its hash: an allowed extra passes like a locked wheel."""
    result = pip_install(world["tool"], venv, world["links"] / OURS.filename, links=world["links"])
    assert result.returncode == 0, result.stderr
    assert (site(venv) / "comfy_bake-0.1.0.dist-info" / "direct_url.json").is_file()
    assert problems_of(lock, venv) == []


# -- planted files ----------------------------------------------------------------------------


def test_a_pth_file_is_named_and_never_runs(lock, venv, tmp_path):
    marker = tmp_path / "ran"
    hook = site(venv) / "zz-hook.pth"
    hook.write_text(f"import pathlib; pathlib.Path({str(marker)!r}).write_text('pwned')\n")
    assert problems_of(lock, venv) == [
        f"{SITE}/zz-hook.pth: {NOT_LISTED} (a .pth file: Python's site runs its import lines "
        "at every start)"
    ]
    # Neither the check nor the torch probe ran the environment's interpreter: the probe
    # waits for a clean file check, which this one is not.
    assert not marker.exists()
    # The same hook does run as soon as the environment's Python starts: it is a real attack.
    assert run([venv / "bin" / "python", "-c", "pass"]).returncode == 0
    assert marker.read_text() == "pwned"


def test_a_pth_that_forges_the_old_probe_changes_nothing(lock, venv):
    """The old check asked the environment to list itself; a .pth could print its answer.
    Now its words reach no one: the line is a file to account for, like any other."""
    forged = '{"python": "x", "markers": {}, "dists": [], "torch": null}'
    (site(venv) / "forge.pth").write_text(f"import sys; print({forged!r})\n")
    assert problems_of(lock, venv) == [
        f"{SITE}/forge.pth: {NOT_LISTED} (a .pth file: Python's site runs its import lines at "
        "every start)"
    ]


@pytest.mark.parametrize("name", ["sitecustomize.py", "usercustomize.py"])
def test_a_startup_customize_module_is_named(lock, venv, name):
    (site(venv) / name).write_text("import os\n")
    assert problems_of(lock, venv) == [
        f"{SITE}/{name}: {NOT_LISTED} (Python imports it at every start)"
    ]


def test_a_package_without_metadata_is_named_file_by_file(lock, venv):
    package = site(venv) / "evilpkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "payload.so").write_bytes(b"\x7fELF")
    assert problems_of(lock, venv) == [
        f"{SITE}/evilpkg/__init__.py: {NOT_LISTED}",
        f"{SITE}/evilpkg/sub/payload.so: {NOT_LISTED}",
    ]


def test_a_module_added_to_a_locked_package_is_named(lock, venv):
    (site(venv) / "alpha" / "extra.py").write_text("import os\n")
    assert problems_of(lock, venv) == [f"{SITE}/alpha/extra.py: {NOT_LISTED}"]


def test_a_changed_file_of_a_locked_wheel_is_named_with_its_distribution(lock, venv):
    init = site(venv) / "alpha" / "__init__.py"
    init.write_text(init.read_text().replace("hello", "hallo"))  # same size: the digest decides
    assert problems_of(lock, venv) == [
        f"{SITE}/alpha/__init__.py: changed: its sha256 is not the one alpha 1.0's RECORD lists",
        f"{SITE}/alpha/__pycache__/__init__.{TAG}.pyc: unexpected: byte-code whose source "
        f"{SITE}/alpha/__init__.py is not a verified file of a locked distribution",
    ]


def test_a_file_of_another_size_is_named_before_any_hashing(lock, venv):
    (site(venv) / "beta" / "__init__.py").write_text("import os  # longer now\n")
    problems = problems_of(lock, venv)
    assert problems[0].startswith(f"{SITE}/beta/__init__.py: changed: 24 bytes, beta 2.0's RECORD")


def test_a_dist_info_of_an_unlocked_version_is_named(world, lock, venv):
    # beta 3.0's metadata planted beside the locked 2.0, as a second install would leave it
    build = world["root"] / "beta3"
    shutil.rmtree(build, ignore_errors=True)
    shutil.unpack_archive(world["links"] / "beta-3.0-py3-none-any.whl", build, "zip")
    shutil.copytree(build / "beta-3.0.dist-info", site(venv) / "beta-3.0.dist-info")
    problems = problems_of(lock, venv)
    assert problems[0].startswith("beta: installed 2 times (")
    assert "requirements.lock pins 2.0" in problems[0]
    assert (
        f"{SITE}/beta-3.0.dist-info/METADATA: unlocked: a file of beta 3.0, which the lock "
        "does not accept" in problems
    )
    assert (
        f"{SITE}/beta-3.0.dist-info/RECORD: unlocked: a file of beta 3.0, which the lock "
        "does not accept" in problems
    )


def test_an_unlocked_version_installed_by_pip_is_named(world, lock, venv):
    result = pip_install(world["tool"], venv, "beta==3.0", links=world["links"])
    assert result.returncode == 0, result.stderr
    problems = problems_of(lock, venv)
    assert problems[0] == "beta: requirements.lock pins 2.0, installed is 3.0"
    assert (
        f"{SITE}/beta/__init__.py: unlocked: a file of beta 3.0, which the lock does not "
        "accept" in problems
    )
    # its byte-code belongs to it too, not to the lock
    assert (
        f"{SITE}/beta/__pycache__/__init__.{TAG}.pyc: unlocked: a file of beta 3.0, which "
        "the lock does not accept" in problems
    )


def test_a_script_planted_in_bin_is_named(lock, venv):
    script = venv / "bin" / "helper"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    assert problems_of(lock, venv) == [f"bin/helper: {NOT_LISTED}"]


def test_a_rewritten_entry_point_script_is_named(lock, venv):
    script = venv / "bin" / "alpha-cli"
    script.write_text(script.read_text() + "import os\n")
    problems = problems_of(lock, venv)
    assert len(problems) == 1
    assert problems[0].startswith("bin/alpha-cli: changed: ")
    assert "alpha 1.0's RECORD" in problems[0]


def test_a_symlink_planted_in_site_packages_is_named(lock, venv, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (site(venv) / "linked").symlink_to(tmp_path / "elsewhere")
    assert problems_of(lock, venv) == [
        f"{SITE}/linked: unexpected: a symlink; no locked distribution's RECORD lists it"
    ]


def test_a_missing_file_is_named(lock, venv):
    (site(venv) / "alpha" / "cli.py").unlink()
    problems = problems_of(lock, venv)
    assert f"{SITE}/alpha/cli.py: missing: listed in alpha 1.0's RECORD" in problems


def test_missing_byte_code_is_fine(lock, venv):
    shutil.rmtree(site(venv) / "alpha" / "__pycache__")
    assert problems_of(lock, venv) == []


# -- byte-code --------------------------------------------------------------------------------


def _compile_into(pyc: Path, source_text: str, tmp_path: Path, name: str) -> None:
    """A well-formed .pyc of other code, written where the real one was."""
    fake = tmp_path / name
    fake.write_text(source_text)
    py_compile.compile(str(fake), cfile=str(pyc), doraise=True)


def test_byte_code_that_is_not_its_sources_compile_is_named(lock, venv, tmp_path):
    pyc = site(venv) / "alpha" / "__pycache__" / f"__init__.{TAG}.pyc"
    _compile_into(pyc, 'GREETING = "hello"\nimport os\n', tmp_path, "__init__.py")
    assert problems_of(lock, venv) == [
        f"{SITE}/alpha/__pycache__/__init__.{TAG}.pyc: changed: byte-code that is not the "
        f"compile of {SITE}/alpha/__init__.py"
    ]


def test_unchecked_hash_byte_code_with_another_body_is_named(lock, venv, tmp_path):
    """An unchecked-hash .pyc is loaded whatever its source holds: only its code decides."""
    pyc = site(venv) / "beta" / "__pycache__" / f"__init__.{TAG}.pyc"
    fake = tmp_path / "__init__.py"
    fake.write_text("import os\n")
    py_compile.compile(
        str(fake),
        cfile=str(pyc),
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    assert problems_of(lock, venv) == [
        f"{SITE}/beta/__pycache__/__init__.{TAG}.pyc: changed: byte-code that is not the "
        f"compile of {SITE}/beta/__init__.py"
    ]


def test_byte_code_written_later_is_accepted_when_it_is_the_compile(lock, venv):
    """Byte-code Python writes at import (or compileall, or uv) is not in RECORD: accepted
    when it is exactly the compile of a verified source, in any invalidation mode."""
    source = site(venv) / "alpha" / "cli.py"
    for level, mode in [(1, "checked-hash"), (2, "unchecked-hash")]:
        pyc = site(venv) / "alpha" / "__pycache__" / f"cli.{TAG}.opt-{level}.pyc"
        py_compile.compile(
            str(source),
            cfile=str(pyc),
            doraise=True,
            optimize=level,
            invalidation_mode=py_compile.PycInvalidationMode[mode.upper().replace("-", "_")],
        )
    verdict = check_environment(lock, prefix=venv)
    assert verdict.problems == []


def test_byte_code_without_a_verified_source_is_named(lock, venv, tmp_path):
    ghost = site(venv) / "alpha" / "__pycache__" / f"ghost.{TAG}.pyc"
    _compile_into(ghost, "import os\n", tmp_path, "ghost.py")
    sourceless = site(venv) / "alpha" / "ghost.pyc"  # importable as alpha.ghost, no source
    shutil.copy(ghost, sourceless)
    assert problems_of(lock, venv) == [
        f"{SITE}/alpha/__pycache__/ghost.{TAG}.pyc: unexpected: byte-code whose source "
        f"{SITE}/alpha/ghost.py is not a verified file of a locked distribution",
        f"{SITE}/alpha/ghost.pyc: {NOT_LISTED}",
    ]


# -- RECORD itself, the venv's layout, two wheels on one path ---------------------------------


def test_record_lines_outside_the_environment_or_with_a_weak_hash_are_named(lock, venv):
    record = site(venv) / "beta-2.0.dist-info" / "RECORD"
    lines = record.read_text().splitlines()
    lines += ["../../../../../../../etc/hostname,sha256=" + "A" * 43 + ",1", "beta/x.py,md5=abc,1"]
    record.write_text("\n".join(lines) + "\n")
    (site(venv) / "beta" / "x.py").write_text("a")
    rel = f"{SITE}/beta-2.0.dist-info/RECORD"
    n = len(lines)
    assert problems_of(lock, venv) == [
        f"{rel}: line {n - 1} lists ../../../../../../../etc/hostname, outside the environment",
        f"{rel}: line {n} hashes beta/x.py with md5=abc; expected sha256 (or sha384, sha512)",
        f"{SITE}/beta/x.py: unverifiable: beta 2.0's RECORD lists it without a hash",
    ]


def test_a_venv_that_lets_the_system_site_packages_in_is_named(lock, venv):
    cfg = venv / "pyvenv.cfg"
    cfg.write_text(
        cfg.read_text().replace(
            "include-system-site-packages = false", "include-system-site-packages = true"
        )
    )
    assert problems_of(lock, venv) == [
        "pyvenv.cfg: layout: include-system-site-packages = true: the system's site-packages "
        "join the environment, unchecked"
    ]


def test_an_interpreter_link_to_another_program_is_named(lock, venv):
    link = venv / "bin" / "python3"
    link.unlink()
    link.symlink_to("/bin/sh")
    assert problems_of(lock, venv) == [
        "bin/python3: layout: a symlink to /bin/sh, not to the interpreter in pyvenv.cfg's home"
    ]


def test_two_locked_wheels_on_one_path_are_named(world, tmp_path):
    """The second wheel overwrote the first one's file: the first one's RECORD disagrees."""
    lock_path = tmp_path / "requirements.lock"
    lock_path.write_text(lock_text(world["links"], [CV2_A, CV2_B]), encoding="utf-8")
    venv = tmp_path / "cv"
    assert run([sys.executable, "-m", "venv", "--without-pip", venv]).returncode == 0
    for wheel in (CV2_A, CV2_B):
        result = pip_install(
            world["tool"], venv, f"{wheel.name}=={wheel.version}", links=world["links"]
        )
        assert result.returncode == 0, result.stderr
    problems = problems_of(load_requirements_lock(lock_path), venv)
    assert problems[0].startswith(f"{SITE}/cv2/__init__.py: changed: ")
    assert "opencv-python 4.0's RECORD" in problems[0]


# -- where the environment is, and the command ------------------------------------------------


def test_the_environment_is_found_from_its_python_without_running_it(venv):
    assert venv_of_python(venv / "bin" / "python") == venv
    assert read_venv(venv).site_packages == SITE
    with pytest.raises(PythonEnvError, match="not the interpreter of a virtual environment"):
        venv_of_python("/usr/bin/env")


def test_the_command_prints_a_summary_and_one_error_line_per_problem(world, venv, capsys):
    args = cli_args(world, prefix=venv)
    assert verify.cli(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{venv}: 3 distributions match requirements.lock, and every file")
    assert "torch 2.0 for CUDA 12.8 with sm_120" in out

    (site(venv) / "evil.pth").write_text("import os\n")
    args = cli_args(world, python=str(venv / "bin" / "python"))
    with pytest.raises(PythonEnvError) as info:
        verify.cli(args)
    assert info.value.lines() == [
        f"{SITE}/evil.pth: {NOT_LISTED} (a .pth file: Python's site runs its import lines at "
        "every start)"
    ]


def test_an_editable_install_is_named_since_its_code_lives_outside(world, lock, venv):
    """PEP 610: an editable install records `dir_info.editable`; its modules are imported from
    a source tree the check cannot see, so even an allowed extra may not be editable."""
    result = pip_install(world["tool"], venv, world["links"] / OURS.filename, links=world["links"])
    assert result.returncode == 0, result.stderr
    dist_info = site(venv) / "comfy_bake-0.1.0.dist-info"
    direct = dist_info / "direct_url.json"
    direct.write_text('{"url": "file:///src/comfy-bake", "dir_info": {"editable": true}}')
    record = dist_info / "RECORD"
    digest = base64.urlsafe_b64encode(hashlib.sha256(direct.read_bytes()).digest())
    lines = [
        f"{line.split(',')[0]},sha256={digest.rstrip(b'=').decode()},{direct.stat().st_size}"
        if line.startswith("comfy_bake-0.1.0.dist-info/direct_url.json,")
        else line
        for line in record.read_text().splitlines()
    ]
    record.write_text("\n".join(lines) + "\n")
    assert problems_of(lock, venv) == [
        f"{SITE}/comfy_bake-0.1.0.dist-info: an editable install; its code lives in "
        "file:///src/comfy-bake, outside the environment, unchecked"
    ]


def test_checking_from_inside_the_environment_warns_and_names_the_outside_form(
    world, venv, monkeypatch, capsys
):
    """Run with the venv's own `python`, its .pth files ran before the check did: it still
    checks, and says how to run it so that nothing of the venv is in the checking process."""
    monkeypatch.setattr(sys, "prefix", str(venv))
    args = cli_args(world, prefix=venv)
    assert verify.cli(args) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"warning: this check runs from the environment it checks ({venv})")
    minor = "{}.{}".format(*sys.version_info[:2])
    assert f"python{minor} -E -s -B -m bake python verify --prefix {venv}" in err


def test_byte_code_is_checked_the_same_over_several_processes(lock, venv, tmp_path, monkeypatch):
    """Large environments compile their sources over a process pool: same verdicts."""
    from bake.python import record

    monkeypatch.setattr(record, "_PARALLEL_PYC", 1)
    verdict = check_environment(lock, prefix=venv, jobs=2)
    assert verdict.problems == []
    assert verdict.report.compiled >= 3
    pyc = site(venv) / "alpha" / "__pycache__" / f"cli.{TAG}.pyc"
    _compile_into(pyc, "def main():\n    import os\n", tmp_path, "cli.py")
    assert verify_environment(lock, prefix=venv, jobs=2) == [
        f"{SITE}/alpha/__pycache__/cli.{TAG}.pyc: changed: byte-code that is not the compile "
        f"of {SITE}/alpha/cli.py"
    ]


def test_a_record_rewritten_with_the_files_it_hashes_is_found_against_the_installed_copy(
    world, lock, venv, capsys
):
    # A build step running as root (a node's code at ComfyUI's build-time start) changes a
    # module, drops its byte-code and rewrites the module's RECORD line to match: every file
    # then agrees with its RECORD. Only a copy of the environment as installed tells.
    init = site(venv) / "alpha" / "__init__.py"
    planted = b'import os; GREETING = os.environ.get("HF_TOKEN")\n'
    init.write_bytes(planted)
    for pyc in (site(venv) / "alpha" / "__pycache__").glob("__init__.*.pyc"):
        pyc.unlink()
    record = site(venv) / "alpha-1.0.dist-info" / "RECORD"
    digest = base64.urlsafe_b64encode(hashlib.sha256(planted).digest()).rstrip(b"=").decode()
    lines = [
        f"alpha/__init__.py,sha256={digest},{len(planted)}"
        if line.startswith("alpha/__init__.py,")
        else line
        for line in record.read_text().splitlines()
    ]
    record.write_text("\n".join(lines) + "\n")
    assert problems_of(lock, venv) == []  # what the RECORDs alone can prove

    reference = world["pristine"]  # the venv as pip installed it
    assert problems_of(lock, venv, reference=reference) == [
        f"{SITE}/alpha-1.0.dist-info/RECORD: rewritten: not the RECORD alpha 1.0 was installed "
        f"with (the reference environment {reference} holds another), so the files it hashes "
        "prove nothing"
    ]
    args = cli_args(world, prefix=venv, reference=reference)
    with pytest.raises(PythonEnvError, match=r"alpha-1\.0\.dist-info/RECORD: rewritten"):
        verify.cli(args)


def test_the_clean_environment_passes_against_its_installed_copy(world, venv, capsys):
    args = cli_args(world, prefix=venv, reference=world["pristine"])
    assert verify.cli(args) == 0
    assert f"every RECORD is the one in {world['pristine']}" in capsys.readouterr().out
