#!/usr/bin/env python3
"""Maintainers' one command: resolve every lock entry to an exact pin. See --help.

It runs as pasted from any shell: when started by an interpreter other than the project's own
environment (`.venv/`, made by `./scripts/test` or `uv sync`), it re-executes itself there, so
nobody has to activate anything and its dependencies (packaging, PyYAML, huggingface_hub, ...)
are the locked ones.
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"


def _in_project_env() -> bool:
    # sys.prefix is the venv's folder when this interpreter runs inside it (symlinks resolved
    # on both sides: the venv's python is usually a link to the system one).
    return Path(sys.prefix).resolve() == VENV_PYTHON.parent.parent.resolve()


if not _in_project_env() and os.access(VENV_PYTHON, os.X_OK):
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])

# Run from a checkout without installing: the package sits beside this script's folder.
sys.path.insert(0, str(REPO))

try:
    from bake.update_locks import main
except ModuleNotFoundError as exc:
    sys.exit(
        f"error: scripts/update-locks.py: {exc.name} is not installed and there is no project "
        f"environment at {VENV_PYTHON.parent.parent}: run ./scripts/test once (it creates it), "
        "or `uv sync`, then run this command again"
    )

if __name__ == "__main__":
    sys.exit(main())
