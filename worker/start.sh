#!/bin/sh
# The container's entry point. Arguments go on to the RunPod SDK, so
# `worker/start.sh --rp_serve_api --rp_api_port 8000` serves RunPod's local API.
set -eu

case "${1:-}" in
-h | --help)
    # Answered here, before any boot work: --help must never verify models or start ComfyUI.
    cat <<'USAGE'
usage: worker/start.sh [RunPod SDK arguments]

Boots the ComfyUI worker: verifies the models of models.lock.yaml (MODEL_VERIFY), starts
ComfyUI ($COMFYUI_DIR, on 127.0.0.1 in serverless mode), then takes RunPod jobs.

RunPod SDK arguments, for a local run:
  --rp_serve_api               serve RunPod's local test API instead of taking jobs from RunPod
  --rp_api_port PORT           its port (default 8000)
  --rp_api_host HOST           its address (default localhost)
  --rp_log_level LEVEL         ERROR, WARN, INFO or DEBUG
  --test_input JSON            run one job from this JSON and exit

Configuration is read from the environment (COMFYUI_DIR, WORKER_MODE, MODEL_VERIFY,
SAGE_ATTENTION, JOB_TIMEOUT, BUCKET_*, ...): docs/worker.md lists every variable.
The interpreter is $WORKER_PYTHON (default: python3).
USAGE
    exit 0
    ;;
esac

exec "${WORKER_PYTHON:-python3}" -m worker "$@"
