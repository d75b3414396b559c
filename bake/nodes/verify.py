"""`python -m bake nodes verify`: ComfyUI's tree and every custom-node folder hold exactly the
files of their locked commits, and nothing that could run that the build did not put there.

The reference is the locked rev alone: each entry's file list comes from git's objects, every
object re-hashed (bake.nodes.objects), and each file on disk is hashed as a git blob against it;
with a `tree` in the lock, the blake3 tree hash of the tracked files is compared too. Nothing
kept inside the verified tree is trusted (no manifest, no index, no stamps).

Every path under an entry's folder (except its `.git`) is one of:
- a file of the commit, with its mode and bytes (a symlink with its target): `changed` otherwise;
- a models-lock destination (a model file a node keeps in its folder, such as RIFE's
  checkpoints): its bytes are `models verify`'s business. A destination on a path the commit
  tracks is refused: the model would replace code or data of the commit;
- a `.pyc` under `__pycache__/`, for this interpreter, next to a tracked `.py`, whose code object
  equals what compiling that source gives (so only the build's own byte-code passes, whatever
  its invalidation mode);
- generated data: a file that is not code (no code suffix, not executable, not a symlink, not
  pickled weights: PICKLE_SUFFIXES) and that the entry's committed `.gitignore` files ignore,
  such as the configs nodes write at first start. Only committed `.gitignore` files count,
  read from git's objects;
- bake's own records: the empty `.<name>.lock` that `models fetch` leaves beside a model, and
  in ComfyUI's root the folders `.bake/` and `.bake-stamps/` (not code).
Anything else is `unexpected`, and so is every file in ComfyUI's `custom_nodes/` and `models/`
that is not tracked, not a locked node and not a models-lock destination; a tracked file that is
absent is `missing`. Empty folders are accepted (they hold nothing), except in `custom_nodes/`.

Three things are stricter than that, whatever any .gitignore says:
- configuration ComfyUI or a node loads at start and that can point it at code or model folders
  (LOADED_CONFIG: `extra_model_paths.yaml` in ComfyUI's root, a node's `pyproject.toml`, ...) is
  accepted only when the commit tracks it, or, for the few a node writes at first start, when it
  says exactly what the commit's default says; anything else there is `unexpected`;
- a symlink of the commit must stay inside its entry's folder (no absolute target, nothing that
  resolves outside; in ComfyUI's tree, nothing into the folders jobs write): `unsafe`;
- the entry's git metadata must be what git writes (bake.nodes.git.inspect_metadata: no config
  key outside the allow-list, no hook, no info/attributes...): `unsafe` otherwise, and
  `nodes install` replaces it before it runs git there.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import marshal
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bake.errors import GitError, VerificationError, shown
from bake.hashing import UnsafeNameError, git_blob_id, tree_hash_paths
from bake.locks.lockfile import MODELS_LOCK, NODES_LOCK, default_lock
from bake.locks.models import load_models_lock
from bake.locks.nodes import NodeEntry, NodesLock, load_nodes_lock
from bake.nodes import git
from bake.nodes.objects import CommitFiles, commit_files

# Suffixes of files some loader runs or serves as code (Python, native modules, shell, the
# front end's scripts and pages, notebooks, Windows executables).
CODE_SUFFIXES = frozenset(
    [
        ".py",
        ".pyc",
        ".pyo",
        ".pyw",
        ".pyd",
        ".pyi",
        ".pyx",
        ".so",
        ".dylib",
        ".dll",
        ".exe",
        ".bat",
        ".cmd",
        ".ps1",
        ".sh",
        ".bash",
        ".zsh",
        ".js",
        ".mjs",
        ".cjs",
        ".ts",
        ".jsx",
        ".tsx",
        ".wasm",
        ".html",
        ".htm",
        ".xhtml",
        ".svg",
        ".ipynb",
    ]
)
# Suffixes of pickled weights and objects: torch.load, pickle, joblib and numpy (allow_pickle)
# run code while reading them, so an untracked one in a node's folder is code, not data,
# however a .gitignore ignores it (a checkpoint folder is commonly ignored). A model a node
# keeps in its folder is a models-lock destination, checked by its hash instead.
# A deny-list inside the allow-list of generated data: what nodes write at first start
# (settings, caches, their names chosen by each node) cannot be listed ahead of the start,
# so the files a .gitignore ignores are accepted unless their kind is one a loader executes.
PICKLE_SUFFIXES = frozenset(
    [".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle", ".joblib", ".npy", ".npz", ".tar"]
)
BAKE_DATA = (".bake", ".bake-stamps")  # bake's own records at ComfyUI's root
STRICT = ("custom_nodes", "models")  # ComfyUI folders where only pinned files may lie


@dataclass(frozen=True)
class LoadedConfig:
    """A file that ComfyUI or a node reads as configuration when it starts, at a path relative
    to an entry's folder: only the commit's own file (tracked, so its bytes are checked like any
    other), or, with `default`, the copy the node itself writes at first start, may lie there.
    Being ignored by a .gitignore is never enough."""

    where: str  # "comfyui": ComfyUI's root; "custom_node": the root of every custom node
    path: str
    reader: str  # who reads it, and when
    effect: str  # what it can point ComfyUI or the node at
    default: str | None = None  # a tracked file (same entry) it may equal: the node's own copy
    same: str = "bytes"  # how it must equal `default`: "bytes", or "json" (the same values)


# Every configuration file read at start that can point ComfyUI or a node at code or model
# folders, or switch code on, found by reading ComfyUI (main.py, folder_paths.py, app/,
# comfy/cli_args.py, nodes.py) and the nine locked nodes. What is not here stays generated data
# (ComfyUI's user/ holds comfy.settings.json, which only the front end reads, users.json, read
# with --multi-user only, and comfyui.db, asset records; no node reads a path from them).
LOADED_CONFIG = (
    # ComfyUI's main.py (apply_custom_paths) loads extra_model_paths.yaml from its own folder at
    # every start, even when --extra-model-paths-config names another file; ComfyUI's .gitignore
    # ignores it. Its entries add model folders, and its `custom_nodes:` key adds folders that
    # ComfyUI imports as custom nodes: code and models outside the verified tree.
    LoadedConfig(
        "comfyui",
        "extra_model_paths.yaml",
        "ComfyUI's main.py reads it at every start",
        "it adds model folders and custom-node folders to import, outside the verified tree",
    ),
    # ComfyUI's nodes.py (load_custom_node, through comfy_config/config_parser.py) reads every
    # custom node's pyproject.toml when it imports the node: `[tool.comfy] web` names a folder,
    # joined unchecked (absolute or ../..), whose scripts ComfyUI serves to the front end.
    LoadedConfig(
        "custom_node",
        "pyproject.toml",
        "ComfyUI reads it when it imports the node",
        "its [tool.comfy] web names the folder of scripts ComfyUI serves for the node",
    ),
    # ComfyUI-Easy-Use's __init__.py reads config.yaml (yaml FullLoader) at import: WEB_VERSION
    # picks the web folder it serves (web_version/<value>, joined unchecked); its API modules
    # keep keys there. Ignored by its .gitignore; Frame-Interpolation tracks its own (ckpts_path).
    LoadedConfig(
        "custom_node",
        "config.yaml",
        "ComfyUI-Easy-Use reads it at import (Frame-Interpolation tracks its own)",
        "its WEB_VERSION names the folder of scripts served for the node",
    ),
    # rgthree-comfy's py/config.py reads rgthree_config.json at import: `unreleased.*` switches
    # add node classes (dynamic context) and server pages (models page) that its commit ships
    # switched off. Ignored by its .gitignore; nothing writes it at start.
    LoadedConfig(
        "custom_node",
        "rgthree_config.json",
        "rgthree-comfy reads it at import",
        "its unreleased.* switches add node classes and server pages",
    ),
    # ComfyUI-Custom-Scripts' pysssss.py reads pysssss.json at import: its `name` is joined into
    # ComfyUI's web/extensions/pysssss/<name>, which every start deletes (shutil.rmtree) or
    # links. The node writes it at first start as a copy of pysssss.default.json: that passes.
    LoadedConfig(
        "custom_node",
        "pysssss.json",
        "ComfyUI-Custom-Scripts reads it at import",
        "its name picks a folder that every start deletes or links",
        default="pysssss.default.json",
    ),
    # RES4LYF's res4lyf.py reads res4lyf.config.json at import: `updatedTimestepScaling`
    # replaces ComfyUI's comfy.model_sampling.time_snr_shift. It writes the file at first start
    # from web/js/res4lyf.default.json (json.dump, indent 4): the same values pass.
    LoadedConfig(
        "custom_node",
        "res4lyf.config.json",
        "RES4LYF reads it at import",
        "its switches replace ComfyUI's sampling code",
        default="web/js/res4lyf.default.json",
        same="json",
    ),
)


_CONFIG_LIMIT = 1 << 20


def loaded_config(is_comfyui: bool, rel: str) -> LoadedConfig | None:
    """The LOADED_CONFIG rule for `rel` (relative to an entry's folder), if any."""
    where = "comfyui" if is_comfyui else "custom_node"
    return next((c for c in LOADED_CONFIG if c.where == where and c.path == rel), None)


def same_config(found: Path, default: Path, same: str) -> bool:
    """Whether the file `found` says what `default` says: the same bytes, or (`json`) the same
    values as Python's json module reads them (what the node reads them with)."""
    try:
        if found.stat().st_size > _CONFIG_LIMIT:
            return False  # no node's default is anywhere near this
        if same == "json":
            return json.loads(found.read_bytes()) == json.loads(default.read_bytes())
        return found.read_bytes() == default.read_bytes()
    except (OSError, ValueError):
        return False


@dataclass(frozen=True, order=True)
class Finding:
    path: str  # relative to the ComfyUI root
    kind: str  # "unexpected", "missing", "changed", "conflict", "unsafe", "not verifiable"
    detail: str

    def line(self) -> str:
        return f"{shown(self.path)}: {self.kind}: {self.detail}"


@dataclass
class EntryReport:
    entry: NodeEntry
    findings: list[Finding] = field(default_factory=list)
    files: int = 0  # tracked files that match
    accepted: dict[str, int] = field(default_factory=dict)  # what else was found, by reason

    def accept(self, reason: str) -> None:
        self.accepted[reason] = self.accepted.get(reason, 0) + 1


def entry_root(entry: NodeEntry) -> str:
    """Where an entry lives, relative to the ComfyUI root ("" for ComfyUI itself)."""
    return "" if entry.kind == "comfyui" else f"custom_nodes/{entry.name}"


def is_code(name: str, mode: int) -> bool:
    lowered = name.lower()
    return bool(mode & 0o111) or any(lowered.endswith(s) for s in CODE_SUFFIXES)


def _join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


def _parent_and(rel: str, rename) -> tuple[str, str]:
    parent, _, name = rel.rpartition("/")
    return parent, rename(name)


def _kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    return "a special file"


def _pyc_source(rel: str, tracked: CommitFiles) -> tuple[str, int] | None:
    """For `<dir>/__pycache__/<stem>.<tag>[.opt-N].pyc` of this interpreter: the tracked
    `<dir>/<stem>.py` it belongs to and its optimisation level; None otherwise."""
    parent, _, name = rel.rpartition("/")
    folder, _, cache = parent.rpartition("/")
    tag = sys.implementation.cache_tag
    if cache != "__pycache__" or not name.endswith(".pyc") or tag is None:
        return None
    parts = name[: -len(".pyc")].split(".")
    level = 0
    if parts and parts[-1] in ("opt-1", "opt-2"):
        level = int(parts.pop()[-1])
    if len(parts) < 2 or parts[-1] != tag:
        return None
    source = _join(folder, ".".join(parts[:-1]) + ".py")
    found = tracked.files.get(source)
    return (source, level) if found and found.mode != "120000" else None


def build_pyc(pyc: Path, source: Path, level: int) -> bool:
    """Whether `pyc` is byte-code of `source` for this interpreter: its magic number, and a
    code object equal to compiling the source (compileall and import do exactly that)."""
    try:
        data = pyc.read_bytes()
        if data[:4] != importlib.util.MAGIC_NUMBER or len(data) < 16:
            return False
        code = marshal.loads(data[16:])
        expected = compile(
            source.read_bytes(), str(source), "exec", dont_inherit=True, optimize=level
        )
    except (OSError, ValueError, EOFError, TypeError, SyntaxError):
        return False
    return code == expected


class _Scan:
    """One entry's folder compared with its commit."""

    def __init__(
        self,
        report: EntryReport,
        folder: Path,
        tracked: CommitFiles,
        dests: set[str],
        skip: set[str],
    ):
        self.report = report
        self.folder = folder
        self.tracked = tracked
        self.root = entry_root(report.entry)
        self.dests = dests  # relative to the entry's folder
        # `models fetch` takes a per-file lock `.<name>.lock` beside each dest (empty, not code)
        self.dest_locks = {_join(*_parent_and(d, lambda n: f".{n}.lock")) for d in dests}
        self.skip = skip  # folders that are other entries (locked nodes under ComfyUI)
        self.is_comfyui = report.entry.kind == "comfyui"
        self.seen: set[str] = set()
        self.covered: set[str] = set()  # tracked folders replaced by something else
        self.pycs: list[tuple[str, str]] = []  # byte-code beside a tracked .py
        self.configs: list[tuple[str, LoadedConfig]] = []  # copies of a default, checked last
        self.pending: list[str] = []  # untracked non-code files: data if .gitignore says so
        self.untracked: dict[str, bool | None] = {}  # file -> accepted (None: pending)
        self.untracked_dirs: list[str] = []
        self.verified_sources: set[str] = set()
        self.skipped: set[str] = set()  # locked node folders found (checked as entries)

    def full(self, rel: str) -> str:
        return _join(self.root, rel)

    def add(self, rel: str, kind: str, detail: str) -> None:
        self.report.findings.append(Finding(self.full(rel), kind, detail))

    def run(self) -> None:
        self.walk("")
        for rel in sorted(set(self.tracked.files) - self.seen):
            if not any(rel == c or rel.startswith(c + "/") for c in self.covered):
                self.add(rel, "missing", f"a file of commit {self.tracked.rev[:12]}")
        self.check_pycs()
        self.check_configs()
        self.resolve_pending()
        self.collapse()

    def walk(self, base: str) -> None:
        try:
            children = sorted(os.scandir(os.path.join(self.folder, base)), key=lambda e: e.name)
        except OSError as exc:
            self.add(base, "changed", f"cannot be read ({exc.strerror})")
            return
        for child in children:
            rel = _join(base, child.name)
            if child.name == ".git" and (base == "" or base in self.tracked.submodules):
                continue
            if rel in self.skip:
                self.skipped.add(rel)
                continue
            mode = child.stat(follow_symlinks=False).st_mode
            if rel in self.tracked.files:
                self.seen.add(rel)
                self.check_file(rel, child.path, mode)
            elif rel in self.tracked.folders:
                if stat.S_ISDIR(mode):
                    self.walk(rel)
                else:
                    self.covered.add(rel)
                    self.add(rel, "changed", f"a folder of the commit, found {_kind_of(mode)}")
            elif stat.S_ISDIR(mode):
                self.untracked_dirs.append(rel)
                self.walk(rel)
            else:
                self.classify(rel, child.path, mode)

    def check_file(self, rel: str, path: str, mode: int) -> None:
        want = self.tracked.files[rel]
        if want.mode == "120000":
            if not stat.S_ISLNK(mode):
                self.add(rel, "changed", f"a symlink of the commit, found {_kind_of(mode)}")
            elif git_blob_id(os.fsencode(os.readlink(path))) != want.blob:
                self.add(rel, "changed", "the symlink points elsewhere than in the commit")
            elif why := git.link_escape(self.folder, rel, comfyui=self.is_comfyui):
                where = self.root or "ComfyUI's folder"
                self.add(
                    rel,
                    "unsafe",
                    f"a symlink of commit {self.tracked.rev[:12]} to {os.readlink(path)}: {why}; "
                    f"a link must stay inside {where} (pin a commit without it)",
                )
            else:
                self.report.files += 1
            return
        if not stat.S_ISREG(mode):
            self.covered.add(rel)
            self.add(rel, "changed", f"a file of the commit, found {_kind_of(mode)}")
            return
        executable = "100755" if mode & stat.S_IXUSR else "100644"
        with open(path, "rb") as handle:
            blob = git_blob_id(handle.read())
        if blob != want.blob:
            self.add(rel, "changed", f"its bytes differ from commit {self.tracked.rev[:12]}")
        elif executable != want.mode:
            self.add(rel, "changed", f"mode {executable}, the commit has {want.mode}")
        else:
            self.report.files += 1
            self.verified_sources.add(rel)

    def classify(self, rel: str, path: str, mode: int) -> None:
        name = rel.rsplit("/", 1)[-1]
        top = rel.split("/", 1)[0]
        if config := loaded_config(self.is_comfyui, rel):
            if config.default is not None and stat.S_ISREG(mode):
                self.untracked[rel] = None
                self.configs.append((rel, config))  # once the walk has verified the default
                return
            self.untracked[rel] = False
            self.add(rel, "unexpected", config_detail(config, _kind_of(mode)))
            return
        if rel in self.dests and stat.S_ISREG(mode):
            self.untracked[rel] = True
            self.report.accept("model files")
            return
        if rel in self.dest_locks and stat.S_ISREG(mode):
            self.untracked[rel] = True
            self.report.accept("bake records")
            return
        if stat.S_ISLNK(mode):
            self.untracked[rel] = False
            self.add(rel, "unexpected", "a symlink the commit does not hold")
            return
        if not stat.S_ISREG(mode):
            self.untracked[rel] = False
            self.add(rel, "unexpected", f"{_kind_of(mode)} the commit does not hold")
            return
        if _pyc_source(rel, self.tracked) is not None:
            self.untracked[rel] = None
            self.pycs.append((rel, path))  # checked once the walk has verified the sources
            return
        if self.is_comfyui and top in STRICT:
            self.untracked[rel] = False
            what = "locked custom nodes" if top == "custom_nodes" else "models-lock files"
            self.add(rel, "unexpected", f"{top}/ holds only ComfyUI's own files and the {what}")
            return
        if is_code(name, mode):
            self.untracked[rel] = False
            self.add(rel, "unexpected", "code the commit does not hold")
            return
        if name.lower().endswith(tuple(PICKLE_SUFFIXES)):
            self.untracked[rel] = False
            self.add(
                rel,
                "unexpected",
                "pickled data the commit does not hold (loading it runs code); a model a node "
                "keeps in its folder belongs in models.lock.yaml",
            )
            return
        if self.is_comfyui and top in BAKE_DATA:
            self.untracked[rel] = True
            self.report.accept("bake records")
            return
        self.untracked[rel] = None
        self.pending.append(rel)

    def check_pycs(self) -> None:
        for rel, path in self.pycs:
            source, level = _pyc_source(rel, self.tracked) or ("", 0)
            if source in self.verified_sources and build_pyc(
                Path(path), self.folder / source, level
            ):
                self.untracked[rel] = True
                self.report.accept("compiled files")
                continue
            self.untracked[rel] = False
            name = source.rsplit("/", 1)[-1]
            self.add(
                rel, "unexpected", f"byte-code that is not the compile of the committed {name}"
            )

    def check_configs(self) -> None:
        for rel, config in self.configs:
            assert config.default is not None
            if config.default in self.verified_sources and same_config(
                self.folder / rel, self.folder / config.default, config.same
            ):
                self.untracked[rel] = True
                self.report.accept("configuration files equal to their commit's default")
                continue
            self.untracked[rel] = False
            self.add(rel, "unexpected", config_detail(config, "a file"))

    def resolve_pending(self) -> None:
        ignored = ignored_paths(self.tracked, self.pending) if self.pending else set()
        for rel in self.pending:
            if rel in ignored:
                self.untracked[rel] = True
                self.report.accept("generated data files")
            else:
                self.untracked[rel] = False
                self.add(
                    rel,
                    "unexpected",
                    "a file the commit does not hold (and its .gitignore does not ignore)",
                )

    def collapse(self) -> None:
        """An untracked folder holding only unexpected files is one finding, not one each; an
        empty one is accepted, except a node-like folder in ComfyUI's custom_nodes/."""
        findings = {f.path: f for f in self.report.findings}
        gone: set[str] = set()
        for folder in sorted(self.untracked_dirs, key=lambda d: d.count("/")):
            if any(folder.startswith(g + "/") for g in gone):
                continue
            inside = [v for f, v in self.untracked.items() if f.startswith(folder + "/")]
            if any(s.startswith(folder + "/") for s in self.skipped):
                continue  # custom_nodes/ itself, when ComfyUI's commit tracks nothing there
            empty = not inside  # no files at any depth: only folders, if anything
            in_nodes = self.is_comfyui and folder.startswith("custom_nodes/")
            if (inside and not any(inside)) or (empty and in_nodes):
                gone.add(folder)
                prefix = self.full(folder) + "/"
                held = [findings.pop(p) for p in [p for p in findings if p.startswith(prefix)]]
                detail = "a folder the commit does not hold"
                if in_nodes and folder.count("/") == 1:
                    detail = "a folder custom_nodes/ may not hold: not a locked custom node"
                if len(held) == 1:
                    detail += f", with {shown(held[0].path[len(prefix) :])}: {held[0].detail}"
                elif held:
                    detail += f", with {len(held)} files"
                findings[self.full(folder)] = Finding(self.full(folder), "unexpected", detail)
        self.report.findings = sorted(findings.values())


def config_detail(config: LoadedConfig, found: str) -> str:
    """Why a configuration file found at `config.path` is refused."""
    allowed = "only the commit's own file may lie here"
    if config.default is not None:
        allowed = (
            f"only the commit's file, or the node's own copy of {config.default} "
            f"({'the same values' if config.same == 'json' else 'the same bytes'}), may lie here"
        )
    return (
        f"configuration {config.reader} ({config.effect}), found {found} the commit does not "
        f"hold; {allowed}, whatever .gitignore says"
    )


def ignored_paths(tracked: CommitFiles, paths: Iterable[str]) -> set[str]:
    """Which of `paths` the commit's own .gitignore files ignore, asked of git itself in a
    scratch repository holding only those files (so no .gitignore planted in the tree, no
    .git/info/exclude and no user-wide excludes file counts)."""
    paths = list(paths)
    with tempfile.TemporaryDirectory(prefix="bake-ignore-") as scratch:
        root = Path(scratch)
        env = {**git.git_env(), "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
        subprocess.run(["git", "init", "--quiet", scratch], env=env, check=True)
        for rel, text in tracked.gitignores.items():
            target = root.joinpath(*rel.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(text)
        for rel in paths:
            root.joinpath(*rel.split("/")).parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(os.fsencode(p) + b"\0" for p in paths)
        proc = subprocess.run(
            ["git", "check-ignore", "--no-index", "-z", "--stdin"],
            cwd=root,
            env=env,
            input=data,
            capture_output=True,
            check=False,
        )
    if proc.returncode not in (0, 1):
        raise GitError(f"git check-ignore failed: {proc.stderr.decode(errors='replace')}")
    return {os.fsdecode(p) for p in proc.stdout.split(b"\0") if p}


def verify_entry(
    entry: NodeEntry, comfyui_dir: Path, *, dests: set[str], locked_nodes: Iterable[str]
) -> EntryReport:
    """Compare one entry's folder with its locked commit (see the module docstring)."""
    assert entry.locked is not None
    report = EntryReport(entry)
    root = entry_root(entry)
    folder = comfyui_dir / root if root else comfyui_dir
    if folder.is_symlink() or not folder.is_dir():
        found = (
            "a symlink" if folder.is_symlink() else "nothing" if not folder.exists() else "a file"
        )
        report.findings.append(
            Finding(root or ".", "missing", f"the folder of {entry.qualified}, found {found}")
        )
        return report
    prefix = root + "/" if root else ""
    for item in git.inspect_metadata(folder):
        report.findings.append(
            Finding(
                prefix + item.path,
                "unsafe",
                f"git metadata git did not write ({item.why}): git would act on it in this "
                "checkout; python -m bake nodes install replaces it",
            )
        )
    tracked = commit_files(folder, entry.locked.rev, entry=entry.qualified)
    local = {d[len(prefix) :] for d in dests if d.startswith(prefix)}
    for dest in sorted(local):
        if tracked.tracks(dest):
            report.findings.append(
                Finding(
                    prefix + dest,
                    "conflict",
                    f"a models-lock dest on a path that commit {entry.locked.rev[:12]} of "
                    f"{entry.qualified} tracks; give the model another dest in models.lock.yaml",
                )
            )
    skip = {f"custom_nodes/{name}" for name in locked_nodes} if entry.kind == "comfyui" else set()
    scan = _Scan(report, folder, tracked, local, skip)
    scan.run()
    if not report.findings and entry.locked.tree is not None:
        try:
            found = tree_hash_paths(folder, tracked.files)
        except UnsafeNameError as exc:
            raise VerificationError(f"{entry.qualified}: {exc}") from None
        if found != entry.locked.tree:
            report.findings.append(
                Finding(
                    root or ".",
                    "changed",
                    f"its tree is {found}, the lock says {entry.locked.tree}; run "
                    f"scripts/update-locks.py --check --nodes {entry.name}",
                )
            )
    return report


def model_dests(models_lock: Path) -> set[str]:
    """Every models-lock destination, relative to the ComfyUI root."""
    return {m.dest for m in load_models_lock(models_lock).entries("all")}


def verify_nodes(lock: NodesLock, comfyui_dir: Path, *, dests: set[str]) -> list[EntryReport]:
    """Every entry of `lock` (source builds aside) checked under `comfyui_dir`."""
    entries = [e for e in lock.entries() if e.kind != "source_build"]
    reports = []
    for entry in entries:
        if entry.locked is None:
            raise VerificationError(
                f"{entry.qualified}: not locked; nothing to verify it against: run "
                "scripts/update-locks.py --nodes"
            )
        try:
            reports.append(
                verify_entry(entry, comfyui_dir, dests=dests, locked_nodes=lock.custom_nodes)
            )
        except GitError as exc:
            report = EntryReport(entry)
            root = entry_root(entry) or "."
            report.findings += [Finding(root, "not verifiable", line) for line in exc.lines()]
            reports.append(report)
    return reports


def cli(args: argparse.Namespace) -> int:
    lock = load_nodes_lock(default_lock(NODES_LOCK, args.lock))
    dests = model_dests(default_lock(MODELS_LOCK, args.models_lock))
    comfyui_dir = Path(args.comfyui_dir)
    reports = verify_nodes(lock, comfyui_dir, dests=dests)
    problems = [f for r in reports for f in r.findings]
    if problems:
        lines = [f.line() for f in problems]
        lines.append(
            f"{len(problems)} problem(s) in {comfyui_dir}; python -m bake nodes install puts "
            "every entry back to its commit (it removes what is unexpected)"
        )
        raise VerificationError("\n".join(lines))
    files = sum(r.files for r in reports)
    accepted: dict[str, int] = {}
    for report in reports:
        for reason, count in report.accepted.items():
            accepted[reason] = accepted.get(reason, 0) + count
    extra = ", ".join(f"{n} {reason}" for reason, n in sorted(accepted.items()))
    print(
        f"nodes verify: {len(reports)} entries in {comfyui_dir} hold exactly their commits "
        f"({files} files{'; also ' + extra if extra else ''})",
        flush=True,
    )
    return 0
