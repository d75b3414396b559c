"""No job sees another's files: ComfyUI's input/, output/ and temp/ go back to their boot state.

A job's uploads and outputs live in folders of its own (`input/job-<id>/`, ...), removed after
it. But a node may write elsewhere in those folders (a preview in temp/, a file saved at the
root of input/), and the next job could load it: the Wan workflow's default `start_image.png`
would then be the previous caller's picture. So the boot records what the three folders hold
(`BootFiles.take`), a job may load from input/ only its own uploads and those files
(worker.policy.paths.check_file_names), and when the last running job ends everything else in
them is removed (`BootFiles.restore`): with two jobs at once, neither removes the other's
folders or files while it runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("worker")

FOLDERS = ("input", "output", "temp")


def _listing(root: Path) -> frozenset[str]:
    """Every path below `root`, relative, folders included; links are not followed."""
    found: set[str] = set()
    if not root.is_dir():
        return frozenset()
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        for name in (*dirs, *files):
            found.add(name if rel == "." else f"{rel}/{name}")
    return frozenset(found)


@dataclass
class BootFiles:
    comfyui_dir: Path
    files: dict[str, frozenset[str]]  # folder -> its paths at boot
    _active: set[str] = field(default_factory=set)  # the scopes of the jobs running now
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def take(cls, comfyui_dir: Path) -> BootFiles:
        return cls(comfyui_dir, {f: _listing(comfyui_dir / f) for f in FOLDERS})

    def names(self, folder: str) -> frozenset[str]:
        """The plain file names at the top of `folder` at boot (what a job may load there)."""
        return frozenset(p for p in self.files.get(folder, ()) if "/" not in p)

    def begin(self, scope: str) -> None:
        with self._lock:
            self._active.add(scope)

    def end(self, scope: str) -> list[Path]:
        """The job `scope` is over: what to remove. When no other job runs, everything that is
        not from the boot (its own folders included); else only its own folders. The caller
        removes them off the job's path (`remove`): until then nothing of them can be loaded,
        as a job loads only its uploads and the boot's files."""
        with self._lock:
            self._active.discard(scope)
            if self._active:
                return [self.comfyui_dir / f / scope for f in FOLDERS]
            return self._strays()

    def _strays(self) -> list[Path]:
        """The shallowest paths the boot did not see (removing one removes what is below it):
        only folders that existed at boot are looked into, so a job's own folder full of
        outputs costs one entry, not a walk."""
        strays = []
        for folder in FOLDERS:
            root = self.comfyui_dir / folder
            boot = self.files.get(folder, frozenset())
            pending = [""] if root.is_dir() else []
            while pending:
                rel = pending.pop()
                with os.scandir(root / rel) as entries:
                    for entry in entries:
                        path = f"{rel}/{entry.name}" if rel else entry.name
                        if path not in boot:
                            strays.append(root / path)
                        elif entry.is_dir(follow_symlinks=False):
                            pending.append(path)
        return sorted(strays)


def remove(path: Path) -> None:
    """Remove a file or a folder with its contents; never follows a link."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove %s after the job: %s", path, exc)
