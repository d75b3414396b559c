#!/usr/bin/env python3
"""Cold start: worker process start to the first job's result, MODEL_VERIFY full / fast / off.

    sudo .venv/bin/python benchmarks/cold_start.py [--gb 8] [--files 4] [--runs 5] \
        [--comfy-start 10] [--modes off,full] [--deadline SECONDS]

Each boot starts `worker/start.sh --rp_serve_api` with a cold page cache (`sync; echo 3 >
/proc/sys/vm/drop_caches`, which needs root; without it the run says so and measures a warm
cache), against the fake ComfyUI made to behave like a real one where it matters here:

- its start burns `--comfy-start` seconds of CPU on one core before it answers
  (FAKE_COMFYUI_START_BUSY), as a real ComfyUI spends importing torch and the nodes (8-17 s on
  the 2-core development machine), competing with the hashing for the CPU;
- the first job reads, in full, every model file its loaders name (FAKE_COMFYUI_READ_MODELS),
  as ComfyUI loads the weights: with `off` those reads are the first, from disk; after a
  verification they may come from the page cache.

The models are `--gb` GiB of generated files in `--files` image-placement entries (COMFYUI_DIR/
models/checkpoints), locked by their blake3. The first job is LoadImage -> ImageInvert ->
SaveImage plus one CheckpointLoaderSimple per file, sent as soon as RunPod's local API answers;
the time to its result is what a serverless user waits for on a new worker. `fast` runs with
valid stamps (recorded by a verification before the first boot), as in a baked image.

Modes alternate within each round (rotated per round); medians over `--runs` rounds. Each mode
runs with the page-cache warm-up (MODEL_WARM, the default: for `full`, a read-ahead beside the
hash) and also without it (`/nowarm`); `--modes` picks some of them (e.g. `off,full` on a
machine with little time). `--deadline` starts no round that the longest one so far would take
past that many seconds from the start; the table is printed after every round, so a run cut
short still leaves its figures.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import blake3  # noqa: E402
import requests  # noqa: E402
from PIL import Image  # noqa: E402
from support.fake_comfyui import install  # noqa: E402
from support.fake_comfyui.runner import WorkerProcess  # noqa: E402

from bake.locks.models import ModelEntry, ModelPin, ModelsLock, UrlSource, write_models_lock  # noqa: E402
from bake.models.verify import verify_models  # noqa: E402

# MODEL_VERIFY, and "/nowarm" for MODEL_WARM=0 (the design before the page-cache warm-up; for
# `full`, the check's single read stream without the read-ahead beside it)
MODES = ("off", "fast", "full", "off/nowarm", "fast/nowarm", "full/nowarm")
READY = re.compile(
    r"ready in ([\d.]+) s \(ComfyUI answered after ([\d.]+) s, model verification ([\d.]+) s\)"
)
WARM = re.compile(
    r"models: ([\d.]+) MiB read (into the page cache|ahead of the hash) in ([\d.]+) s"
)
CHUNK = 16 << 20


def generate(path: Path, size: int, seed: int) -> tuple[str, str]:
    """Write `size` bytes (a random block varied per chunk); return their blake3 and sha256
    (the lock requires both)."""
    block = bytearray(os.urandom(CHUNK))
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    sha = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        written = 0
        counter = 0
        while written < size:
            block[:16] = f"{seed}:{counter}".encode().ljust(16, b".")
            part = bytes(block[: min(CHUNK, size - written)])
            f.write(part)
            hasher.update(part)
            sha.update(part)
            written += len(part)
            counter += 1
    return hasher.hexdigest(), sha.hexdigest()


def drop_caches() -> bool:
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def _available_gib() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return "unknown"


def job(names: list[str]) -> dict:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buf, "PNG")
    prompt: dict = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "c"}},
    }
    for i, name in enumerate(names):
        prompt[f"m{i}"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": name}}
    return {
        "workflow": prompt,
        "images": [{"name": "in.png", "image": base64.b64encode(buf.getvalue()).decode()}],
    }


def boot(tmp: Path, comfyui_dir: Path, lock: Path, mode: str, busy: float, names: list[str]):
    tmp.mkdir()
    verify, _, nowarm = mode.partition("/")
    worker = WorkerProcess(
        tmp,
        comfyui_dir=comfyui_dir,
        env={
            "MODEL_VERIFY": verify,
            "MODEL_WARM": "0" if nowarm else "1",
            "MODELS_LOCK": str(lock),
            "FAKE_COMFYUI_START_BUSY": str(busy),
            "FAKE_COMFYUI_READ_MODELS": "1",
            "JOB_TIMEOUT": "900",
        },
    )
    started = time.perf_counter()
    worker.start()
    try:
        deadline = started + 900
        while True:
            if worker.proc is not None and worker.proc.poll() is not None:
                raise SystemExit(f"the worker exited:\n{worker.log()}")
            try:
                requests.get(worker.url + "/docs", timeout=1, allow_redirects=False)
                break
            except requests.ConnectionError:
                if time.perf_counter() > deadline:
                    raise SystemExit(f"not ready:\n{worker.log()}") from None
                time.sleep(0.02)
        ready = time.perf_counter() - started
        answer = worker.runsync(job(names), timeout=900)
        result = time.perf_counter() - started
        if answer.get("status") != "COMPLETED":
            raise SystemExit(f"the job failed: {answer}\n{worker.log()}")
        match = READY.search(worker.log())
        comfy, verify = (float(match.group(2)), float(match.group(3))) if match else (0.0, 0.0)
    finally:
        worker.stop()
    warm = WARM.search(worker.log())
    if warm:
        mib, how, seconds = warm.groups()
        print(f"    MODEL_WARM: {mib} MiB {how} in {seconds} s", flush=True)
    return ready, result, comfy, verify


def table(rows: dict[str, list[tuple[float, float, float, float]]]) -> None:
    done = {mode: r for mode, r in rows.items() if r}
    base = statistics.median(r[1] for r in done["off"]) if "off" in done else None
    print()
    print(
        "| MODEL_VERIFY | boots | ready (median) | first result (median) | vs off "
        "| ComfyUI answered | verification |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode, boots in done.items():
        ready, result, comfy, verify = (statistics.median(c) for c in zip(*boots, strict=True))
        ratio = f"{result / base:.2f}x" if base else "-"
        print(
            f"| {mode} | {len(boots)} | {ready:.2f} s | {result:.2f} s | {ratio} "
            f"| {comfy:.2f} s | {verify:.2f} s |"
        )
    print(flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=2.0, help="GiB of model files (default 2)")
    parser.add_argument("--files", type=int, default=4, help="how many files (default 4)")
    parser.add_argument("--runs", type=int, default=5, help="rounds of the modes")
    parser.add_argument(
        "--comfy-start", type=float, default=10.0, help="CPU seconds of the fake ComfyUI's start"
    )
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}"
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds from the start after which no round that would not finish is started",
    )
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    args = parser.parse_args()
    begun = time.monotonic()
    modes = tuple(m for m in args.modes.split(",") if m)
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        parser.error(f"--modes: unknown {', '.join(unknown) or '(none)'}; of {', '.join(MODES)}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        comfyui_dir = install(tmp / "comfyui")
        size = int(args.gb * 2**30 / args.files)
        print(f"generating {args.files} x {size / 2**30:.2f} GiB ...", flush=True)
        names = [f"bench_{i}.safetensors" for i in range(args.files)]
        dests = [f"models/checkpoints/{name}" for name in names]
        with ThreadPoolExecutor(max_workers=min(args.files, os.cpu_count() or 1)) as pool:
            digests = list(
                pool.map(lambda i: generate(comfyui_dir / dests[i], size, i), range(args.files))
            )
        entries = {
            f"bench_{i}": ModelEntry(
                f"bench_{i}",
                UrlSource(f"https://example.invalid/{name}"),
                dests[i],
                "image",
                ModelPin(size=size, blake3=digests[i][0], sha256=digests[i][1]),
            )
            for i, name in enumerate(names)
        }
        print(f"generated in {time.monotonic() - begun:.1f} s", flush=True)
        lock = tmp / "models.lock.yaml"
        models = ModelsLock(entries)
        write_models_lock(models, lock)
        if any(m.startswith("fast") for m in modes):
            # the stamps a baked image carries, for `fast`
            assert verify_models(models, comfyui_dir, mode="full").ok
        cold = drop_caches()
        print(
            f"{args.gb:g} GiB in {args.files} files, ComfyUI start {args.comfy_start:g} s of CPU, "
            f"{os.cpu_count()} CPUs, page cache "
            + ("dropped before each boot" if cold else "NOT dropped (not root): warm")
            + f", modes {', '.join(modes)}, MemAvailable {_available_gib()}",
            flush=True,
        )
        rows: dict[str, list[tuple[float, float, float, float]]] = {m: [] for m in modes}
        longest = 0.0
        for r in range(args.runs):
            now = time.monotonic() - begun
            if r and args.deadline is not None and now + longest > args.deadline:
                print(f"stopping after {r} rounds: the next would pass --deadline", flush=True)
                break
            k = r % len(modes)
            order = modes[k:] + modes[:k]
            round_started = time.monotonic()
            for mode in order:
                drop_caches()
                row = boot(
                    tmp / f"boot-{mode.replace('/', '-')}-{r}",
                    comfyui_dir,
                    lock,
                    mode,
                    args.comfy_start,
                    names,
                )
                rows[mode].append(row)
                print(
                    f"  round {r + 1} {mode:>11}: ready {row[0]:6.2f} s, "
                    f"first result {row[1]:6.2f} s (ComfyUI {row[2]:.2f} s, "
                    f"verification {row[3]:.2f} s)",
                    flush=True,
                )
            longest = max(longest, time.monotonic() - round_started)
            table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
