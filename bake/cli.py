"""`python -m bake`: the commands the Dockerfile, CI, the worker and the tests all call.

The parsers live here so the public interface reads in one place; each command's work lives in
the module named for it and is imported only when that command runs (a worker that only verifies
models never imports git or uv code).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bake.errors import BakeError

# command name -> "module:function"; the function takes the parsed args and returns an exit code.
HANDLERS = {
    "check": "bake.check:cli",
    "nodes install": "bake.nodes.install:cli",
    "nodes verify": "bake.nodes.verify:cli",
    "nodes smoke": "bake.nodes.smoke:cli",
    "models fetch": "bake.models.fetch:cli",
    "models verify": "bake.models.verify:cli",
    "python verify": "bake.python.verify:cli",
    "build sageattention": "bake.nodes.sagebuild:cli",
    "provenance": "bake.provenance:cli",
}


def _lock_arg(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument(
        "--lock",
        type=Path,
        metavar="FILE",
        help=f"the {kind} to read (default: the one at the repository root)",
    )


def _models_lock_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models-lock",
        type=Path,
        metavar="FILE",
        help="the models lock whose destinations may lie in the tree (default: the one at the "
        "repository root)",
    )


def _comfyui_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--comfyui-dir",
        type=Path,
        default=Path(os.environ.get("COMFYUI_DIR", "/comfyui")),
        metavar="DIR",
        help="the ComfyUI root (default: $COMFYUI_DIR or /comfyui)",
    )


def _volume_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--volume-dir",
        type=Path,
        action="append",
        default=None,
        metavar="DIR",
        help="a network-volume root whose models/ folder is searched too (repeatable; "
        "default: /workspace and /runpod-volume when present)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bake",
        description="Pin, fetch and verify everything a ComfyUI worker image is built from.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check",
        help="static checks of the three locks (no network)",
        description="Validate nodes.lock.yaml, models.lock.yaml and requirements.lock, or the "
        "one file given with --lock. Unlocked entries are warnings unless --strict.",
    )
    _lock_arg(check, "lockfile (kind taken from its name or content)")
    check.add_argument(
        "--strict", action="store_true", help="treat entries without a `locked` pin as errors"
    )
    check.set_defaults(handler="check")

    nodes = sub.add_parser("nodes", help="ComfyUI and custom nodes at their locked commits")
    nodes_sub = nodes.add_subparsers(dest="action", required=True, metavar="ACTION")
    install = nodes_sub.add_parser(
        "install",
        help="install ComfyUI and every custom node at its locked commit, verified",
        description="Put ComfyUI at DIR and each custom node at DIR/custom_nodes/NAME, each at "
        "its locked commit, and make each folder hold exactly its commit's files: what else is "
        "there is removed (and named), except models-lock destinations, the build's own "
        "byte-code and data the entry's .gitignore ignores. Re-running is a no-op when "
        "everything matches and repairs what does not.",
    )
    _comfyui_dir_arg(install)
    _lock_arg(install, "nodes lock")
    _models_lock_arg(install)
    install.set_defaults(handler="nodes install")
    nverify = nodes_sub.add_parser(
        "verify",
        help="check, read-only, that ComfyUI and every custom node hold exactly their commits",
        description="Compare ComfyUI's tree and every custom-node folder with the objects of "
        "their locked commits (nothing kept inside the tree is trusted) and exit 1 naming each "
        "unexpected, missing or changed path. Accepted beside the commit's files: models-lock "
        "destinations, byte-code equal to the compile of the tracked source, and non-code data "
        "that the entry's committed .gitignore ignores.",
    )
    _comfyui_dir_arg(nverify)
    _lock_arg(nverify, "nodes lock")
    _models_lock_arg(nverify)
    nverify.set_defaults(handler="nodes verify")
    nsmoke = nodes_sub.add_parser(
        "smoke",
        help="start ComfyUI once (main.py --cpu --quick-test-for-ci) and prove every node imports",
        description="Run ComfyUI's main.py --cpu --quick-test-for-ci in DIR with this "
        "interpreter (it loads every node and exits) and exit 1 naming each locked custom node "
        "that did not import, and each of ComfyUI's own nodes that failed. Leaves the files "
        "nodes write at first start; writes no byte-code.",
    )
    _comfyui_dir_arg(nsmoke)
    _lock_arg(nsmoke, "nodes lock")
    nsmoke.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="how long the start may take (default: 900)",
    )
    nsmoke.add_argument(
        "--record",
        metavar="FILE",
        help="write the node classes ComfyUI registered (name -> module) to FILE as JSON",
    )
    nsmoke.set_defaults(handler="nodes smoke")

    models = sub.add_parser("models", help="model files: fetch and verify by hash")
    models_sub = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = models_sub.add_parser(
        "fetch",
        help="download every locked model of a placement, verified, atomically",
        description="Download each locked model of the placement to a temporary file beside its "
        "destination, verify size and hashes, and rename it into place. Files already present "
        "and valid are skipped. Safe to run from several processes at once.",
    )
    _comfyui_dir_arg(fetch)
    fetch.add_argument(
        "--placement",
        choices=("image", "volume", "all"),
        default="all",
        help="which entries to fetch (default: all)",
    )
    _volume_dir_arg(fetch)
    _lock_arg(fetch, "models lock")
    fetch.add_argument(
        "--name",
        dest="names",
        action="append",
        default=[],
        metavar="NAME",
        help="only this entry (repeatable; the image fetches one model per layer this way)",
    )
    fetch.add_argument(
        "--jobs", type=int, default=None, metavar="N", help="concurrent downloads (default: 4)"
    )
    fetch.set_defaults(handler="models fetch")

    verify = models_sub.add_parser(
        "verify",
        help="hash every locked model present in the search paths",
        description="Hash every locked model file found in the search paths (blake3, memory "
        "mapped, all cores) and report missing, wrong-size and wrong-hash files.",
    )
    _comfyui_dir_arg(verify)
    _volume_dir_arg(verify)
    _lock_arg(verify, "models lock")
    verify.add_argument(
        "--mode",
        choices=("full", "fast"),
        default="full",
        help="full re-hashes every file; fast trusts the stamp of files whose identity "
        "(size, mtime, inode) is unchanged (default: full)",
    )
    verify.add_argument(
        "--placement",
        choices=("image", "volume", "all"),
        default="all",
        help="which entries must be present (default: all)",
    )
    verify.set_defaults(handler="models verify")

    python = sub.add_parser("python", help="the Python environment against requirements.lock")
    python_sub = python.add_subparsers(dest="action", required=True, metavar="ACTION")
    pyverify = python_sub.add_parser(
        "verify",
        help="check a virtual environment, file by file, against requirements.lock",
        description="Every file of the venv must belong to a wheel requirements.lock pins at "
        "that version (its RECORD's sha256) or be byte-code compiled from such a file; the venv "
        "is read as files, its interpreter is not run. Then, when every file passed, torch's "
        "CUDA version and compiled arch list. Run it with a Python outside the venv "
        "(python3.12 -E -s -B -m bake python verify --prefix /opt/venv).",
    )
    _lock_arg(pyverify, "requirements lock")
    pyverify.add_argument(
        "--allow-extra",
        action="append",
        default=[],
        metavar="NAME",
        help="a distribution allowed beside the lock (repeatable; our own project and "
        "sageattention are always allowed)",
    )
    where = pyverify.add_mutually_exclusive_group()
    where.add_argument(
        "--prefix",
        type=Path,
        metavar="DIR",
        help="the venv to check: its folder, holding pyvenv.cfg (default: the venv of the "
        "running interpreter)",
    )
    where.add_argument(
        "--python",
        metavar="PATH",
        help="the venv to check, named by its interpreter (DIR/bin/python); the path is read, "
        "the interpreter is not run",
    )
    pyverify.add_argument(
        "--reference",
        type=Path,
        metavar="DIR",
        help="a copy of the same venv as installed, before anything else ran (the image "
        "bind-mounts its earlier stage): every RECORD must be byte for byte its copy's, so a "
        "RECORD rewritten together with the files it hashes is found",
    )
    pyverify.set_defaults(handler="python verify")

    build = sub.add_parser("build", help="source builds pinned in nodes.lock.yaml")
    build_sub = build.add_subparsers(dest="action", required=True, metavar="TARGET")
    sage = build_sub.add_parser(
        "sageattention",
        help="build the pinned SageAttention source into a wheel",
        description="Fetch the locked rev of source_builds.sageattention and build a wheel with "
        "its env (TORCH_CUDA_ARCH_LIST) and --no-build-isolation.",
    )
    sage.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the wheel goes")
    _lock_arg(sage, "nodes lock")
    sage.set_defaults(handler="build sageattention")

    prov = sub.add_parser(
        "provenance",
        help="write the image's provenance record: every input, with its hash",
        description="Write one canonical JSON document naming every input of the image with "
        "its hash: base image digests (the Dockerfile's FROM lines), the apt snapshot and the "
        "packages pinned outside it, every wheel of requirements.lock, the SageAttention wheel "
        "built, ComfyUI and each node (rev, tree, and the license found in DIR), each model "
        "(size, sha256, blake3, placement) and the repository commit. The same inputs give the "
        "same bytes. Reads the locks at the repository root.",
    )
    prov.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="where the document goes"
    )
    _comfyui_dir_arg(prov)
    prov.add_argument(
        "--sage-wheels",
        type=Path,
        metavar="DIR",
        help="the folder holding the one SageAttention wheel the image installed (without it "
        "the document records no wheel)",
    )
    prov.add_argument(
        "--commit",
        default=os.environ.get("BAKE_COMMIT") or None,
        metavar="SHA",
        help="the repository commit built (default: $BAKE_COMMIT, the Dockerfile's build argument)",
    )
    prov.add_argument(
        "--dockerfile",
        type=Path,
        metavar="FILE",
        help="the Dockerfile whose FROM lines name the base images (default: the one at the "
        "repository root)",
    )
    prov.set_defaults(handler="provenance")
    return parser


def run_handler(name: str, args: argparse.Namespace) -> int:
    module_name, _, func_name = HANDLERS[name].partition(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_handler(args.handler, args)
    except BakeError as exc:
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unforeseen failure: one line; the traceback on demand
        if os.environ.get("BAKE_TRACEBACK"):
            raise
        print(
            f"error: {args.handler}: unexpected {type(exc).__name__}: {exc} "
            "(set BAKE_TRACEBACK=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
