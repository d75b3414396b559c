#!/usr/bin/env python3
"""Node resolution: ten remotes resolved in parallel vs one after another, in one run.

    .venv/bin/python benchmarks/resolve_parallel.py [--remotes 10] [--latency 0.2] [--rounds 3]

Builds --remotes bare repositories in a temporary folder and a nodes lock naming them, then
times `update_nodes` (ls-remote, shallow fetch into a fresh cache, tree hash, requirements) with
one worker and with one worker per remote, best of --rounds each. Two kinds of remote:

- file://: no network at all, so the ratio shows only what git's own process start-up and the
  hashing overlap on this machine's cores;
- a slow remote: the same repositories behind git's `ext::` transport with a `sleep` before
  upload-pack on every connection, a stand-in for a server --latency seconds away (each
  resolution connects twice: ls-remote, then fetch).

Prints seconds per mode and the ratio serial / parallel.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.gitrepos import GitWorld  # noqa: E402

from bake.locks.nodes import GitSource, NodeEntry, NodesLock, write_nodes_lock  # noqa: E402
from bake.nodes.resolve import update_nodes  # noqa: E402


def build(world: GitWorld, count: int) -> list[str]:
    urls = []
    for index in range(count):
        repo = world.repo(f"Node{index:02d}")
        files = {f"pkg/mod{k}.py": f"VALUE = {index * 100 + k}\n" * 50 for k in range(40)}
        files["requirements.txt"] = f"numpy\nnode{index}-dep\n"
        repo.commit(files, "first")
        repo.commit({"pkg/mod0.py": "VALUE = -1\n"}, "second")
        urls.append(repo.url)
    return urls


def slow(url: str, latency: float) -> str:
    path = url.removeprefix("file://")
    # ext:: splits its argument on spaces; "% " is a literal space inside one argument
    return f"ext::sh -c sleep% {latency};% exec% git% %s% {path}"


def write_lock(path: Path, urls: list[str]) -> None:
    """ComfyUI from the first remote, one custom node from each of the others."""
    comfy = NodeEntry(
        "comfyui", "comfyui", GitSource(urls[0], "main"), requirements_file="requirements.txt"
    )
    nodes = {
        f"Node{i:02d}": NodeEntry(
            f"Node{i:02d}",
            "custom_node",
            GitSource(u, "main"),
            requirements_file="requirements.txt",
        )
        for i, u in enumerate(urls)
        if i
    }
    write_nodes_lock(NodesLock(comfy, nodes, {}), path)


def timed(lock_text: str, work: Path, jobs: int, rounds: int) -> float:
    best = float("inf")
    for round_ in range(rounds):
        lock = work / f"nodes-{jobs}-{round_}.lock.yaml"
        lock.write_text(lock_text)
        cache = work / f"cache-{jobs}-{round_}"  # cold cache: every commit is fetched
        start = time.perf_counter()
        code = update_nodes(lock, out=lambda _: None, jobs=jobs, cache=cache)
        best = min(best, time.perf_counter() - start)
        if code != 0:
            raise SystemExit(f"resolution failed with {jobs} job(s)")
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--remotes", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.2, metavar="SECONDS")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-resolve-") as tmp:
        tmp_path = Path(tmp)
        world = GitWorld.create(tmp_path)
        os.environ.update(world.env_vars())
        world.set_config("protocol.ext.allow", "always")
        urls = build(world, args.remotes)
        print(f"{args.remotes} remotes, {os.cpu_count()} CPUs, best of {args.rounds}")
        for label, remote_urls in (
            ("file://", urls),
            (f"{args.latency:.2f} s per connection", [slow(u, args.latency) for u in urls]),
        ):
            write_lock(tmp_path / "base.lock.yaml", remote_urls)
            text = (tmp_path / "base.lock.yaml").read_text()
            serial = timed(text, tmp_path, 1, args.rounds)
            parallel = timed(text, tmp_path, args.remotes, args.rounds)
            print(
                f"{label:>24}: one after another {serial:6.2f} s, in parallel "
                f"{parallel:6.2f} s, ratio {serial / parallel:4.1f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
