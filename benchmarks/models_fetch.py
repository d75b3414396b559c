"""What `models fetch` costs over the bare library download of the same file from the same
local server, as ratios measured in the same run (target: at most 1.10x).

    python benchmarks/models_fetch.py [--size-mb 512] [--repeat 3] [--dir DIR] [--only hf,url,s3]
                                      [--rate-mb N]

Both sides write the file to the same disk; `fetch` also hashes it (sha256 + blake3 on a thread
of their own, while it streams), checks both hashes, renames it into place and records its
stamp. References: `hf_hub_download(local_dir=...)` for the Hub, `requests` streaming into a
file for plain URLs, boto3's `download_file` with the same transfer settings for S3 (moto).
The servers run in a separate process (the loopback Hub and file server from tests/support,
and moto), so they do not take the client's GIL; runs alternate between the two sides so a
busy machine slows both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1 << 20

SERVER = r"""
import hashlib, json, os, sys
import blake3
sys.path.insert(0, sys.argv[2])
from support.hfserver import HubServer
from support.httpserver import FileServer
from support.s3server import S3Server
data = os.urandom(int(sys.argv[1]))
hub, files, s3 = HubServer().start(), FileServer().start(), S3Server().start()
hub.rate = files.rate = float(sys.argv[3]) or None
commit = hub.add_file("bench/repo", "model.safetensors", data)
files.add("/model.safetensors", data)
s3.put("bench", "model.safetensors", data)
print(json.dumps({"hub": hub.endpoint, "url": files.url("/model.safetensors"),
                  "s3": s3.env(), "commit": commit, "size": len(data),
                  "blake3": blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest(),
                  "sha256": hashlib.sha256(data).hexdigest()}), flush=True)
sys.stdin.read()
"""


def race(
    a: Callable[[], object], b: Callable[[], object], repeat: int, after: Callable[[], None]
) -> tuple[float, float]:
    ta, tb = [], []
    for _ in range(repeat):
        for fn, times in ((a, ta), (b, tb)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
            after()
    return min(ta), min(tb)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where downloads are written")
    parser.add_argument("--only", default="hf,url,s3", help="sources to measure")
    parser.add_argument(
        "--rate-mb",
        type=float,
        default=0,
        help="cap the Hub and URL servers at this many MiB/s, like a real "
        "link (default: no cap, loopback speed)",
    )
    args = parser.parse_args()

    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVER,
            str(args.size_mb * MB),
            str(ROOT / "tests"),
            str(args.rate_mb * MB),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    work = Path(tempfile.mkdtemp(prefix="bench-fetch-", dir=args.dir))
    try:
        info = json.loads(server.stdout.readline())
        os.environ["HF_ENDPOINT"] = info["hub"]
        os.environ.update(info["s3"])
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")
        os.environ["HF_HOME"] = str(work / "hf-home")

        import boto3
        import requests
        from huggingface_hub import hf_hub_download

        from bake.locks.models import (
            HfSource,
            ModelEntry,
            ModelPin,
            ModelsLock,
            S3Source,
            UrlSource,
        )
        from bake.models.fetch import fetch_models
        from bake.models.s3 import transfer_config

        pin = ModelPin(size=info["size"], blake3=info["blake3"], sha256=info["sha256"])
        rel = "models/bench/model.safetensors"
        size = info["size"]
        cap = f"{args.rate_mb:g} MiB/s" if args.rate_mb else "none"
        print(
            f"file: {size / MB:.0f} MiB; server rate cap: {cap}; cores: {os.cpu_count()}; "
            f"load average: {os.getloadavg()[0]:.1f}"
        )

        def ours(source, revision=None):
            entry = ModelEntry(
                "bench", source, rel, "image", ModelPin(pin.size, pin.blake3, pin.sha256, revision)
            )

            def run():
                report = fetch_models(ModelsLock({"bench": entry}), work / "ours")
                assert report.ok and report.fetched, report.failed

            return run

        def bare_hf():
            hf_hub_download(
                "bench/repo", "model.safetensors", revision=info["commit"], local_dir=work / "bare"
            )

        def bare_url():
            path = work / "bare" / "model.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            with (
                requests.get(info["url"], stream=True, timeout=60) as resp,
                open(path, "wb") as handle,
            ):
                resp.raise_for_status()
                for chunk in resp.iter_content(chunk_size=MB):
                    handle.write(chunk)

        def bare_s3():
            path = work / "bare" / "model.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            client = boto3.session.Session().client(
                "s3", region_name="auto", endpoint_url=info["s3"]["AWS_ENDPOINT_URL"]
            )
            client.download_file("bench", "model.safetensors", str(path), Config=transfer_config())

        def clean():
            for name in ("ours", "bare", "cache"):
                shutil.rmtree(work / name, ignore_errors=True)

        cases = {
            "hf": (
                ours(HfSource("bench/repo", "model.safetensors"), info["commit"]),
                bare_hf,
                "hf_hub_download",
            ),
            "url": (ours(UrlSource(info["url"])), bare_url, "requests stream"),
            "s3": (ours(S3Source("bench", "model.safetensors")), bare_s3, "boto3 download_file"),
        }
        for name in args.only.split(","):
            mine, bare, label = cases[name]
            t_ours, t_bare = race(mine, bare, args.repeat, clean)
            print(
                f"{name:4s} fetch {size / t_ours / MB:7.0f} MiB/s ({t_ours:.2f}s)   "
                f"{label} {size / t_bare / MB:7.0f} MiB/s ({t_bare:.2f}s)   "
                f"ratio fetch/bare time {t_ours / t_bare:.2f}x (target <= 1.10)"
            )
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
