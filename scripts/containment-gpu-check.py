#!/usr/bin/env python3
"""Show that ComfyUI's containment leaves the GPU working: run it on a GPU host.

    python3 scripts/containment-gpu-check.py [--python /opt/venv/bin/python]

Builds the same Landlock ruleset the worker applies to ComfyUI (worker.comfy.containment),
around a scratch ComfyUI folder, and runs, under the launcher, in the given interpreter (one
with torch and Triton, default this one): a CUDA matrix product checked against the CPU, a
Triton kernel compiled into the contained caches and run, and, as controls, a write beside the
code and a TCP connection, which must fail. Prints one line per check and exits non-zero when
any fails. Run it from a checkout on a new host, driver or CUDA stack; the worker's boot log
says what containment is in force on every start.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.comfy import containment

CHILD = r"""
import json, os, socket, sys
out = {}
import torch
a = torch.randn(512, 512)
b = torch.randn(512, 512)
gpu = (a.cuda() @ b.cuda()).cpu()
out["cuda matmul"] = bool(torch.allclose(gpu, a @ b, atol=1e-2, rtol=1e-2))
out["device"] = torch.cuda.get_device_name(0)
import triton
import triton.language as tl

@triton.jit
def add(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    tl.store(out_ptr + i, tl.load(x_ptr + i, mask=mask) + tl.load(y_ptr + i, mask=mask), mask=mask)

x = torch.rand(4096, device="cuda")
y = torch.rand(4096, device="cuda")
z = torch.empty_like(x)
add[(4,)](x, y, z, 4096, BLOCK=1024)
out["triton kernel"] = bool(torch.allclose(z, x + y))
out["triton cache"] = os.environ["TRITON_CACHE_DIR"]
try:
    open(os.path.join(sys.argv[1], "planted.py"), "w").write("x")
    out["write beside the code refused"] = False
except PermissionError:
    out["write beside the code refused"] = True
try:
    socket.create_connection(("127.0.0.1", 9), timeout=2)
    out["tcp connection refused"] = False
except PermissionError:
    out["tcp connection refused"] = True
except OSError:
    out["tcp connection refused"] = False  # refused by the port, not by the ruleset
print(json.dumps(out))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter with torch, Triton")
    args = parser.parse_args()
    decision = containment.decide("required")
    with tempfile.TemporaryDirectory(prefix="containment-gpu-") as tmp:
        root = Path(tmp)
        comfyui = root / "comfyui"
        for name in ("input", "output", "temp", "user", "custom_nodes"):
            (comfyui / name).mkdir(parents=True)
        caches = {
            "TRITON_CACHE_DIR": root / "triton",
            "TORCHINDUCTOR_CACHE_DIR": root / "inductor",
            "XDG_CACHE_HOME": root / "cache",
            "CUDA_CACHE_PATH": root / "nv",
            "TMPDIR": root / "tmp",
        }
        for folder in caches.values():
            folder.mkdir()
        ruleset = containment.comfy_ruleset(
            comfyui_dir=comfyui,
            python=args.python,
            read_extra=[],
            write_extra=list(caches.values()),
            port=8188,
        )
        env = {**os.environ, **{k: str(v) for k, v in caches.items()}}
        child = comfyui / "gpu_check.py"  # Triton compiles @jit functions from their file
        child.write_text(CHILD)
        command = containment.launcher_command(
            ruleset, [args.python, str(child), str(comfyui / "custom_nodes")], python=args.python
        )
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    print(f"containment: {containment.describe(decision, None)}")
    if done.returncode != 0:
        print(done.stdout + done.stderr[-4000:])
        print("FAILED: the contained child did not finish")
        return 1
    result = json.loads(done.stdout.strip().splitlines()[-1])
    ok = True
    for check, value in result.items():
        print(f"{check}: {value}")
        ok &= value is not False
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
