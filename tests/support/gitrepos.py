"""Bare git repositories on disk, served over file://, built commit by commit for tests.

Everything here drives the real `git` binary. A test makes a `GitWorld` (one per tmp dir: an
isolated global git config plus a folder of repositories), then builds repositories in it:

    world = GitWorld.create(tmp_path, monkeypatch)  # its git config is in force for the test
    node = world.repo("ComfyUI-Foo")
    first = node.commit({"__init__.py": "A = 1\\n", "requirements.txt": "numpy\\n"})
    node.tag("v1.0")                           # annotated tag on the tip of main
    second = node.commit({"__init__.py": "A = 2\\n"})   # main moves on
    node.force_branch("main", first)           # history rewritten: `second` unreachable
    node.prune()                               # ... and really gone from the object store

    front = world.repo("Frontend")
    front.commit({"app.js": "x"})
    node.add_submodule("web", front, front.head())

`world.env()` is the environment a subprocess needs to see the same git config (for example a
`python -m bake` child). `world.mirror(prefix, repo)` adds a `url.<base>.insteadOf` rule so a
lock can name https://github.com/... while git fetches from the local bare repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Fixed identity and clock: the same test builds the same commits (same shas) on every run.
_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z


def run_git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run git, return stdout stripped; raise with git's stderr on failure."""
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout.strip()


@dataclass
class GitWorld:
    """A folder of bare repositories and the git config every git process of the test reads."""

    root: Path
    config: Path
    _clock: list[int] = field(default_factory=lambda: [_EPOCH])

    @classmethod
    def create(cls, tmp_path: Path, monkeypatch=None) -> GitWorld:
        """Make the world under `tmp_path`. Given pytest's `monkeypatch`, also put its git
        config in force for this test (GIT_CONFIG_GLOBAL, GIT_CONFIG_NOSYSTEM), undone after."""
        root = tmp_path / "remotes"
        root.mkdir(parents=True, exist_ok=True)
        config = tmp_path / "gitconfig"
        world = cls(root, config)
        world.set_config("user.name", "Test Maintainer")
        world.set_config("user.email", "maintainer@example.invalid")
        world.set_config("init.defaultBranch", "main")
        # Submodules over file:// are refused by default since git 2.38.1; the fixtures need it.
        world.set_config("protocol.file.allow", "always")
        world.set_config("advice.detachedHead", "false")
        if monkeypatch is not None:
            for key, value in world.env_vars().items():
                monkeypatch.setenv(key, value)
        return world

    def env_vars(self) -> dict[str, str]:
        return {"GIT_CONFIG_GLOBAL": str(self.config), "GIT_CONFIG_NOSYSTEM": "1"}

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default os.environ) with this world's git config in force."""
        return {**(os.environ if base is None else base), **self.env_vars()}

    def set_config(self, key: str, value: str, *, add: bool = False) -> None:
        args = ["config", "--file", str(self.config)]
        if add:
            args.append("--add")
        run_git(*args, key, value)

    def mirror(self, prefix: str, target: BareRepo | str) -> None:
        """`url.<target>.insteadOf <prefix>`: git reads `prefix...` from `target...`.
        With a BareRepo, `prefix` should be the full URL of that one repository."""
        base = target.url if isinstance(target, BareRepo) else target
        self.set_config(f"url.{base}.insteadOf", prefix, add=True)

    def tick(self) -> str:
        """The next commit time (one minute later each call), as git's date format."""
        self._clock[0] += 60
        return f"@{self._clock[0]} +0100"

    def repo(self, name: str) -> BareRepo:
        """A new, empty bare repository named `name` (branch `main`)."""
        bare = self.root / f"{name}.git"
        run_git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), env=self.env())
        work = self.root / ".work" / name
        run_git("init", "--quiet", "--initial-branch=main", str(work), env=self.env())
        run_git("remote", "add", "origin", bare.as_uri(), cwd=work, env=self.env())
        return BareRepo(self, name, bare, work)


