"""The import rules that keep bake's parts independent (README, Layout).

`locks/` is the lock model and knows no git and no download; `nodes/` and `models/` never import
each other; nothing in `bake/` imports the worker; `hashing`, `errors` and `progress` import
nothing of the project. A change that breaks one of these couples two parts: this test names it.
"""

from __future__ import annotations

import ast
from pathlib import Path

BAKE = Path(__file__).resolve().parents[1] / "bake"

# part -> project packages it must not import
FORBIDDEN = {
    "locks": ("bake.nodes", "bake.models", "bake.python", "worker"),
    "nodes": ("bake.models", "bake.python", "worker"),
    "models": ("bake.nodes", "bake.python", "worker"),
    "python": ("bake.nodes", "bake.models", "worker"),
    "hashing": ("bake", "worker"),
    "errors": ("bake", "worker"),
    "progress": ("bake", "worker"),
}


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def part_of(path: Path) -> str:
    rel = path.relative_to(BAKE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_bake_parts_keep_their_import_rules():
    broken = []
    for path in sorted(BAKE.rglob("*.py")):
        banned = FORBIDDEN.get(part_of(path), ("worker",))
        for module in sorted(imported_modules(path)):
            if any(module == b or module.startswith(b + ".") for b in banned):
                broken.append(f"{path.relative_to(BAKE.parent)} imports {module}")
    assert broken == []


def test_package_init_files_hold_no_logic():
    for init in BAKE.rglob("__init__.py"):
        body = [n for n in ast.parse(init.read_text()).body if not isinstance(n, ast.Expr)]
        assert body == [], f"{init.relative_to(BAKE.parent)} holds code"
