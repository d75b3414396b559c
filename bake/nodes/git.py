"""Running git for pins: resolve a ref, fetch exactly one commit, check it out, look at it.

Git runs as the user configured it (global and system config are read), so
`url.<base>.insteadOf` mirrors, credential helpers and proxies work for the build exactly as for
`git clone`. Overridden are only: the terminal prompt (off), replace refs (ignored), hooks and
fsmonitor (never run), and `core.autocrlf=false` for checkouts, because a machine's line-ending
setting would otherwise change the checked-out bytes and so the tree hash.

What a checkout's own `.git` says is never run. Its config can name programs that git starts
(a smudge filter, `diff.external`, `core.fsmonitor`, `core.sshCommand`, `credential.helper`,
`submodule.<name>.update = !cmd`, an `include.path` that sets any of them...), and overriding
each on the command line cannot keep up with git. So, before any git command runs in an
existing checkout, `neutralise` compares its git metadata with what git itself writes there
(`inspect_metadata`, read without running git in it): config keys outside a short allow-list
are dropped by rewriting the file, and hooks, `info/attributes`, `commondir`,
`config.worktree` and a `.git` that is a link elsewhere are removed, in the entry's git folder
and in every submodule's. Its objects are read through a scratch git folder of our own
(`scratch_gitdir`), never with its config.

Every failure is a `GitError` naming the entry (its address in nodes.lock.yaml) and the remote,
with credentials embedded in URLs (`https://user:token@host/...`) redacted, in our words and in
git's output alike.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bake.errors import GitError
from bake.hashing import UnsafeNameError, tree_hash_paths

FULL_SHA = re.compile(r"[0-9a-f]{40}")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_TIMEOUT_ENV = "BAKE_GIT_TIMEOUT"
_REPO_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
)
# What git says when the remote has no such commit (as opposed to a transfer that broke).
_GONE = (
    "not our ref",
    "unadvertised object",
    "couldn't find remote ref",
    "no such remote ref",
    "not a valid object",
)
_DEFAULT_TIMEOUT = 600.0


def redact(text: str) -> str:
    """`text` with the user-info part of every URL in it (`user:token@`) replaced by `***@`."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)


def strip_credentials(url: str) -> str:
    """`url` without user-info, for what is stored on disk (an installed checkout's origin)."""
    return _USERINFO.sub(lambda m: m.group("scheme"), url)


def _timeout() -> float:
    raw = os.environ.get(_TIMEOUT_ENV)
    try:
        return float(raw) if raw else _DEFAULT_TIMEOUT
    except ValueError:
        return _DEFAULT_TIMEOUT


def git_env() -> dict[str, str]:
    """The environment every git command runs with."""
    env = dict(os.environ)
    # Each command names its repository by its working directory: a GIT_DIR (or index or
    # object store) inherited from a calling hook or shell would point it at another one.
    for name in _REPO_VARIABLES:
        env.pop(name, None)
    # A build has no one to type a password: fail instead of waiting at a prompt.
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("GCM_INTERACTIVE", "never")
    # Messages are matched below and quoted to users: keep them in one language.
    env["LC_ALL"] = "C"
    # A replace ref (refs/replace/) in a checkout's .git would make a pinned commit show
    # another commit's files: pins mean the objects themselves.
    env["GIT_NO_REPLACE_OBJECTS"] = "1"
    # A checkout's .git may have been tampered with along with its files: never run a hook
    # (post-checkout runs on every repair) or an fsmonitor command it names. Added after any
    # command-line config the caller already set in the environment.
    count = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
    for key, value in (("core.hooksPath", os.devnull), ("core.fsmonitor", "false")):
        env[f"GIT_CONFIG_KEY_{count}"] = key
        env[f"GIT_CONFIG_VALUE_{count}"] = value
        count += 1
    env["GIT_CONFIG_COUNT"] = str(count)
    return env