@dataclass
class BareRepo:
    world: GitWorld
    name: str
    path: Path  # the bare repository
    work: Path  # a private clone the commits are authored in
    _branch: str | None = None  # the branch checked out in `work`, once known

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        return run_git(*args, cwd=cwd or self.work, env=self.world.env())

    def _commit_env(self) -> dict[str, str]:
        date = self.world.tick()
        return self.world.env({**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})

    def commit(
        self,
        files: Mapping[str, str | bytes | None],
        message: str = "change",
        *,
        branch: str = "main",
        executable: tuple[str, ...] = (),
        symlinks: Mapping[str, str] | None = None,
    ) -> str:
        """Write (or, with None, delete) files on `branch`, commit, push; return the sha.
        A branch that does not exist yet starts from the current tip of main."""
        self._checkout(branch)
        gone = [rel for rel, content in files.items() if content is None]
        if gone:
            self._git("rm", "-r", "--quiet", "--", *gone)
        for rel, content in files.items():
            path = self.work / rel
            if content is None:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
            path.chmod(0o755 if rel in executable else 0o644)
        for rel, target in (symlinks or {}).items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink() or path.exists():
                path.unlink()
            path.symlink_to(target)
        added = [rel for rel, content in files.items() if content is not None]
        added += list(symlinks or {})
        if added:
            self._git("add", "--force", "--", *added)  # as upstream did: tracked though ignored
        run_git(
            "commit",
            "--quiet",
            "--allow-empty",
            "-m",
            message,
            cwd=self.work,
            env=self._commit_env(),
        )
        self._git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}")
        return self.head(branch)

    def _checkout(self, branch: str) -> None:
        if self._branch == branch:
            return
        self._branch = branch
        has_commits = (
            subprocess.run(
                ["git", "rev-parse", "--verify", "--quiet", "HEAD"],
                cwd=self.work,
                env=self.world.env(),
                capture_output=True,
            ).returncode
            == 0
        )
        if not has_commits:
            self._git("checkout", "--quiet", "-B", branch)
            return
        exists = (
            subprocess.run(
                ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
                cwd=self.work,
                env=self.world.env(),
                capture_output=True,
            ).returncode
            == 0
        )
        self._git("checkout", "--quiet", *(() if exists else ("-b",)), branch)

    def head(self, branch: str = "main") -> str:
        """The commit `branch` points at in the bare repository."""
        return run_git("rev-parse", f"refs/heads/{branch}", cwd=self.path, env=self.world.env())

    def date(self, rev: str) -> str:
        """The commit's committer date, ISO 8601 with offset (what a lock records)."""
        return run_git("show", "-s", "--format=%cI", rev, cwd=self.path, env=self.world.env())

    def tag(self, name: str, rev: str | None = None, *, annotated: bool = True) -> None:
        rev = rev or self.head()
        args = ["tag", "--force", *(("-a", "-m", name) if annotated else ()), name, rev]
        run_git(*args, cwd=self.work, env=self._commit_env())
        self._git("push", "--quiet", "--force", "origin", f"refs/tags/{name}")

    def force_branch(self, branch: str, rev: str) -> None:
        """Move `branch` to `rev` on the remote, as a force-push that rewrites history does."""
        self._git("push", "--quiet", "--force", "origin", f"{rev}:refs/heads/{branch}")
        self._git("fetch", "--quiet", "origin")
        if self._branch == branch:
            self._git("reset", "--quiet", "--hard", rev)
        else:
            self._git("branch", "--force", branch, rev)

    def delete_branch(self, branch: str) -> None:
        self._git("push", "--quiet", "origin", f":refs/heads/{branch}")

    def prune(self) -> None:
        """Drop unreachable objects from the bare repository, so a force-pushed-away commit is
        really gone (upload-pack would otherwise still serve it by sha)."""
        env = self.world.env()
        run_git("reflog", "expire", "--expire=now", "--all", cwd=self.path, env=env)
        run_git("gc", "--quiet", "--prune=now", cwd=self.path, env=env)

    def add_submodule(
        self,
        path: str,
        sub: BareRepo,
        rev: str,
        *,
        url: str | None = None,
        branch: str = "main",
        message: str = "add submodule",
    ) -> str:
        """Commit a submodule at `path` pinned to `rev` of `sub` (`url` overrides the URL
        written to .gitmodules, e.g. an https URL that a mirror rule maps to `sub`)."""
        self._checkout(branch)
        run_git(
            "submodule",
            "add",
            "--quiet",
            "--force",
            sub.url,
            path,
            cwd=self.work,
            env=self.world.env(),
        )
        run_git("checkout", "--quiet", rev, cwd=self.work / path, env=self.world.env())
        if url is not None:
            self._git("config", "--file", ".gitmodules", f"submodule.{path}.url", url)
            self._git("add", ".gitmodules")
        self._git("add", path)
        run_git("commit", "--quiet", "-m", message, cwd=self.work, env=self._commit_env())
        self._git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}")
        return self.head(branch)

    def move_submodule(self, path: str, rev: str, *, branch: str = "main") -> str:
        """Commit the submodule at `path` moved to `rev`."""
        self._checkout(branch)
        sub = self.work / path
        run_git("fetch", "--quiet", "origin", cwd=sub, env=self.world.env())
        run_git("checkout", "--quiet", rev, cwd=sub, env=self.world.env())
        self._git("add", path)
        run_git("commit", "--quiet", "-m", f"move {path}", cwd=self.work, env=self._commit_env())
        self._git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}")
        return self.head(branch)

    def remove(self) -> None:
        """Delete the bare repository (the remote becomes unreachable)."""
        shutil.rmtree(self.path)
