#!/usr/bin/env python3
"""`nodes install` with nothing to do and `nodes verify`, over the real ComfyUI and nine nodes,
against git's own look at the same checkouts, in one run.

    .venv/bin/python benchmarks/nodes_verify.py [--src DIR] [--rounds 5] [--code DIR]

--src is a folder with `ComfyUI/` and `custom_nodes/<name>/` (default: $COMFYUI_SRC; one of
the two is required). Each tree becomes a git repository of one commit in a temporary
folder (identity and dates fixed), a nodes lock names them over file://, update-locks resolves
it and `nodes install` lays the tree out as the image build does. Then, best of --rounds each:

- `install`: `install_nodes` again, every entry already at its commit (no network, no writes);
- `verify`: `verify_nodes` over the same tree;
- both again after `compileall --invalidation-mode checked-hash` (what the image holds: every
  `.pyc` is compiled again and compared with what sits there);

and as references, on the same checkouts and the same tracked files:

- `git status`: `git status --porcelain --untracked-files=all` in each checkout, one after
  another (git's own "does the tree hold its commit", with its index and stat cache: it does not
  read file contents it believes unchanged, which verify never believes);
- `git hash-object`: `git hash-object --stdin-paths` over every tracked file (the blob ids
  verify computes), one process;
- `sha256sum`: the same files, one process (a plain read-and-hash floor).

--code DIR imports `bake` from DIR instead (e.g. `git archive HEAD | tar -x -C /tmp/base` to
time the previous code on the same tree in the same command). Prints seconds and ratios.
"""

from __future__ import annotations

import argparse
import compileall
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_DATE = "2026-01-01T00:00:00+00:00"


