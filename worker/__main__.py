"""`python -m worker`: the container's boot (see worker/boot.py)."""

import sys

from worker.boot import main

sys.exit(main())
