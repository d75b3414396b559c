"""Run ComfyUI's main.py and, when it exits, record the node classes it registered.

    python classes_probe.py OUT.json main.py --cpu --quick-test-for-ci

Run by `bake nodes smoke` in ComfyUI's interpreter, in place of `python main.py`: ComfyUI's
quick test loads ComfyUI's own nodes and every custom node, then exits; an exit handler writes
`{class name: the module that registered it}` (`custom_nodes.<folder>`, `comfy_extras.<name>`,
`nodes`, ... as /object_info's `python_module` says it) to OUT.json. The class list is what the
image holds; `smoke` compares it with node-classes.yaml. It imports nothing of bake.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import sys


def _record(out: str) -> None:
    mappings = getattr(sys.modules.get("nodes"), "NODE_CLASS_MAPPINGS", None)
    if not mappings:
        return  # ComfyUI stopped before its nodes were loaded: no list, smoke says so
    found = {
        name: getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes") for name, cls in mappings.items()
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(dict(sorted(found.items())), f, indent=1)
        f.write("\n")


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: classes_probe.py OUT.json MAIN_PY [ARGS...]")
    out, script = os.path.abspath(argv[0]), os.path.abspath(argv[1])
    atexit.register(_record, out)
    sys.path[0] = os.path.dirname(script)  # as `python main.py` has it
    sys.argv = [script, *argv[2:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
