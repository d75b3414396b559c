#!/usr/bin/env python3
"""Maintainers' one command: resolve every lock entry to an exact pin. See --help."""

import sys
from pathlib import Path

# Run from a checkout without installing: the package sits beside this script's folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bake.update_locks import main

if __name__ == "__main__":
    sys.exit(main())
