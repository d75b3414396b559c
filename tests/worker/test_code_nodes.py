"""The code-node audit: every eval/exec/compile/__import__/unpickling call in ComfyUI and the
locked custom nodes is listed in worker/policy/code.py, refused or explained.

The sources are read from COMFYUI_SRC: a folder holding `ComfyUI/` and `custom_nodes/` side by
side (CI points it at the real trees at the locked commits), or a ComfyUI folder with its
`custom_nodes/` inside. Without it the scan is skipped, except in CI (CI=true), where that is a
failure: a node update must not slip past unaudited.
"""

from __future__ import annotations

import ast
import os
import warnings
from pathlib import Path

import pytest

from bake.locks.classes import CLASSES_FILE, load_class_table
from worker.policy.code import CALL_SITES, CODE_NODES, HARMLESS

from .test_path_inputs import object_info

REPO = Path(__file__).resolve().parents[2]

NAMES = {"eval", "exec", "compile", "__import__"}
ATTRIBUTES = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("marshal", "loads"),
    ("torch", "load"),
    ("dill", "loads"),
    ("cloudpickle", "loads"),
    ("numexpr", "evaluate"),
    # the front of an interpreter of caller text (rgthree's Power Puter walks the tree with
    # getattr on any attribute, which reaches os as surely as eval)
    ("ast", "parse"),
}
NOT_NODE_CODE = {"tests", "tests-unit", ".ci", ".github"}


def code_call_sites(source: str) -> list[tuple[str, str]]:
    """(enclosing class.function, called name) of each code-running call in `source`."""
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                inner = [*scope, child.name]
            if isinstance(child, ast.Call):
                func = child.func
                called = None
                if isinstance(func, ast.Name) and func.id in NAMES:
                    called = func.id
                elif (
                    isinstance(func, ast.Attribute)
                    and isinstance(func.value, ast.Name)
                    and (func.value.id, func.attr) in ATTRIBUTES
                ):
                    called = f"{func.value.id}.{func.attr}"
                if called:
                    found.append((".".join(scope) or "<module>", called))
            visit(child, inner)

    with warnings.catch_warnings():  # old escape sequences in node code are not our business
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(source)
    visit(tree, [])
    return found


def source_trees() -> list[tuple[Path, str]]:
    """(directory, prefix of its files in CALL_SITES) for ComfyUI and the custom nodes."""
    raw = os.environ.get("COMFYUI_SRC", "").strip()
    if not raw:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("COMFYUI_SRC is not set: CI must audit the locked node sources")
        pytest.skip("COMFYUI_SRC is not set (the ComfyUI and custom node sources to audit)")
    root = Path(raw)
    comfy = root / "ComfyUI" if (root / "ComfyUI" / "main.py").is_file() else root
    nodes = root / "custom_nodes" if (root / "custom_nodes").is_dir() else comfy / "custom_nodes"
    if not (comfy / "main.py").is_file() or not nodes.is_dir():
        pytest.fail(f"COMFYUI_SRC={raw}: no ComfyUI (main.py) and custom_nodes/ there")
    return [(comfy, ""), (nodes, "custom_nodes/")]


def scan() -> dict[tuple[str, str], list[str]]:
    sites: dict[tuple[str, str], list[str]] = {}
    for tree, prefix in source_trees():
        for path in sorted(tree.rglob("*.py")):
            rel = path.relative_to(tree)
            if set(rel.parts) & NOT_NODE_CODE or (not prefix and rel.parts[0] == "custom_nodes"):
                continue
            try:
                calls = code_call_sites(path.read_text(encoding="utf-8", errors="replace"))
            except SyntaxError:
                continue  # Python cannot import it either
            for scope, called in calls:
                sites.setdefault((prefix + rel.as_posix(), scope), []).append(called)
    return sites


def test_every_code_running_call_in_the_locked_sources_is_audited():
    sites = scan()
    unlisted = [
        f"{f} {scope}: {', '.join(calls)}"
        for (f, scope), calls in sites.items()
        if (f, scope) not in CALL_SITES
    ]
    assert not unlisted, (
        "code-running calls that worker/policy/code.py does not list (add each to CALL_SITES, "
        "and its node classes to CODE_NODES unless it is harmless):\n" + "\n".join(unlisted)
    )
    stale = [f"{f} {scope}" for f, scope in CALL_SITES if (f, scope) not in sites]
    assert not stale, "CALL_SITES entries no longer found in the sources:\n" + "\n".join(stale)


def test_every_verdict_is_a_refused_class_or_a_reason():
    for site, verdict in CALL_SITES.items():
        if verdict.startswith(HARMLESS):
            assert len(verdict) > len(HARMLESS) + 10, site  # says why
        else:
            classes = [c.strip() for c in verdict.split(",")]
            assert all(c in CODE_NODES for c in classes), (site, verdict)
    refused_somewhere = {c.strip() for v in CALL_SITES.values() for c in v.split(",")}
    for class_type in CODE_NODES:
        assert class_type in refused_somewhere, f"{class_type}: no call site refers to it"


def test_every_refused_class_exists_in_the_locked_node_set():
    info = object_info()
    assert [c for c in CODE_NODES if c not in info] == []


def test_the_class_table_refuses_every_code_node_as_code():
    table = load_class_table(REPO / CLASSES_FILE)
    wrong = {
        c: str(table.verdict(c))
        for c in CODE_NODES
        if table.verdict(c) is None or table.verdict(c).reason != "code"
    }
    assert wrong == {}
