"""Every file of a virtual environment, accounted for by the RECORD of an installed wheel.

Reads the environment from outside: its layout comes from `pyvenv.cfg` and the venv folders,
never from running its interpreter, and this module needs nothing but the standard library
(and bake.errors), so the interpreter that runs it may be another one (the image runs the
system Python 3.12 on /opt/venv). The verdict is made of the bytes on disk alone.

Every path under the prefix (files and symlinks; empty folders hold nothing) is one of:

- a file listed in the RECORD of an *accepted* distribution (the caller decides which: the
  lock's pins at their versions, and the few allowed extras), whose size and digest match the
  RECORD line (sha256, or sha384/sha512; nothing weaker);
- that distribution's RECORD itself, which cannot hash itself;
- byte-code, `<dir>/__pycache__/<stem>.<tag>[.opt-N].pyc` for the environment's Python, whose
  source `<dir>/<stem>.py` passed the check above and whose code object equals what compiling
  that source gives (pip lists the .pyc files it writes with no hash, uv and Python's import
  write them unlisted, so only their content can decide);
- the venv's own layout: pyvenv.cfg (with include-system-site-packages off), the interpreter
  links in bin/ (to the interpreter pyvenv.cfg's `home` names, or copies of it), the shell
  activation scripts the creator writes, `lib64 -> lib`, and uv's marker files.

Anything else is `unexpected` (a .pth, sitecustomize.py, a package without metadata, a .py
added to a package, a script in bin/), `changed` (a file whose bytes are not the RECORD's),
`unlocked` (a file of a distribution that is not accepted), `unverifiable` (listed with no
hash) or `missing` (listed, absent; byte-code may be absent).

What it cannot see on its own: a RECORD rewritten together with the files it lists. RECORD is
written by the installer from the wheel whose sha256 the lock pins (pip and uv check it before
anything lands), so it proves the files are the wheel's as long as nothing rewrote both
afterwards. `rewritten_records` closes that: every RECORD must equal the one in a reference
copy of the environment taken before any untrusted code ran (the image bind-mounts the
environment's earlier stage, which nothing of the later steps can write).
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import importlib.util
import json
import marshal
import multiprocessing
import os
import posixpath
import re
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from bake.errors import PythonEnvError, shown

# Digests a RECORD line may use: PEP 427 asks for sha256 or stronger.
HASHES = ("sha256", "sha384", "sha512")
FILE, SYMLINK, OTHER = "file", "symlink", "other"

# What `python -m venv` writes beside the interpreter links in bin/, and what uv writes.
VENV_SCRIPTS = frozenset(["activate", "activate.csh", "activate.fish", "Activate.ps1"])
UV_SCRIPTS = frozenset(
    [
        "activate",
        "activate.bat",
        "activate.csh",
        "activate.fish",
        "activate.nu",
        "activate.ps1",
        "activate.xsh",
        "activate_this.py",
        "deactivate.bat",
        "pydoc.bat",
    ]
)
UV_ROOT_FILES = frozenset([".gitignore", ".lock", "CACHEDIR.TAG"])
UNLOCKED_SHOWN = 20  # files named per distribution that is not accepted; then a count

# Byte-code checks fan out to processes above this many files (compile() holds the GIL).
_PARALLEL_PYC = 256


def canonical(name: str) -> str:
    """PEP 503 normalisation (what packaging.utils.canonicalize_name does)."""
    return re.sub(r"[-_.]+", "-", name).lower()


# -- the venv's layout, from pyvenv.cfg ------------------------------------------------------


@dataclass(frozen=True)
class Venv:
    prefix: Path  # absolute, symlinks not resolved
    version: str  # the interpreter's full version, "3.12.3"
    home: str  # the folder of the base interpreter (pyvenv.cfg `home`)
    include_system_site_packages: bool
    creator: str  # "venv" or "uv"

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def site_packages(self) -> str:
        """purelib and platlib (one folder in a venv on Linux), relative to the prefix."""
        return f"lib/python{self.minor}/site-packages"

    @property
    def cache_tag(self) -> str:
        return "cpython-" + self.minor.replace(".", "")

    @property
    def interpreter_names(self) -> frozenset[str]:
        return frozenset(["python", "python3", f"python{self.minor}", "𝜋thon"])

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"


def read_venv(prefix: Path | str) -> Venv:
    """The venv at `prefix`, from its pyvenv.cfg (nothing is run)."""
    prefix = Path(os.path.abspath(prefix))
    cfg = prefix / "pyvenv.cfg"
    try:
        text = cfg.read_text(encoding="utf-8")
    except OSError as exc:
        raise PythonEnvError(
            f"{prefix}: not a virtual environment ({cfg.name}: {exc.strerror}); "
            "pass --prefix with the venv's folder"
        ) from None
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lower()] = value.strip()
    version = values.get("version") or values.get("version_info") or ""
    if not re.fullmatch(r"3\.\d+(\.\d+)?([a-z]+\d+)?", version):
        raise PythonEnvError(
            f"{cfg}: no interpreter version (`version` or `version_info`), found {version!r}"
        )
    implementation = values.get("implementation", "CPython")
    if implementation.lower() != "cpython":
        raise PythonEnvError(f"{cfg}: implementation {implementation}; only CPython is checked")
    return Venv(
        prefix=prefix,
        version=version,
        home=values.get("home", ""),
        include_system_site_packages=values.get("include-system-site-packages", "false").lower()
        == "true",
        creator="uv" if "uv" in values else "venv",
    )


def venv_of_python(python: str | Path) -> Path:
    """The prefix of the venv whose `bin/python` is `python`, from the path alone: the link is
    not followed and the interpreter is not run."""
    path = Path(os.path.abspath(python))
    for candidate in (path.parent.parent, path.parent):
        if (candidate / "pyvenv.cfg").is_file():
            return candidate
    raise PythonEnvError(
        f"{python}: not the interpreter of a virtual environment (no pyvenv.cfg above it); "
        "pass --prefix with the environment's folder"
    )


# -- what is on disk --------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    path: str  # relative to the prefix, normalised
    algorithm: str  # "" when the line has no hash
    digest: bytes
    size: int | None


@dataclass
class Dist:
    name: str  # canonical, from METADATA (else from the folder's name)
    version: str
    folder: str  # the .dist-info folder, relative to the prefix
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def record(self) -> str:
        return f"{self.folder}/RECORD"


@dataclass
class Scan:
    venv: Venv
    files: dict[str, str]  # relative path -> FILE, SYMLINK or OTHER (folders are not listed)
    dists: list[Dist]


def walk(prefix: Path) -> dict[str, str]:
    """Every non-folder under `prefix`, relative, with its kind; symlinks are not followed."""
    found: dict[str, str] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            iterator = os.scandir(prefix / rel if rel else prefix)
        except OSError as exc:
            raise PythonEnvError(f"{prefix / rel}: cannot list it ({exc.strerror})") from None
        with iterator:
            for entry in iterator:
                path = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_symlink():
                    found[path] = SYMLINK
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(path)
                elif entry.is_file(follow_symlinks=False):
                    found[path] = FILE
                else:
                    found[path] = OTHER
    return found


def _metadata(path: Path) -> dict[str, str]:
    """The Name and Version headers of a METADATA file (headers end at the first blank line)."""
    headers: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                break
            key, sep, value = line.partition(":")
            if sep and key in ("Name", "Version") and key not in headers:
                headers[key] = value.strip()
    return headers


def _editable(path: Path) -> str | None:
    """The URL of an editable install's source (PEP 610 direct_url.json), else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    info = data.get("dir_info") if isinstance(data, dict) else None
    if isinstance(info, dict) and info.get("editable"):
        return str(data.get("url", "?"))
    return None


