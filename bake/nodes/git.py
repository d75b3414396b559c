"""Running git for pins: resolve a ref, fetch exactly one commit, check it out, look at it.

Git runs as the user configured it (global and system config are read), so
`url.<base>.insteadOf` mirrors, credential helpers and proxies work for the build exactly as for
`git clone`. Overridden are only: the terminal prompt (off), replace refs (ignored), hooks and
fsmonitor (never run: a checkout's .git may have been tampered with), and `core.autocrlf=false`
for checkouts, because a machine's line-ending setting would otherwise change the checked-out
bytes and so the tree hash.

Every failure is a `GitError` naming the entry (its address in nodes.lock.yaml) and the remote,
with credentials embedded in URLs (`https://user:token@host/...`) redacted, in our words and in
git's output alike.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
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
    submodule, recursively, at the commit the superproject records (shallow)."""
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
    if (repo / ".gitmodules").is_file():
        run(
            [
                "-c",
                "core.autocrlf=false",
                "submodule",
                "update",
                "--init",
                "--recursive",
                "--force",
                "--depth",
                "1",
            ],
            cwd=repo,
            entry=entry,
            what="submodule update",
        )


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
    """The local edits to tracked files as a binary patch (what a repair is about to undo)."""
    return run(["diff", "--binary", "HEAD"], cwd=repo, entry=entry, what="diff", check=False).stdout