def _stderr_summary(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    picked = (fatal or lines)[-2:]
    return redact("; ".join(picked)) or "no output"


def run(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    entry: str,
    url: str | None = None,
    what: str,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `git args...`; on failure (or timeout) raise GitError naming entry, remote, action."""
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=git_env(),
            capture_output=True,
            text=True,
            # a file name need not be UTF-8: keep its bytes (surrogates) instead of crashing
            errors="surrogateescape",
            timeout=_timeout(),
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        where = f" ({redact(url)})" if url else ""
        raise GitError(
            f"{entry}: git {what}{where} did not finish within {_timeout():.0f} s; "
            f"check the network or raise {_TIMEOUT_ENV}"
        ) from None
    except FileNotFoundError:
        raise GitError(f"{entry}: git is not installed (needed to {what})") from None
    if check and proc.returncode != 0:
        where = f" from {redact(url)}" if url else ""
        raise GitError(f"{entry}: git {what}{where} failed: {_stderr_summary(proc.stderr)}")
    return proc


def _unreachable(entry: str, url: str, stderr: str) -> GitError:
    return GitError(
        f"{entry}: cannot reach the remote {redact(url)}: {_stderr_summary(stderr)}. Check "
        "original.url, the network and credentials, and any url.<base>.insteadOf mirror in "
        "your git config"
    )


def ls_remote(url: str, *patterns: str, entry: str) -> dict[str, str]:
    """The refs the remote advertises (peeled tags as `<name>^{}`) -> sha; with `patterns`,
    only refs ending in one of them (the server sends only those: GitHub's big repositories
    advertise thousands of pull-request refs otherwise)."""
    proc = run(
        ["ls-remote", "--", url, *patterns], entry=entry, url=url, what="ls-remote", check=False
    )
    if proc.returncode != 0:
        raise _unreachable(entry, url, proc.stderr)
    refs: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        sha, _, name = line.partition("\t")
        if name:
            refs[name] = sha
    return refs


def pick_ref(refs: dict[str, str], ref: str) -> str | None:
    """The commit `ref` names among advertised `refs`, in git's own order of precedence
    (exact, tag, branch), tags peeled to their commit; None when nothing matches."""
    for name in (ref, f"refs/tags/{ref}", f"refs/heads/{ref}"):
        if f"{name}^{{}}" in refs:
            return refs[f"{name}^{{}}"]
        if name in refs:
            return refs[name]
    return None


@dataclass(frozen=True)
class RefTarget:
    """What `original.ref` names on the remote now."""

    kind: str  # "commit" (a full sha), "tag", or "branch" (a branch, HEAD or another ref)
    name: str  # the full ref name ("refs/heads/main", "refs/tags/v1", "HEAD"), or the sha
    sha: str  # the commit (tags peeled)


def remote_ref(url: str, ref: str, *, entry: str) -> RefTarget:
    """What `ref` (branch, tag, HEAD, a full ref name or a full commit) names on `url`. A name
    that is both a branch and a tag is refused: git would silently take the tag."""
    if FULL_SHA.fullmatch(ref):
        return RefTarget("commit", ref, ref)
    refs = ls_remote(url, ref, f"{ref}^{{}}", entry=entry)  # the second: a tag's commit
    candidates = [ref] if ref.startswith("refs/") or ref == "HEAD" else []
    candidates += [f"refs/tags/{ref}", f"refs/heads/{ref}"]
    found = [
        RefTarget(
            "tag" if name.startswith("refs/tags/") else "branch",
            name,
            refs.get(f"{name}^{{}}", refs[name]),
        )
        for name in candidates
        if name in refs
    ]
    tags = [t for t in found if t.kind == "tag"]
    branches = [t for t in found if t.name == f"refs/heads/{ref}"]
    if tags and branches:
        raise GitError(
            f"{entry}: ref {ref!r} is both a branch and a tag on {redact(url)} (the branch is at "
            f"{branches[0].sha[:12]}, the tag at {tags[0].sha[:12]}); say which in "
            f"nodes.lock.yaml: original.ref refs/heads/{ref} or refs/tags/{ref}"
        )
    if not found:
        hint = ""
        if re.fullmatch(r"[0-9a-fA-F]{7,39}", ref):
            hint = " (an abbreviated commit cannot be resolved remotely: write all 40 characters)"
        raise GitError(
            f"{entry}: ref {ref!r} does not exist on {redact(url)}: no branch or tag of that "
            f"name{hint}. Fix original.ref in nodes.lock.yaml (a branch, a tag or a full commit)"
        )
    return found[0]


def resolve_ref(url: str, ref: str, *, entry: str) -> str:
    """The full commit that `ref` (branch, tag, HEAD or a full commit) names on `url`.
    A full commit is returned as given: whether the remote has it shows at fetch."""
    return remote_ref(url, ref, entry=entry).sha


def is_ancestor(history: Path, url: str, rev: str, target: RefTarget, *, entry: str) -> bool:
    """Whether commit `rev` is `target`'s head or one of its ancestors on `url`. The ref's
    whole history is fetched, commits only where the server can filter, into `history` (a bare
    repository of its own, never shallow, so no shallow boundary can hide an ancestor)."""
    if not (history / "HEAD").exists():
        history.mkdir(parents=True, exist_ok=True)
        run(["init", "--quiet", "--bare", str(history)], entry=entry, what="init")
    run(
        [
            "fetch",
            "--quiet",
            "--no-tags",
            "--filter=tree:0",
            "--",
            url,
            f"+{target.sha}:refs/bake/tip",
        ],
        cwd=history,
        entry=entry,
        url=url,
        what=f"fetch of the history of {target.name}",
    )
    proc = run(
        ["merge-base", "--is-ancestor", rev, "refs/bake/tip"],
        cwd=history,
        entry=entry,
        what="merge-base",
        check=False,
    )
    # exit 1: not an ancestor; 128: the commit is not in the ref's history at all
    return proc.returncode == 0


def init(repo: Path, url: str, *, entry: str) -> None:
    """An empty repository at `repo` whose origin is `url` (credentials stripped), so relative
    submodule URLs resolve against it. Existing repositories keep their objects."""
    repo.mkdir(parents=True, exist_ok=True)
    if not (repo / ".git").exists():
        run(["init", "--quiet", str(repo)], entry=entry, what="init")
    stored = strip_credentials(url)
    current = run(
        ["config", "--get", "remote.origin.url"], cwd=repo, entry=entry, what="config", check=False
    ).stdout.strip()
    if not current:
        run(["remote", "add", "origin", stored], cwd=repo, entry=entry, what="remote add")
    elif current != stored:
        run(["remote", "set-url", "origin", stored], cwd=repo, entry=entry, what="remote set-url")


def has_commit(repo: Path, rev: str) -> bool:
    proc = subprocess.run(
        ["git", "cat-file", "-e", f"{rev}^{{commit}}"],
        cwd=repo,
        env=git_env(),
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def fetch_commit(repo: Path, url: str, rev: str, *, entry: str) -> None:
    """Fetch exactly `rev` (depth 1, no tags) from `url` into `repo`. Tells a remote that
    cannot be reached apart from one that no longer has the commit."""
    proc = run(
        ["fetch", "--quiet", "--depth", "1", "--no-tags", "--", url, rev],
        cwd=repo,
        entry=entry,
        url=url,
        what="fetch",
        check=False,
    )
    if proc.returncode == 0 and has_commit(repo, rev):
        return
    ls_remote(url, "HEAD", entry=entry)  # raises the "cannot reach" error if that is why
    name = (
        entry.split(".", 1)[1] if entry.startswith(("custom_nodes.", "source_builds.")) else entry
    )
    said = _stderr_summary(proc.stderr)
    if proc.returncode != 0 and not any(m in proc.stderr.lower() for m in _GONE):
        # The remote answered but the transfer failed (a broken pack, a dropped connection,
        # a server error): that says nothing about whether the commit is still there.
        raise GitError(
            f"{entry}: git fetch of {rev} from {redact(url)} failed: {said}. The remote is "
            "reachable and the commit may well be there: retry, and if it persists check the "
            "remote or the url.<base>.insteadOf mirror that serves it"
        )
    raise GitError(
        f"{entry}: the locked commit {rev} is not on {redact(url)} any more (force-pushed away "
        f"or deleted; git said: {said}). Run scripts/update-locks.py "
        f"--nodes {name} to pin a commit the remote has, or point a url.<base>.insteadOf mirror "
        "that still has it at this URL"
    )


def checkout(repo: Path, rev: str, *, entry: str) -> None:
    """Detached, forced checkout of `rev` (tracked files only: untracked files stay), then every
    submodule, recursively, at the commit the superproject records (shallow). Each submodule's
    `.git` must be git's own link into the superproject's `.git/modules/`: anything else found
    there (a link to another git folder, a `.git` folder of its own) is removed first, so git
    never runs with a git folder that was planted there."""
    run(
        [
            "-c",
            "core.autocrlf=false",
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "--quiet",
            "--force",
            "--detach",
            rev,
        ],
        cwd=repo,
        entry=entry,
        what="checkout",
    )
    _update_submodules(repo, repo / ".git", entry=entry)


def _gitlinks(repo: Path, *, entry: str) -> list[str]:
    """The submodule paths the index of `repo` records (mode 160000)."""
    out = run(["ls-files", "--stage", "-z"], cwd=repo, entry=entry, what="ls-files").stdout
    return [
        line.split("\t", 1)[1]
        for line in out.split("\0")
        if line.startswith("160000 ") and "\t" in line
    ]


def _update_submodules(repo: Path, gitdir: Path, *, entry: str) -> None:
    """`git submodule update --init` one level at a time, each submodule's `.git` checked before
    git runs in it (see `submodule_gitdir`)."""
    if not (repo / ".gitmodules").is_file():
        return
    paths = _gitlinks(repo, entry=entry)
    for path in paths:
        sub = repo.joinpath(*path.split("/"))
        if sub.is_symlink() or (sub.exists() and not sub.is_dir()):
            _remove_path(sub)  # git would run in whatever folder the link names
            continue
        dot = sub / ".git"
        if (dot.is_symlink() or dot.exists()) and submodule_gitdir(sub, gitdir)[0] is None:
            _remove_path(dot)  # git reconnects the submodule to .git/modules/<name>
    run(
        ["-c", "core.autocrlf=false", "submodule", "update", "--init", "--force", "--depth", "1"],
        cwd=repo,
        entry=entry,
        what="submodule update",
    )
    for path in paths:
        sub = repo.joinpath(*path.split("/"))
        found, _why = submodule_gitdir(sub, gitdir)
        if found is not None:
            _update_submodules(sub, found, entry=entry)


def fetch_checkout(repo: Path, url: str, rev: str, *, entry: str) -> None:
    """`repo` (new or existing) holding exactly `rev` from `url`, checked out."""
    init(repo, url, entry=entry)
    if not has_commit(repo, rev):
        fetch_commit(repo, url, rev, entry=entry)
    checkout(repo, rev, entry=entry)


def head(repo: Path) -> str | None:
    """The commit checked out at `repo`, or None when `repo` is not a checkout of its own."""
    if not (repo / ".git").exists():
        return None
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
        cwd=repo,
        env=git_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def commit_date(repo: Path, rev: str, *, entry: str) -> str:
    """The committer date of `rev`, ISO 8601 with the committer's offset."""
    return run(
        ["show", "-s", "--format=%cI", rev], cwd=repo, entry=entry, what="show"
    ).stdout.strip()


def read_file_at(repo: Path, rev: str, path: str, *, entry: str) -> bytes | None:
    """The bytes of `path` in commit `rev`, or None when the commit has no such file. Only a
    regular file of the commit counts: a symlink (whose "content" is where it points, such as
    ../../../../etc/passwd), a folder or a submodule there is refused."""
    listed = run(
        ["ls-tree", "-z", rev, "--", path], cwd=repo, entry=entry, what="ls-tree"
    ).stdout.split("\0")[0]
    if not listed:
        return None
    mode = listed.split(" ", 1)[0]
    if mode not in ("100644", "100755"):
        what = {"120000": "a symlink", "160000": "a submodule", "040000": "a folder"}.get(
            mode, f"an entry of mode {mode}"
        )
        raise GitError(
            f"{entry}: {path} at {rev[:12]} is {what}, not a regular file of the commit; "
            "a requirements file must be one (fix requirements_file in nodes.lock.yaml, or "
            "ask upstream)"
        )
    proc = subprocess.run(
        ["git", "cat-file", "blob", f"{rev}:{path}"],
        cwd=repo,
        env=git_env(),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise GitError(f"{entry}: git cat-file of {path} at {rev[:12]} failed")
    return proc.stdout


def tracked_files(repo: Path, *, entry: str) -> list[str]:
    """Every file git tracks in the checkout, submodules' files included."""
    out = run(
        ["ls-files", "-z", "--recurse-submodules"], cwd=repo, entry=entry, what="ls-files"
    ).stdout
    return [p for p in out.split("\0") if p]


def worktree_tree_hash(repo: Path, *, entry: str) -> str:
    """The tree hash of what is checked out at `repo`, over git's tracked files only (content
    read from disk, not from git's index), so untracked data beside them does not count."""
    try:
        return tree_hash_paths(repo, tracked_files(repo, entry=entry))
    except UnsafeNameError as exc:
        raise GitError(f"{entry}: {exc}; such a name cannot be pinned by a tree hash") from None


def local_diff(repo: Path, *, entry: str) -> str:
    """The local edits to tracked files as a binary patch (what a repair is about to undo), in
    git's own format: no external diff program, no textconv."""
    return run(
        ["diff", "--binary", "--no-ext-diff", "--no-textconv", "HEAD"],
        cwd=repo,
        entry=entry,
        what="diff",
        check=False,
    ).stdout


def reset_index(repo: Path, rev: str, *, entry: str) -> None:
    """Make the index of `repo` hold exactly the tree of `rev` (no stat data, no flags): an
    index kept in the checkout may say an edited file is clean (assume-unchanged), or that a
    file is not checked out (skip-worktree), and a repair must not believe it."""
    run(["read-tree", rev], cwd=repo, entry=entry, what="read-tree")


# --- A checkout's own git metadata -----------------------------------------------------------

# Config keys git itself writes into an installed checkout (`git init`, `remote add`, `submodule
# update --init`, the clone of a submodule): nothing among them makes git run a program or
# work elsewhere. Any other key was put there by someone else and is dropped.
_CORE_KEYS = frozenset(
    [
        "repositoryformatversion",
        "filemode",
        "bare",
        "logallrefupdates",
        "ignorecase",
        "precomposeunicode",
        "symlinks",
    ]
)
# `<helper>::<address>` makes git run git-remote-<helper>; `ext::` runs any command line.
_HELPER_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*::")
_METADATA_FILES = (
    ("info/attributes", "attributes that switch filter and diff programs on"),
    ("commondir", "sends git to another folder's config"),
    ("config.worktree", "config of its own"),
)


@dataclass(frozen=True)
class Tampered:
    """A part of a checkout's git metadata that git would act on and that git did not write."""

    path: str  # relative to the checkout, posix (".git/config", ".git/hooks/post-checkout")
    why: str
    keep: tuple[tuple[str, str], ...] | None = None  # a config: the keys it keeps; None: remove

    def line(self) -> str:
        return f"{self.path} ({self.why})"


@contextmanager
def scratch_gitdir() -> Iterator[Path]:
    """An empty git folder of our own (HEAD, objects/, refs/ and no config), so that git can
    read another folder's objects (GIT_OBJECT_DIRECTORY) without reading that folder's config."""
    with tempfile.TemporaryDirectory(prefix="bake-git-") as scratch:
        root = Path(scratch)
        (root / "objects").mkdir()
        (root / "refs").mkdir()
        (root / "HEAD").write_text("ref: refs/heads/main\n")
        yield root


def _isolated_env(scratch: Path) -> dict[str, str]:
    return {
        **git_env(),
        "GIT_DIR": str(scratch),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }


# The plain form git writes its own config in: `[section]` or `[section "sub"]` headers and
# `<TAB>key = value` lines, no quotes, escapes, comments, blank lines or control characters.
# Within it, what a line means is beyond doubt, so it is read here without starting git;
# anything else is read by git itself.
_PLAIN_SECTION = re.compile(r'\[([A-Za-z][A-Za-z0-9-]*)(?: "([^"\\\x00-\x1f\x7f]*)")?\]')
_PLAIN_LIMIT = 1 << 16  # git's own config of a checkout is a few hundred bytes
_PLAIN_ENTRY = re.compile(r"\t([A-Za-z][A-Za-z0-9-]*) = ([^\"\\;#\x00-\x1f\x7f]*)")


def _plain_config(data: bytes) -> list[tuple[str, str]] | None:
    """The pairs of a config in git's own plain form (keys as `git config --list` prints
    them: section and name lower-cased); None for anything else."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text and not text.endswith("\n"):
        return None
    pairs: list[tuple[str, str]] = []
    section = None
    for line in text.split("\n")[:-1]:
        if match := _PLAIN_SECTION.fullmatch(line):
            name, sub = match.group(1).lower(), match.group(2)
            section = name if sub is None else f"{name}.{sub}"
        elif (match := _PLAIN_ENTRY.fullmatch(line)) and section is not None:
            value = match.group(2)
            if value != value.strip(" "):
                return None  # git drops the spaces around a value: let git say what it reads
            pairs.append((f"{section}.{match.group(1).lower()}", value))
        else:
            return None
    return pairs


def read_config_file(path: Path) -> list[tuple[str, str]] | None:
    """The (key, value) pairs of a git config file as git itself parses it, includes not
    followed; None when git cannot parse it. A file in git's own plain form is read here;
    any other is read by git, in a scratch folder, not in the repository it belongs to."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(_PLAIN_LIMIT + 1)
        plain = _plain_config(data) if len(data) <= _PLAIN_LIMIT else None
    except OSError:
        plain = None
    if plain is not None:
        return plain
    with scratch_gitdir() as scratch:
        proc = subprocess.run(
            ["git", "config", "--file", str(path), "--no-includes", "--list", "-z"],
            cwd=scratch,
            env=_isolated_env(scratch),
            capture_output=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    if proc.returncode != 0:
        return None
    pairs = []
    for item in proc.stdout.split(b"\0"):
        if item:
            key, _, value = item.decode("utf-8", "surrogateescape").partition("\n")
            pairs.append((key, value))
    return pairs


def _inside(path: str, root: Path) -> bool:
    base = os.path.realpath(root)
    found = os.path.realpath(path)
    return found == base or found.startswith(base + os.sep)


def _allowed(key: str, value: str, gitdir: Path, checkout: Path, module: bool) -> bool:
    section, _, rest = key.partition(".")
    sub, _, name = rest.rpartition(".")
    if section == "core" and not sub:
        if name == "worktree" and module:
            # a submodule's git folder names its checkout: inside the entry, not the entry or
            # its .git (anywhere else, a checkout would write files there)
            place = os.path.join(gitdir, value)
            real = os.path.realpath(place)
            return (
                _inside(place, checkout)
                and real != os.path.realpath(checkout)
                and not _inside(place, checkout / ".git")
            )
        return name in _CORE_KEYS
    if section == "remote" and sub == "origin" and name in ("url", "fetch"):
        return name != "url" or not _HELPER_URL.match(value)
    if section == "submodule" and sub and name in ("url", "active"):
        return name != "url" or not _HELPER_URL.match(value)
    return section == "branch" and bool(sub) and name in ("remote", "merge")


def _module_gitdirs(modules: Path) -> Iterator[Path]:
    """Every git folder under a `modules/` folder (a submodule's name may hold slashes)."""
    pending = [modules]
    while pending:
        folder = pending.pop()
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for child in children:
            if not child.is_dir(follow_symlinks=False):
                continue
            if os.path.isfile(os.path.join(child.path, "HEAD")):
                yield Path(child.path)
            else:
                pending.append(Path(child.path))


def _inspect_gitdir(gitdir: Path, rel: str, checkout: Path, module: bool) -> list[Tampered]:
    found: list[Tampered] = []
    config = gitdir / "config"
    if config.is_symlink() or (config.exists() and not config.is_file()):
        found.append(Tampered(f"{rel}/config", "not git's own config file", ()))
    elif config.is_file():
        pairs = read_config_file(config)
        if pairs is None:
            found.append(Tampered(f"{rel}/config", "a config git cannot read", ()))
        else:
            good = [(k, v) for k, v in pairs if _allowed(k, v, gitdir, checkout, module)]
            bad = sorted({k for k, v in pairs if (k, v) not in good})
            if bad:
                found.append(Tampered(f"{rel}/config", f"it set {', '.join(bad)}", tuple(good)))
    hooks = gitdir / "hooks"
    if hooks.is_symlink() or (hooks.exists() and not hooks.is_dir()):
        found.append(Tampered(f"{rel}/hooks", "not a folder of hooks"))
    elif hooks.is_dir():
        for child in sorted(os.listdir(hooks)):
            if not child.endswith(".sample"):
                found.append(Tampered(f"{rel}/hooks/{child}", "a hook, a program git runs"))
    for name, why in _METADATA_FILES:
        if (gitdir / name).is_symlink() or (gitdir / name).exists():
            found.append(Tampered(f"{rel}/{name}", why))
    modules = gitdir / "modules"
    if modules.is_symlink():
        found.append(Tampered(f"{rel}/modules", "a link to submodules' git folders elsewhere"))
    elif modules.is_dir():
        for sub in _module_gitdirs(modules):
            inner = f"{rel}/modules/{sub.relative_to(modules).as_posix()}"
            found += _inspect_gitdir(sub, inner, checkout, True)
    return found


def inspect_metadata(checkout: Path) -> list[Tampered]:
    """What in the git metadata of `checkout` git would act on but did not write itself (see
    the module docstring); empty for a checkout install made. Reads files only: no git command
    runs in `checkout`."""
    dot = checkout / ".git"
    if dot.is_symlink() or (dot.exists() and not dot.is_dir()):
        return [Tampered(".git", "a link to another git folder, whose config git would read")]
    if not dot.is_dir():
        return []
    return _inspect_gitdir(dot, ".git", checkout, False)


def _quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


def _config_text(pairs: Iterable[tuple[str, str]]) -> str:
    """A git config file holding `pairs` (keys as `git config --list` prints them)."""
    sections: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key, value in pairs:
        section, _, rest = key.partition(".")
        sub, _, name = rest.rpartition(".")
        sections.setdefault((section, sub), []).append((name, value))
    lines = []
    for (section, sub), items in sections.items():
        lines.append(f"[{section} {_quoted(sub)}]" if sub else f"[{section}]")
        lines += [f"\t{name} = {_quoted(value)}" for name, value in items]
    return "".join(line + "\n" for line in lines)


def _remove_path(path: Path) -> None:
    """Delete `path` without following a symlink."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def neutralise(checkout: Path, url: str | None) -> list[Tampered]:
    """Put the git metadata of an existing `checkout` back to what git writes there (see
    `inspect_metadata`): each config that holds other keys is rewritten with only the allowed
    ones (the entry's origin set to `url`, credentials stripped), everything else found is
    removed. Returns what was replaced, empty (and nothing written) for a clean checkout."""
    found = inspect_metadata(checkout)
    for item in found:
        path = checkout.joinpath(*item.path.split("/"))
        if item.keep is None:
            _remove_path(path)
            continue
        pairs = list(item.keep)
        if item.path == ".git/config" and url is not None:
            pairs = [(k, v) for k, v in pairs if k != "remote.origin.url"]
            pairs.append(("remote.origin.url", strip_credentials(url)))
        # a new file of our own (O_EXCL): never a name planted there beforehand
        handle, fresh = tempfile.mkstemp(prefix=".config.bake-", dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8", errors="surrogateescape") as out:
            out.write(_config_text(pairs))
        os.chmod(fresh, 0o644)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(fresh, path)  # replaces a symlink itself, never its target
    return found


def submodule_gitdir(sub: Path, gitdir: Path) -> tuple[Path | None, str]:
    """The git folder of the submodule checked out at `sub`, whose superproject's git folder
    is `gitdir`: `sub/.git` must be git's link file (`gitdir: ...`) to a folder inside
    `gitdir/modules/`. (None, why) otherwise."""
    dot = sub / ".git"
    if dot.is_symlink():
        return None, "is a symlink"
    if dot.is_dir():
        return None, "is a git folder of its own, not git's link into .git/modules/"
    if not dot.is_file():
        return None, "is missing (no .git)"
    try:
        with open(dot, "rb") as handle:
            text = handle.read(4096).decode("utf-8", "surrogateescape")
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    first = text.splitlines()[0] if text else ""
    if not first.startswith("gitdir: "):
        return None, "is not a link to a git folder"
    target = os.path.join(sub, first[len("gitdir: ") :].strip())
    if not _inside(target, gitdir / "modules") or not os.path.isdir(target):
        return None, f"points outside {gitdir.name}/modules/ ({first[len('gitdir: ') :]!r})"
    return Path(os.path.realpath(target)), ""


# --- Symlinks of a commit ---------------------------------------------------------------------

# ComfyUI's folders that jobs write at run time: a link of its own tree may not lead there.
COMFYUI_WRITABLE = ("input", "output", "temp", "user")


def link_escape(root: Path, rel: str, *, comfyui: bool = False) -> str | None:
    """Why the symlink `rel` under `root` (an entry's folder) leads outside it, or None when it
    stays inside. Absolute links are refused outright; a relative one is resolved on disk, every
    link on its way followed (so `a -> ..` then `a/../x` cannot step out unseen). In ComfyUI's
    own tree a link may not lead into the folders jobs write (input/, output/, temp/, user/)."""
    path = os.path.join(root, *rel.split("/"))
    try:
        target = os.readlink(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if os.path.isabs(target):
        return "an absolute link"
    if not _inside(path, root):
        return "it resolves outside the folder"
    if comfyui:
        inner = os.path.relpath(os.path.realpath(path), os.path.realpath(root))
        top = inner.split(os.sep, 1)[0]
        if top in COMFYUI_WRITABLE:
            return f"it resolves into {top}/, which jobs write at run time"
    return None


def tracked_links(repo: Path, *, entry: str) -> list[str]:
    """Every symlink git tracks in the checkout `repo`, submodules' included."""
    out = run(
        ["ls-files", "--stage", "-z", "--recurse-submodules"],
        cwd=repo,
        entry=entry,
        what="ls-files",
    ).stdout
    return [
        line.split("\t", 1)[1]
        for line in out.split("\0")
        if line.startswith("120000 ") and "\t" in line
    ]


def escaping_links(repo: Path, *, entry: str, comfyui: bool = False) -> list[str]:
    """`link -> target (why)` for every tracked symlink of the checkout `repo` that leads
    outside it (see `link_escape`)."""
    found = []
    for rel in sorted(tracked_links(repo, entry=entry)):
        why = link_escape(repo, rel, comfyui=comfyui)
        if why is not None:
            target = os.readlink(os.path.join(repo, *rel.split("/")))
            found.append(f"{rel} -> {target} ({why})")
    return found