def _row_path(venv: Venv, listed: str) -> str | None:
    """A RECORD path (relative to site-packages, or absolute) relative to the prefix; None
    when it points outside the prefix."""
    if listed.startswith("/"):
        try:
            rel = os.path.relpath(posixpath.normpath(listed), venv.prefix)
        except ValueError:
            return None
    else:
        rel = posixpath.normpath(posixpath.join(venv.site_packages, listed))
    if rel == ".." or rel.startswith("../") or rel in (".", ""):
        return None
    return rel


def _read_record(venv: Venv, dist: Dist) -> None:
    path = venv.prefix / dist.record
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        dist.problems.append(f"{shown(dist.record)}: unreadable ({exc}); its files are unchecked")
        return
    for number, fields in enumerate(lines, 1):
        if not fields or not fields[0]:
            continue
        rel = _row_path(venv, fields[0])
        if rel is None:
            dist.problems.append(
                f"{shown(dist.record)}: line {number} lists {shown(fields[0])}, outside the "
                "environment"
            )
            continue
        algorithm, digest = "", b""
        written = fields[1] if len(fields) > 1 else ""
        if written:
            algorithm, _, encoded = written.partition("=")
            try:
                digest = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            except (binascii.Error, ValueError):
                digest = b""
            if algorithm not in HASHES or not digest:
                dist.problems.append(
                    f"{shown(dist.record)}: line {number} hashes {shown(fields[0])} with "
                    f"{shown(written)}; expected sha256 (or sha384, sha512)"
                )
                algorithm, digest = "", b""
        size = None
        if len(fields) > 2 and fields[2].isdigit():
            size = int(fields[2])
        dist.rows.append(Row(rel, algorithm, digest, size))


