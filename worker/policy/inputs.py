"""Every input of every node checked against what its class declares, and made what it will be.

ComfyUI validates only what a class declares, and passes the rest on: a class whose declaration
accepts any key (VideoHelperSuite's `ContainsAll`) hands every extra key to its function. And
before a node runs, ComfyUI unwraps `{"__value__": X}` to X and converts declared INT, FLOAT,
STRING and BOOLEAN inputs (`int(X)`, `str(X)`, ...), so a check that reads the job's raw value
can see another value than the node gets.

So `normalise` builds the prompt the node will really get, and checks it, before any other
rule of the policy looks at it:
- a key the class does not declare is refused, except the extra keys a class's own reviewed
  rules declare (VideoHelperSuite's per-format widgets: `extra_inputs`), checked the same way;
- `{"__value__": X}` is unwrapped once, as ComfyUI does (a list stays wrapped: a bare list is a
  link), and the value converted as ComfyUI converts it; later checks see that value;
- INT and FLOAT must be numbers within the declared min and max; BOOLEAN a boolean; STRING a
  string (or a number, which becomes its text); a combo one of its options (read again from
  ComfyUI once when the cached ones lack it: model folders and uploads change);
- any other type takes a link, never a literal (a literal reaches a node that expects a tensor,
  a model or an any-type `*` value unchecked);
- a link must name a node of the prompt, and may not feed a combo (ComfyUI checks a combo's
  options only for literals: a linked combo is a name computed while the job runs).

Combo inputs that name a job's uploaded file (paths.FILE_NAMES, such as LoadImage.image) are
left to worker.policy.paths, which knows the job's uploads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from worker.log_text import excerpt

Declaration = list  # an /object_info input entry: [TYPE, {options}] or [[choices], {options}]
PRIMITIVE = ("INT", "FLOAT", "STRING", "BOOLEAN")
# ComfyUI walks a prompt's links recursively when it builds cache keys, for every node, even
# one that feeds no output: a chain of 1,500 nodes ended its prompt thread in RecursionError,
# and every later job waited for JOB_TIMEOUT. Real workflows are far below both bounds.
MAX_NODES = 1000
MAX_DEPTH = 200
# What a node of a prompt may carry besides its inputs: anything else (ComfyUI reads
# `is_changed` from the prompt in place of the class's IS_CHANGED) is dropped.
NODE_KEYS = ("class_type", "inputs", "_meta")


class InputError(ValueError):
    """An input that does not fit its class's declaration; the message names node and input."""


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def declared_inputs(info: Mapping[str, Any]) -> dict[str, Declaration]:
    """Input name -> declaration, required and optional, from a class's /object_info entry."""
    spec = info.get("input", {}) if isinstance(info, Mapping) else {}
    found: dict[str, Declaration] = {}
    for category in ("required", "optional"):
        for name, entry in (spec.get(category) or {}).items():
            if isinstance(entry, list) and entry:
                found[name] = entry
    return found


def check_shape(prompt: Mapping[str, Any]) -> None:
    """Refuse a prompt with more than MAX_NODES nodes, a cycle, or a chain of links deeper than
    MAX_DEPTH; walked without recursion."""
    if len(prompt) > MAX_NODES:
        raise InputError(f"the workflow has {len(prompt)} nodes, more than {MAX_NODES}")
    sources = {
        node_id: [str(v[0]) for v in node.get("inputs", {}).values() if is_link(v)]
        for node_id, node in prompt.items()
    }
    depth: dict[str, int] = {}
    for start in sources:
        stack = [(start, iter(sources[start]))]
        on_path = {start}
        while stack:
            node_id, pending = stack[-1]
            source = next(pending, None)
            if source is None:
                stack.pop()
                on_path.discard(node_id)
                depth[node_id] = 1 + max((depth.get(s, 0) for s in sources[node_id]), default=0)
                if depth[node_id] > MAX_DEPTH:
                    raise InputError(
                        f"node {node_id} ends a chain of links {depth[node_id]} nodes deep, "
                        f"deeper than {MAX_DEPTH}"
                    )
                continue
            if source in on_path:
                raise InputError(f"node {node_id} is fed by node {source}, which it feeds: a cycle")
            if source in depth or source not in sources:
                continue  # known, or not a node (refused with the input that names it)
            stack.append((source, iter(sources[source])))
            on_path.add(source)


def combo_options(entry: Declaration) -> list[Any] | None:
    """The options of a combo declaration, or None when it is not a combo."""
    if isinstance(entry[0], list):
        return entry[0]
    if entry[0] == "COMBO":
        extra = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
        return list(extra.get("options") or [])
    return None


def unwrap(value: Any) -> Any:
    """What ComfyUI hands the node for a literal: `{"__value__": X}` unwrapped once."""
    if isinstance(value, dict) and "__value__" in value:
        return value["__value__"]
    return value


