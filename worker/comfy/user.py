"""The unprivileged user ComfyUI runs as, when the worker is root (as in the image).

ComfyUI's code, custom_nodes/ and the models belong to root and are read-only to this user,
so nothing a job makes ComfyUI do can write code that the next ComfyUI start would load. Only
the folders ComfyUI must write (WRITABLE) are handed to it. Run as a normal user, the worker
starts ComfyUI as itself, and none of this applies.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("worker")

# ComfyUI's folders that it writes to itself (uploads, outputs, previews, settings).
WRITABLE = ("input", "output", "temp", "user")
# Files in custom_nodes/ that a locked node rewrites at every start and fails to import without:
# data it reads, never code. Their folders stay read-only. (The Dockerfile hands over the same.)
NODE_WRITABLE = ("custom_nodes/RES4LYF/res4lyf.config.json",)


class ComfyUserError(RuntimeError):
    """COMFYUI_USER names a user this system does not have, or one that could write code."""


@dataclass(frozen=True)
class ComfyUser:
    name: str
    uid: int
    gid: int
    home: str

    def popen_kwargs(self) -> dict[str, Any]:
        """subprocess.Popen arguments that start a child as this user, with no other group
        (root's supplementary groups would otherwise stay with it)."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def resolve(name: str, *, euid: int | None = None) -> ComfyUser | None:
    """The user to run ComfyUI as: None when `name` is empty or the worker is not root."""
    name = name.strip()
    if not name:
        return None
    if (os.geteuid() if euid is None else euid) != 0:
        log.info("COMFYUI_USER=%s ignored: the worker is not root, ComfyUI runs as itself", name)
        return None
    try:
        entry = pwd.getpwnam(name) if not name.isdigit() else pwd.getpwuid(int(name))
    except KeyError:
        raise ComfyUserError(
            f"COMFYUI_USER={name}: no such user on this system (the image creates `comfy`; "
            "set COMFYUI_USER to an existing user, or empty to run ComfyUI as the worker)"
        ) from None
    if entry.pw_uid == 0:
        raise ComfyUserError(f"COMFYUI_USER={name} is root: name an unprivileged user")
    return ComfyUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def hand_over(path: Path, user: ComfyUser) -> None:
    """Make `path` (a folder the worker creates for ComfyUI) the user's own, with its contents.

    Walks with file descriptors and never follows a symlink, so a link planted inside cannot
    redirect root's chown to a file elsewhere.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for _root, dirs, files, dir_fd in os.fwalk(path, follow_symlinks=False):
        _own(".", dir_fd, user)
        for name in files + [d for d in dirs if _is_link(d, dir_fd)]:
            _own(name, dir_fd, user)


def _is_link(name: str, dir_fd: int) -> bool:
    return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)


def _own(name: str, dir_fd: int, user: ComfyUser) -> None:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if (st.st_uid, st.st_gid) != (user.uid, user.gid):
        os.chown(name, user.uid, user.gid, dir_fd=dir_fd, follow_symlinks=False)


def writable_code(comfyui_dir: Path, user: ComfyUser) -> list[Path]:
    """ComfyUI's code paths that `user` could write: the tree's root, main.py, custom_nodes/
    and every node folder in it, models/. Their owners and modes, not a walk of every file:
    what a wrong build step or mount (a chown -R, a chmod 777) gets wrong is at the top."""
    root = Path(comfyui_dir)
    custom = root / "custom_nodes"
    nodes = sorted(custom.iterdir()) if custom.is_dir() else []
    candidates = [root, root / "main.py", custom, *nodes, root / "models"]
    return [p for p in candidates if _writable_by(p, user)]


def _writable_by(path: Path, user: ComfyUser) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        return False
    mode = st.st_mode
    return bool(
        (st.st_uid == user.uid and mode & stat.S_IWUSR)
        or (st.st_gid == user.gid and mode & stat.S_IWGRP)
        or mode & stat.S_IWOTH
    )


def check_code_read_only(comfyui_dir: Path, user: ComfyUser) -> None:
    """Refuse to start ComfyUI as a user that could write its code (see writable_code)."""
    found = writable_code(comfyui_dir, user)
    if found:
        raise ComfyUserError(
            f"ComfyUI would run as {user.name}, who can write {', '.join(map(str, found))}: "
            "a job could leave code there for the next ComfyUI start. ComfyUI's code, "
            "custom_nodes/ and models/ must be root's and not group- or world-writable"
        )


def make_folder(path: Path, user: ComfyUser | None) -> Path:
    """A folder the worker creates for ComfyUI to write into (a job's own output folder, say):
    every folder this creates belongs to ComfyUI's user, when there is one."""
    path = Path(path)
    first_new = next((p for p in (path, *path.parents) if p.parent.exists()), path)
    existed = first_new.exists()
    path.mkdir(parents=True, exist_ok=True)
    if user is not None and not existed:
        hand_over(first_new, user)
    return path


def prepare_folders(comfyui_dir: Path, user: ComfyUser) -> None:
    """Before ComfyUI starts: its writable folders exist and belong to `user`, and so do
    the NODE_WRITABLE files that exist.

    The image build already does this; doing it at boot too keeps a folder that a build step
    (or an operator) left to root from failing ComfyUI's first upload or save.
    """
    for name in WRITABLE:
        hand_over(Path(comfyui_dir) / name, user)
    for rel in NODE_WRITABLE:
        path = Path(comfyui_dir) / rel
        # lstat: a link here is left alone (and ComfyUI then cannot write through it)
        if path.exists() and not path.is_symlink():
            os.chown(path, user.uid, user.gid, follow_symlinks=False)