def scan_venv(venv: Venv) -> Scan:
    """The files under the venv and the distributions its site-packages holds."""
    files = walk(venv.prefix)
    site = venv.site_packages + "/"
    folders = sorted(
        {
            path[len(site) :].split("/", 1)[0]
            for path in files
            if path.startswith(site) and path[len(site) :].split("/", 1)[0].endswith(".dist-info")
        }
    )
    dists = []
    for name in folders:
        folder = site + name
        if files.get(f"{folder}/METADATA") == FILE:
            headers = _metadata(venv.prefix / folder / "METADATA")
        else:
            headers = {}
        stem = name[: -len(".dist-info")]
        folder_name, _, folder_version = stem.partition("-")
        dist = Dist(
            canonical(headers.get("Name") or folder_name),
            headers.get("Version") or folder_version,
            folder,
        )
        if not headers.get("Name") or not headers.get("Version"):
            dist.problems.append(f"{shown(folder)}: no METADATA with Name and Version")
        elif canonical(folder_name) != dist.name or folder_version.lower() != dist.version.lower():
            dist.problems.append(
                f"{shown(folder)}: its METADATA says {dist.name} {dist.version}, its folder's "
                "name says otherwise"
            )
        if files.get(f"{folder}/direct_url.json") == FILE and (
            where := _editable(venv.prefix / folder / "direct_url.json")
        ):
            dist.problems.append(
                f"{shown(folder)}: an editable install; its code lives in {shown(where)}, "
                "outside the environment, unchecked"
            )
        if files.get(dist.record) == FILE:
            _read_record(venv, dist)
        else:
            dist.problems.append(f"{shown(folder)}: no RECORD; none of its files can be checked")
        dists.append(dist)
    return Scan(venv, files, dists)


# -- accounting ---------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Finding:
    path: str  # relative to the prefix
    kind: str  # unexpected, changed, unlocked, unverifiable, missing, layout
    detail: str

    def line(self) -> str:
        return f"{shown(self.path)}: {self.kind}: {self.detail}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # not about one path
    hashed: int = 0  # files whose digest matched their RECORD line
    compiled: int = 0  # byte-code files equal to their source's compile
    layout: int = 0  # venv files accepted by the layout rule

    def lines(self) -> list[str]:
        return self.problems + [f.line() for f in sorted(self.findings)]


def _hint(venv: Venv, path: str) -> str:
    """Why an unexpected file at the top of site-packages matters more than most."""
    parent, _, name = path.rpartition("/")
    if parent != venv.site_packages:
        return ""
    if name.endswith(".pth"):
        return " (a .pth file: Python's site runs its import lines at every start)"
    if name.split(".", 1)[0] in ("sitecustomize", "usercustomize"):
        return " (Python imports it at every start)"
    return ""


def _pyc_source(venv: Venv, path: str) -> tuple[str, int] | None:
    """For `<dir>/__pycache__/<stem>.<tag>[.opt-N].pyc` of the venv's Python: `<dir>/<stem>.py`
    and the optimisation level; None for any other path."""
    parent, _, name = path.rpartition("/")
    folder, _, cache = parent.rpartition("/")
    if cache != "__pycache__" or not name.endswith(".pyc"):
        return None
    parts = name[: -len(".pyc")].split(".")
    level = 0
    if parts and parts[-1] in ("opt-1", "opt-2"):
        level = int(parts.pop()[-1])
    if len(parts) < 2 or parts[-1] != venv.cache_tag:
        return None
    stem = ".".join(parts[:-1])
    return (f"{folder}/{stem}.py" if folder else f"{stem}.py"), level


