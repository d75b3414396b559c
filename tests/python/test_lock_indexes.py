"""requirements.lock names only the indexes the project uses.

`update-locks --python` writes requirements.in's `--index-url`, the torch index its header
records (`--extra-index-url`, with `--torch-index`) and the build options; the lock parser that
`bake check` runs refuses any other option line, naming it. Each case is the committed lock
with one line added (or changed) as a hand edit or a hostile commit would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bake import cli
from bake.errors import LockError
from bake.locks.requirements import load_requirements_lock

REPO = Path(__file__).resolve().parents[2]
COMMITTED = (REPO / "requirements.lock").read_text(encoding="utf-8")
ANCHOR = "--no-binary pixeloe\n"
TORCH = "https://download.pytorch.org/whl/cu128"


def with_line(line: str, *, replace: str | None = None, text: str = COMMITTED) -> tuple[str, int]:
    """The lock with `line` added after its option lines (or written over `replace`), and the
    number of that line."""
    if replace is not None:
        assert replace in text
        index = text.index(replace)
        return text.replace(replace, line + "\n", 1), text[:index].count("\n") + 1
    index = text.index(ANCHOR) + len(ANCHOR)
    return text[:index] + line + "\n" + text[index:], text[:index].count("\n") + 1


def refused(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "requirements.lock"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LockError) as info:
        load_requirements_lock(path)
    return [str(p) for p in info.value.problems]


def test_the_committed_lock_names_pypi_and_its_build_options_only():
    lock = load_requirements_lock(REPO / "requirements.lock")
    assert lock.options == (
        "--index-url https://pypi.org/simple",
        "--only-binary :all:",
        "--no-binary pixeloe",
    )


ADDED = [
    ("extra index", "--extra-index-url https://evil.example/simple", "an extra index"),
    ("second index", "--index-url https://evil.example/simple", "a second --index-url"),
    ("-i", "-i https://evil.example/simple", "unsupported option line"),
    ("find-links", "--find-links https://evil.example/wheels/", "unsupported option line"),
    ("-f", "-f /tmp/wheels", "unsupported option line"),
    ("trusted host", "--trusted-host evil.example", "unsupported option line"),
    ("no index", "--no-index", "unsupported option line"),
    ("another file", "-r more-requirements.txt", "unsupported option line"),
    ("constraints", "-c constraints.txt", "unsupported option line"),
    ("editable", "-e ./local", "unsupported option line"),
    ("pre-releases", "--pre", "unsupported option line"),
    ("prefer binary", "--prefer-binary", "unsupported option line"),
    ("equals form", "--extra-index-url=https://evil.example/simple", "unsupported option line"),
    ("config settings", "--config-settings key=value", "unsupported option line"),
]


@pytest.mark.parametrize(("line", "expected"), [c[1:] for c in ADDED], ids=[c[0] for c in ADDED])
def test_an_added_option_line_is_refused_naming_it(tmp_path, line, expected):
    text, number = with_line(line)
    (problem,) = refused(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'requirements.lock'}: line {number}: ")
    assert repr(line) in problem
    assert expected in problem


CHANGED = [
    ("plain http", "--index-url http://pypi.org/simple", "must be https://"),
    ("credentials", "--index-url https://user:secret@pypi.example/simple", "no credentials"),
    ("variable", "--index-url https://${INDEX_HOST}/simple", "no ${...} variable"),
]


@pytest.mark.parametrize(
    ("line", "expected"), [c[1:] for c in CHANGED], ids=[c[0] for c in CHANGED]
)
def test_an_index_url_that_is_not_plain_https_is_refused(tmp_path, line, expected):
    text, number = with_line(line, replace="--index-url https://pypi.org/simple\n")
    (problem,) = refused(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'requirements.lock'}: line {number}: {line!r}: ")
    assert expected in problem


def _with_torch_index(recorded: str) -> str:
    return COMMITTED.replace("#    torch-index: none\n", f"#    torch-index: {recorded}\n")


def test_the_torch_index_the_header_records_is_accepted(tmp_path):
    text, _ = with_line(f"--extra-index-url {TORCH}", text=_with_torch_index(TORCH))
    path = tmp_path / "requirements.lock"
    path.write_text(text, encoding="utf-8")
    assert f"--extra-index-url {TORCH}" in load_requirements_lock(path).options


def test_an_extra_index_other_than_the_recorded_torch_index_is_refused(tmp_path):
    text, number = with_line(
        "--extra-index-url https://download.pytorch.org/whl/cu130",
        text=_with_torch_index(TORCH),
    )
    (problem,) = refused(tmp_path, text)
    assert f"line {number}: " in problem
    assert f"(torch-index: {TORCH})" in problem


def test_a_second_extra_index_is_refused_even_beside_the_recorded_one(tmp_path):
    text, _ = with_line(f"--extra-index-url {TORCH}", text=_with_torch_index(TORCH))
    text, number = with_line(f"--extra-index-url {TORCH}", text=text)
    (problem,) = refused(tmp_path, text)
    # the added line comes first, so the one below it is the second
    assert f"line {number + 1}: " in problem
    assert f"a second --extra-index-url (the first is on line {number})" in problem


def test_a_torch_index_named_only_below_the_header_does_not_count(tmp_path):
    """Only the header block records the torch index: a comment further down is no record."""
    text, number = with_line(f"--extra-index-url {TORCH}")
    text = text.replace("accelerate==", f"#    torch-index: {TORCH}\naccelerate==", 1)
    (problem,) = refused(tmp_path, text)
    assert f"line {number}: " in problem and "(torch-index: none)" in problem


def test_bake_check_refuses_the_lock_and_names_the_line(tmp_path, capsys):
    text, number = with_line("--extra-index-url https://evil.example/simple")
    path = tmp_path / "requirements.lock"
    path.write_text(text, encoding="utf-8")
    assert cli.main(["check", "--lock", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"line {number}: '--extra-index-url https://evil.example/simple': an extra index" in err
