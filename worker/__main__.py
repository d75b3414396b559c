"""`python -m worker`: the container's boot (see worker/boot.py)."""

import sys

from worker.boot import main

# Guarded: a multiprocessing child started by spawn or forkserver (the RunPod SDK's heartbeat)
# imports this module again, and must not boot a second worker.
if __name__ == "__main__":
    sys.exit(main())