def _same_code(a: object, b: object) -> bool:
    """Code objects that run the same: `==` (bytecode, constants, names, line and exception
    tables, nested code included) and the fields `==` leaves out that the interpreter trusts
    (stack size, local counts), nested code included. co_filename may differ: pip compiles
    with the path it installs to, and it only shows in tracebacks."""
    return a == b and _same_frames(a, b)


def _same_frames(a: object, b: object) -> bool:
    for attr in ("co_stacksize", "co_nlocals", "co_qualname", "co_varnames", "co_cellvars"):
        if getattr(a, attr, None) != getattr(b, attr, None):
            return False
    nested_a = [c for c in getattr(a, "co_consts", ()) if hasattr(c, "co_code")]
    nested_b = [c for c in getattr(b, "co_consts", ()) if hasattr(c, "co_code")]
    return len(nested_a) == len(nested_b) and all(map(_same_frames, nested_a, nested_b))


def pyc_matches(job: tuple[str, str, int]) -> bool:
    """Whether the .pyc at job[0] holds this interpreter's compile of the source at job[1]
    (optimisation level job[2]): magic number, then the code object. The header's flags and
    source stamp only decide when Python uses the file; the code is what runs."""
    pyc, source, level = job
    try:
        with open(pyc, "rb") as handle:
            data = handle.read()
        if len(data) < 16 or data[:4] != importlib.util.MAGIC_NUMBER:
            return False
        with open(source, "rb") as handle:
            text = handle.read()
        expected = compile(text, source, "exec", dont_inherit=True, optimize=level)
        return _same_code(marshal.loads(data[16:]), expected)
    except (OSError, ValueError, EOFError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def _digest(path: Path, algorithms: Iterable[str]) -> dict[str, bytes]:
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as handle:
        if len(hashers) == 1:
            (algorithm,) = hashers
            return {algorithm: hashlib.file_digest(handle, algorithm).digest()}
        while chunk := handle.read(1 << 20):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {a: h.digest() for a, h in hashers.items()}


def _layout(venv: Venv, path: str, kind: str) -> str | None:
    """None when `path` is not part of the venv's own layout; "" when it is and is as the
    creator writes it; else what is wrong with it."""
    prefix = venv.prefix
    if path == "pyvenv.cfg":
        if kind != FILE:
            return "pyvenv.cfg is not a regular file"
        if venv.include_system_site_packages:
            return (
                "include-system-site-packages = true: the system's site-packages join the "
                "environment, unchecked"
            )
        return ""
    if venv.creator == "uv" and path in UV_ROOT_FILES:
        return "" if kind == FILE else "expected a regular file"
    if path == "lib64":
        if kind == SYMLINK and os.readlink(prefix / path) == "lib":
            return ""
        return "expected the symlink lib64 -> lib"
    folder, _, name = path.partition("/")
    if folder != "bin" or "/" in name:
        return None
    if name in venv.interpreter_names:
        return _interpreter(venv, path, kind)
    scripts = UV_SCRIPTS if venv.creator == "uv" else VENV_SCRIPTS
    if name in scripts:
        return "" if kind == FILE else "expected a regular file"
    return None


def _interpreter(venv: Venv, path: str, kind: str) -> str:
    """bin/python*: a link to the interpreter in pyvenv.cfg's home (or to another of these
    links), or a copy of it."""
    link = venv.prefix / path
    home = Path(venv.home) if venv.home else None
    originals = []
    if home is not None:
        originals = [home / n for n in venv.interpreter_names if (home / n).is_file()]
    if kind == SYMLINK:
        target = os.readlink(link)
        if "/" not in target and target in venv.interpreter_names:
            return ""
        real = os.path.realpath(link)
        if any(os.path.realpath(o) == real for o in originals):
            return ""
        return f"a symlink to {shown(target)}, not to the interpreter in pyvenv.cfg's home"
    if kind == FILE:
        try:
            mine = _digest(link, ["sha256"])
            if any(_digest(o, ["sha256"]) == mine for o in originals):
                return ""
        except OSError:
            pass
        return "not a copy of the interpreter in pyvenv.cfg's home"
    return "not a file or a symlink"


def account(
    scan: Scan,
    accepted: Callable[[Dist], bool],
    *,
    jobs: int | None = None,
) -> Report:
    """Check every path of `scan` against the RECORDs of the distributions `accepted` takes."""
    venv = scan.venv
    jobs = max(1, jobs or os.cpu_count() or 1)
    report = Report()
    claims: dict[str, list[tuple[Dist, Row]]] = {}
    others: dict[str, Dist] = {}  # path -> a distribution that is not accepted and lists it
    accepted_dists = []
    for dist in scan.dists:
        if accepted(dist):
            accepted_dists.append(dist)
            report.problems.extend(dist.problems)
            for row in dist.rows:
                claims.setdefault(row.path, []).append((dist, row))
        else:
            others.setdefault(dist.record, dist)
            for row in dist.rows:
                others.setdefault(row.path, dist)
    records = {d.record for d in accepted_dists}

    to_hash: list[tuple[str, list[tuple[Dist, Row]]]] = []
    to_compile: list[tuple[str, str, int]] = []  # pyc, source, level
    unlocked: dict[str, list[str]] = {}  # dist folder -> its files
    unlocked_dist: dict[str, Dist] = {}

    def find(path: str, kind: str, detail: str) -> None:
        report.findings.append(Finding(path, kind, detail))

    for path, kind in scan.files.items():
        layout = _layout(venv, path, kind)
        if layout is not None:
            if layout:
                find(path, "layout", layout)
            else:
                report.layout += 1
            continue
        listed = claims.get(path)
        pyc = _pyc_source(venv, path)
        if listed:
            hashed = [(d, r) for d, r in listed if r.algorithm]
            if kind != FILE:
                find(
                    path,
                    "changed",
                    f"not a regular file, {listed[0][0].label}'s RECORD lists a file",
                )
            elif hashed:
                to_hash.append((path, hashed))
            elif path in records:
                pass  # a RECORD cannot hash itself
            elif pyc is not None:
                to_compile.append((path, pyc[0], pyc[1]))
            else:
                find(path, "unverifiable", f"{listed[0][0].label}'s RECORD lists it without a hash")
        elif path in others or (pyc is not None and pyc[0] in others):
            # a file of a distribution that is not accepted, or byte-code of one of its files
            dist = others.get(path) or others[pyc[0]]  # type: ignore[index]
            unlocked.setdefault(dist.folder, []).append(path)
            unlocked_dist[dist.folder] = dist
        elif pyc is not None and kind == FILE:
            to_compile.append((path, pyc[0], pyc[1]))
        else:
            detail = "no locked distribution's RECORD lists it"
            if path.startswith(venv.site_packages + "/") and path.endswith(".egg-info"):
                detail += " (an .egg-info: not installed from a wheel)"
            if kind == SYMLINK:
                detail = "a symlink; " + detail
            elif kind == OTHER:
                detail = "a special file; " + detail
            find(path, "unexpected", detail + _hint(venv, path))

    for path, listed in claims.items():
        # byte-code may be absent: Python compiles the source instead
        if path not in scan.files and not path.endswith(".pyc"):
            find(path, "missing", f"listed in {listed[0][0].label}'s RECORD")

    verified = _check_hashes(venv, to_hash, jobs, report)
    _check_byte_code(venv, to_compile, verified, jobs, report)

    for folder, paths in sorted(unlocked.items()):
        dist = unlocked_dist[folder]
        # startup hooks first: they run before anything else
        paths.sort(key=lambda p: (not _hint(venv, p), p))
        for path in paths[:UNLOCKED_SHOWN]:
            find(
                path,
                "unlocked",
                f"a file of {dist.label}, which the lock does not accept" + _hint(venv, path),
            )
        if len(paths) > UNLOCKED_SHOWN:
            find(
                folder, "unlocked", f"and {len(paths) - UNLOCKED_SHOWN} more files of {dist.label}"
            )
    return report


def _check_hashes(
    venv: Venv,
    to_hash: list[tuple[str, list[tuple[Dist, Row]]]],
    jobs: int,
    report: Report,
) -> set[str]:
    """Size, then digest, of each listed file; returns the paths that match every line."""

    def check(item: tuple[str, list[tuple[Dist, Row]]]) -> tuple[str, list[str]]:
        path, listed = item
        full = venv.prefix / path
        try:
            size = os.lstat(full).st_size
            if sizes := [
                f"{size} bytes, {d.label}'s RECORD says {r.size}"
                for d, r in listed
                if r.size is not None and r.size != size
            ]:
                return path, sizes  # no need to read it
            digests = _digest(full, {r.algorithm for _, r in listed})
        except OSError as exc:
            return path, [f"unreadable ({exc.strerror})"]
        return path, [
            f"its {r.algorithm} is not the one {d.label}'s RECORD lists"
            for d, r in listed
            if digests[r.algorithm] != r.digest
        ]

    def check_batch(batch: list[tuple[str, list[tuple[Dist, Row]]]]) -> list:
        return [check(item) for item in batch]

    # Large files first, so the pool is not left waiting on one big file at the end; small
    # files go in batches of up to 8 MiB or 64 files, so a future is not paid per file.
    to_hash.sort(key=lambda item: -(item[1][0][1].size or 0))
    batches: list[list[tuple[str, list[tuple[Dist, Row]]]]] = []
    weight = 0
    for item in to_hash:
        size = item[1][0][1].size or 0
        if not batches or len(batches[-1]) >= 64 or weight + size > 8 << 20:
            batches.append([])
            weight = 0
        batches[-1].append(item)
        weight += size
    verified = set()
    with ThreadPoolExecutor(max_workers=min(32, jobs * 2)) as pool:
        for results in pool.map(check_batch, batches):
            for path, wrong in results:
                if wrong:
                    report.findings.append(Finding(path, "changed", "; ".join(wrong)))
                else:
                    verified.add(path)
                    report.hashed += 1
    return verified


def _check_byte_code(
    venv: Venv,
    to_compile: list[tuple[str, str, int]],
    verified: set[str],
    jobs: int,
    report: Report,
) -> None:
    todo = []
    for pyc, source, level in to_compile:
        if source not in verified:
            report.findings.append(
                Finding(
                    pyc,
                    "unexpected",
                    f"byte-code whose source {shown(source)} is not a verified file of a locked "
                    "distribution",
                )
            )
        else:
            todo.append((pyc, source, level))
    if not todo:
        return
    if sys.implementation.cache_tag != venv.cache_tag:
        report.problems.append(
            f"{len(todo)} byte-code files for {venv.cache_tag} cannot be checked by this "
            f"Python ({sys.implementation.cache_tag}); run the verify with Python {venv.minor}"
        )
        return
    work = [(str(venv.prefix / p), str(venv.prefix / s), level) for p, s, level in todo]
    try:
        if (
            len(work) >= _PARALLEL_PYC
            and jobs > 1
            and "fork" in multiprocessing.get_all_start_methods()
        ):
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                results = list(pool.map(pyc_matches, work, chunksize=64))
        else:
            results = [pyc_matches(item) for item in work]
    except BrokenProcessPool:
        report.problems.append(
            "byte-code check: a worker crashed reading a .pyc (malformed byte-code?)"
        )
        return
    for (pyc, source, _), ok in zip(todo, results, strict=True):
        if ok:
            report.compiled += 1
        else:
            report.findings.append(
                Finding(pyc, "changed", f"byte-code that is not the compile of {shown(source)}")
            )


def rewritten_records(dists: Iterable[Dist], prefix: Path, reference: Path) -> list[str]:
    """A line for every distribution whose RECORD is not byte for byte the one at the same
    path under `reference`: the environment as installed, before anything that ran later could
    have rewritten a RECORD together with the files it hashes."""
    lines = []
    for dist in dists:
        try:
            ours = (prefix / dist.record).read_bytes()
        except OSError as exc:
            lines.append(f"{dist.record}: cannot be read ({exc.strerror})")
            continue
        try:
            theirs = (reference / dist.record).read_bytes()
        except FileNotFoundError:
            lines.append(
                f"{dist.record}: {dist.label} is not in the reference environment "
                f"{shown(str(reference))}: installed after it"
            )
            continue
        except OSError as exc:
            lines.append(f"{shown(str(reference / dist.record))}: cannot be read ({exc.strerror})")
            continue
        if ours != theirs:
            lines.append(
                f"{dist.record}: rewritten: not the RECORD {dist.label} was installed with "
                f"(the reference environment {shown(str(reference))} holds another), so the files "
                "it hashes prove nothing"
            )
    return lines