def best_of(rounds: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def git(*args: str, cwd: Path | None = None, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def make_remote(source: Path, dest: Path, env: dict[str, str]) -> str:
    """`source`'s files as one commit of a repository at `dest`; its file:// URL."""
    shutil.copytree(source, dest, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    git("init", "--quiet", "--initial-branch=main", str(dest), env=env)
    git("add", "--all", "--force", ".", cwd=dest, env=env)
    commit_env = {**env, "GIT_AUTHOR_DATE": _DATE, "GIT_COMMITTER_DATE": _DATE}
    git("commit", "--quiet", "-m", "tree", cwd=dest, env=commit_env)
    return dest.as_uri()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_src = os.environ.get("COMFYUI_SRC", "").strip()
    parser.add_argument(
        "--src",
        type=Path,
        default=Path(default_src) if default_src else None,
        required=not default_src,
        help="ComfyUI/ and custom_nodes/ to lay out (default: $COMFYUI_SRC)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--code", type=Path, default=ROOT, help="where `bake` is imported from")
    args = parser.parse_args()
    sys.path.insert(0, str(args.code.resolve()))

    import bake
    from bake.locks.nodes import GitSource, NodeEntry, NodesLock, write_nodes_lock
    from bake.nodes.install import install_nodes
    from bake.nodes.resolve import update_nodes
    from bake.nodes.verify import verify_nodes

    comfy_src, nodes_src = args.src / "ComfyUI", args.src / "custom_nodes"
    names = sorted(p.name for p in nodes_src.iterdir() if p.is_dir())
    with tempfile.TemporaryDirectory(prefix="bake-nodes-verify-") as scratch:
        work = Path(scratch)
        config = work / "gitconfig"
        env = {
            **os.environ,
            "GIT_CONFIG_GLOBAL": str(config),
            "GIT_CONFIG_NOSYSTEM": "1",
            "BAKE_CACHE_DIR": str(work / "cache"),
        }
        for key, value in (
            ("user.name", "Bench"),
            ("user.email", "bench@example.invalid"),
            ("protocol.file.allow", "always"),
        ):
            git("config", "--file", str(config), key, value, env=env)
        os.environ.update({k: env[k] for k in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM")})
        os.environ["BAKE_CACHE_DIR"] = env["BAKE_CACHE_DIR"]

        comfy_url = make_remote(comfy_src, work / "remotes" / "ComfyUI", env)
        nodes = {
            name: NodeEntry(
                name,
                "custom_node",
                GitSource(make_remote(nodes_src / name, work / "remotes" / name, env), "main"),
            )
            for name in names
        }
        lock_path = work / "nodes.lock.yaml"
        comfyui = NodeEntry("comfyui", "comfyui", GitSource(comfy_url, "main"))
        write_nodes_lock(NodesLock(comfyui, nodes, {}), lock_path)
        assert update_nodes(lock_path, out=lambda _: None) == 0
        from bake.locks.nodes import load_nodes_lock

        lock = load_nodes_lock(lock_path)
        comfy = work / "ComfyUI"
        start = time.perf_counter()
        install_nodes(lock, comfy, log=lambda _: None)
        fresh = time.perf_counter() - start
        # what the build's first start writes into the nodes' folders
        for default, written in (
            ("ComfyUI-Custom-Scripts/pysssss.default.json", "pysssss.json"),
            ("RES4LYF/web/js/res4lyf.default.json", "res4lyf.config.json"),
        ):
            source = comfy / "custom_nodes" / default
            if source.is_file():
                shutil.copy(source, comfy / "custom_nodes" / default.split("/")[0] / written)

        checkouts = [comfy, *(comfy / "custom_nodes" / n for n in names)]
        files: list[str] = []
        for checkout in checkouts:
            listed = git("ls-files", "-z", cwd=checkout, env=env).split("\0")
            files += [str(checkout / p) for p in listed if p and not (checkout / p).is_symlink()]

        def status() -> None:
            for checkout in checkouts:
                git("status", "--porcelain", "--untracked-files=all", cwd=checkout, env=env)

        def hash_objects() -> None:
            subprocess.run(
                ["git", "hash-object", "--stdin-paths"],
                input="\n".join(files) + "\n",
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )

        def sha256() -> None:
            subprocess.run(
                ["xargs", "-0", "sha256sum", "--"],
                input="\0".join(files),
                capture_output=True,
                text=True,
                check=True,
            )

        def noop_install() -> None:
            lines: list[str] = []
            install_nodes(lock, comfy, log=lines.append)
            assert all(": ok at " in line for line in lines), lines

        def verify() -> None:
            reports = verify_nodes(lock, comfy, dests=set())
            problems = [f.line() for r in reports for f in r.findings]
            assert not problems, problems[:5]

        rounds = args.rounds
        results: list[tuple[str, float]] = []
        status()  # git's first status writes the index's stat data: not what is timed
        ref_status = best_of(rounds, status)
        ref_hash = best_of(rounds, hash_objects)
        ref_sha = best_of(rounds, sha256)
        results.append(("install, nothing to do", best_of(rounds, noop_install)))
        results.append(("verify", best_of(rounds, verify)))
        compileall.compile_dir(
            str(comfy),
            quiet=1,
            workers=0,
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )
        pycs = sum(1 for _ in comfy.rglob("*.pyc"))
        results.append((f"install, nothing to do, + {pycs} .pyc", best_of(rounds, noop_install)))
        results.append((f"verify, + {pycs} .pyc", best_of(rounds, verify)))

    print(
        f"{len(checkouts)} checkouts, {len(files)} tracked files; bake from "
        f"{Path(bake.__file__).parent.parent}; "
        f"fresh install {fresh:.2f} s; best of {rounds}"
    )
    print(f"  reference git status (each checkout)   {ref_status:7.3f} s")
    print(f"  reference git hash-object (all files)  {ref_hash:7.3f} s")
    print(f"  reference sha256sum (all files)        {ref_sha:7.3f} s")
    for what, seconds in results:
        print(
            f"  {what:38s} {seconds:7.3f} s  {seconds / ref_status:5.2f}x git status  "
            f"{seconds / ref_hash:5.2f}x git hash-object  {seconds / ref_sha:5.2f}x sha256sum"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
