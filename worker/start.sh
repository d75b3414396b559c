#!/bin/sh
# The container's entry point. Arguments go on to the RunPod SDK, so
# `worker/start.sh --rp_serve_api --rp_api_port 8000` serves RunPod's local API.
set -eu
exec "${WORKER_PYTHON:-python3}" -m worker "$@"