class InputChecker:
    """Checks prompts against the declarations of ComfyUI's /object_info.

    `refresh(class_type)` reads one class's entry from ComfyUI again (a combo value the cached
    entry lacks may be a file that appeared since); `extra_inputs(class_type, inputs)` gives the
    extra keys a class's reviewed rules declare for these inputs (None: none)."""

    def __init__(
        self,
        object_info: Mapping[str, Any],
        *,
        refresh: Callable[[str], Mapping[str, Any] | None] = lambda _: None,
        extra_inputs: Callable[[str, Mapping[str, Any]], Mapping[str, Declaration] | None] = (
            lambda _c, _i: None
        ),
        file_names: frozenset[tuple[str, str]] = frozenset(),
    ):
        self.declared = {c: declared_inputs(i) for c, i in object_info.items()}
        self.refresh = refresh
        self.extra_inputs = extra_inputs
        self.file_names = file_names

    def normalise(self, prompt: dict[str, Any], titles: Mapping[str, str]) -> dict[str, Any]:
        """The prompt as its nodes will get it; raises InputError at the first input that does
        not fit its declaration."""
        check_shape(prompt)
        out: dict[str, Any] = {}
        for node_id, node in prompt.items():
            class_type = node["class_type"]
            title = f' "{titles[node_id]}"' if node_id in titles else ""
            where = f"node {node_id}{title} ({class_type})"
            if class_type not in self.declared:
                raise InputError(f"{where}: ComfyUI has no node class {class_type!r}")
            declared = self.declared[class_type]
            inputs = node.get("inputs", {})
            extras = self.extra_inputs(class_type, inputs) or {}
            fixed: dict[str, Any] = {}
            for name, raw in inputs.items():
                entry = declared.get(name) or extras.get(name)
                if entry is None:
                    known = ", ".join(sorted([*declared, *extras])) or "none"
                    raise InputError(
                        f"{where}, input {name!r}: the class does not declare it (its inputs: "
                        f"{known})"
                    )
                if name not in declared and isinstance(raw, list):
                    raise InputError(
                        f"{where}, input {name!r} is one of the class's extra settings: it takes "
                        "a value, not a link (a computed value cannot be checked)"
                    )
                fixed[name] = self._value(prompt, class_type, name, entry, raw, where)
            out[node_id] = {k: node[k] for k in NODE_KEYS if k in node} | {"inputs": fixed}
        return out

    def _value(
        self,
        prompt: Mapping[str, Any],
        class_type: str,
        name: str,
        entry: Declaration,
        raw: Any,
        where: str,
    ) -> Any:
        at = f"{where}, input {name!r}"
        options = combo_options(entry)
        if isinstance(raw, list):  # ComfyUI reads every bare list as a link
            if not is_link(raw) or str(raw[0]) not in prompt or raw[1] < 0:
                raise InputError(f"{at}: {excerpt(raw)} is not a link to a node of the prompt")
            if options is not None and (class_type, name) not in self.file_names:
                raise InputError(
                    f"{at} is a choice from a list and is fed by node {raw[0]}: a computed "
                    "choice cannot be checked before the job runs; set it as a literal value"
                )
            return [str(raw[0]), raw[1]]
        value = unwrap(raw)
        kind = entry[0]
        extra = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
        if options is not None:
            if (class_type, name) in self.file_names:
                if not isinstance(value, str):
                    raise InputError(
                        f"{at} names a file: expected a string, found {excerpt(value)}"
                    )
                return value
            return self._choice(class_type, name, options, value, at)
        if kind in ("INT", "FLOAT"):
            return _number(kind, value, extra, at)
        if kind == "BOOLEAN":
            if not isinstance(value, bool):
                raise InputError(f"{at}: expected true or false, found {excerpt(value)}")
            return value
        if kind == "STRING":
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise InputError(f"{at}: expected a string, found {excerpt(value)}")
            return str(value)
        raise InputError(
            f"{at} takes a connection from another node (type {excerpt(kind)}), not a value"
        )

    def _choice(self, class_type: str, name: str, options: list[Any], value: Any, at: str) -> Any:
        if not _one_of(value, options):
            fresh = self.refresh(class_type)
            entry = declared_inputs(fresh).get(name) if fresh else None
            now = combo_options(entry) if entry else None
            if now is not None:
                self.declared[class_type] = declared_inputs(fresh)
                options = now
        if not _one_of(value, options):
            shown = (
                ", ".join(map(repr, options[:8])) + (" ..." if len(options) > 8 else "")
                if options
                else "none"
            )
            raise InputError(f"{at}: {excerpt(value)} is not one of its options ({shown})")
        return value


def _one_of(value: Any, options: list[Any]) -> bool:
    """Whether `value` is one of `options`, of the same type (True is not 1)."""
    return any(type(option) is type(value) and option == value for option in options)


def _number(kind: str, value: Any, extra: Mapping[str, Any], at: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError(f"{at}: expected a number, found {excerpt(value)}")
    try:
        number = int(value) if kind == "INT" else float(value)  # as ComfyUI converts it
    except (ValueError, OverflowError):
        raise InputError(f"{at}: expected a number, found {excerpt(value)}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise InputError(f"{at}: expected a finite number, found {excerpt(value)}")
    low, high = extra.get("min"), extra.get("max")
    if isinstance(low, int | float) and number < low:
        raise InputError(f"{at}: {number} is below its minimum {low}")
    if isinstance(high, int | float) and number > high:
        raise InputError(f"{at}: {number} is above its maximum {high}")
    return number
