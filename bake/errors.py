"""The exception hierarchy of `bake`.

Every error a user can meet is a `BakeError`; the CLI prints its message (one line per problem)
and exits non-zero. Messages say what was tried, what was expected and what was found, and what
to do next. Credentials never appear in a message: callers pass redacted values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class BakeError(Exception):
    """Base of every error `bake` reports to a user."""

    exit_code = 1

    def lines(self) -> list[str]:
        """The message as the lines the CLI prints."""
        return str(self).splitlines() or [type(self).__name__]


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a lockfile: where it is and what was expected and found."""

    file: str
    where: str  # dotted path of the entry and field, e.g. "custom_nodes.X.locked.rev"
    message: str  # "expected ..., found ..."

    def __str__(self) -> str:
        location = f"{self.file}: {self.where}" if self.where else self.file
        return f"{location}: {self.message}"


class LockError(BakeError):
    """A lockfile is malformed. Carries every problem found, not only the first."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UnlockedError(BakeError):
    """An entry has no `locked` pin yet, but the command needs one."""


class VerificationError(BakeError):
    """Content on disk (or downloaded) does not match its pin."""


class HashMismatchError(VerificationError):
    """Bytes hashed to something other than the locked hash."""


class SizeMismatchError(VerificationError):
    """A file or download has another size than the locked one."""


class MissingFileError(VerificationError):
    """A locked file is not where it should be."""


class GitError(BakeError):
    """A git operation (ls-remote, fetch, checkout) failed; the message names entry and remote."""


class FetchError(BakeError):
    """A download failed (not found, unauthorised, connection lost, disk full)."""


class AuthError(FetchError):
    """The source refused our credentials; the message names the variable to set, not its value."""


class SourceNotFoundError(FetchError):
    """The source answered that the file (or revision) does not exist."""


class PythonEnvError(BakeError):
    """The Python lock cannot be compiled, or an environment differs from it."""


class BuildError(BakeError):
    """A source build (SageAttention) failed or produced something unexpected."""


def shown(path: str) -> str:
    """A path as messages print it: as is, or quoted when it holds a control character or
    bytes that are not UTF-8 (a file name must not forge an output line)."""
    if path.isprintable():
        try:
            path.encode("utf-8")
            return path
        except UnicodeEncodeError:
            pass
    return repr(path)
