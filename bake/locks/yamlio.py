"""YAML in and out, the one way every lockfile uses.

Loading keeps values as written (an ISO date stays a string, not a datetime) and reports syntax
errors with their line. A lock must mean one thing to every reader, so loading refuses what YAML
allows but a reviewer reading a diff can miss: a key given twice in one mapping (PyYAML keeps
the last one silently), anchors and aliases (one edit changes text elsewhere), merge keys
(`<<`, a mapping that inherits fields from another), explicit tags (`!!int 1:30`), and plain
scalars that YAML 1.1 (PyYAML) and YAML 1.2 (most other readers) read differently, or that
are numbers in another base: `size: 1:30` is 90 to PyYAML and the text '1:30' to a 1.2 reader;
`017` is 15 to one and 17 to the other; `0o17`, `0b1`, `1_000`, `1e3` and `yes`/`no`/`on`/
`off`/`y`/`n` likewise; `0x10` is 16 to both, but no reviewer reads hex sizes. Each is refused
naming file, line and value, with the two spellings that mean one thing (quoted text, or a
decimal number or true/false). Nesting deeper than a lock ever needs is refused too, before
Python's recursion limit could turn it into a crash. Dumping is canonical: block style, no line
wrapping, keys in the order the caller built, so the same data always gives the same bytes;
a string that would read as one of the refused forms is written quoted.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from bake.errors import LockError, Problem

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
# What a plain scalar that is read differently by YAML 1.1 and 1.2 resolves to: loading it
# raises (its constructor below), dumping a string that would read so quotes it.
_AMBIGUOUS_TAG = "tag:comfy-bake,2026:ambiguous"
# A lock is five levels deep at most; 5,000 nested brackets would exhaust Python's recursion.
MAX_DEPTH = 64

# YAML 1.2's core schema, what a 1.2 reader (Go's yaml.v3, ruamel.yaml, js-yaml 4, ...) makes of
# a plain scalar.
_CORE = (
    (re.compile(r"null|Null|NULL|~|"), lambda t: None),
    (re.compile(r"true|True|TRUE|false|False|FALSE"), lambda t: t.lower() == "true"),
    (re.compile(r"[-+]?[0-9]+"), int),
    (re.compile(r"0o[0-7]+"), lambda t: int(t[2:], 8)),
    (re.compile(r"0x[0-9a-fA-F]+"), lambda t: int(t[2:], 16)),
    (re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"), float),
    (re.compile(r"[-+]?\.(?:inf|Inf|INF)"), lambda t: float(t.replace(".", "", 1))),
    (re.compile(r"\.(?:nan|NaN|NAN)"), lambda t: float("nan")),
)
# Booleans of the YAML 1.1 spec that PyYAML reads as text (other 1.1 readers do not).
_SHORT_BOOLS = frozenset({"y", "Y", "n", "N"})
_HEX = re.compile(r"[-+]?0x[0-9a-fA-F_]+")
_RESOLVER_11 = yaml.resolver.Resolver()
_CONSTRUCTOR_11 = yaml.constructor.SafeConstructor()
_SCALAR_TAGS = {f"tag:yaml.org,2002:{kind}" for kind in ("null", "bool", "int", "float", "str")}


def _reading_11(text: str) -> Any:
    """What PyYAML (YAML 1.1) makes of a plain scalar, as the lock loader would without this
    module's refusals (timestamps stay text)."""
    tag = _RESOLVER_11.resolve(yaml.ScalarNode, text, (True, False))
    if tag not in _SCALAR_TAGS:
        return text
    node = yaml.ScalarNode(tag, text)
    return _CONSTRUCTOR_11.yaml_constructors[tag](_CONSTRUCTOR_11, node)


def _reading_12(text: str) -> Any:
    for pattern, convert in _CORE:
        if pattern.fullmatch(text):
            return convert(text)
    return text


def _said(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    return f"the text {value!r}"


def _form(text: str) -> str:
    digits = text.lstrip("+-")
    if text in _SHORT_BOOLS or text.lower() in ("yes", "no", "on", "off"):
        return "a YAML 1.1 boolean word"
    if ":" in text:
        return "a base-60 (sexagesimal) number"
    if digits[:2] in ("0x", "0X"):
        return "a hexadecimal number"
    if digits[:2] in ("0o", "0O"):
        return "an octal number (YAML 1.2's notation)"
    if digits[:2] in ("0b", "0B"):
        return "a binary number"
    if "_" in text:
        return "a number with '_' separators"
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        return "a number with a leading zero (octal in YAML 1.1)"
    if "e" in text.lower():
        return "a number in exponent notation"
    return "a scalar YAML 1.1 and 1.2 read differently"


def ambiguity(text: str) -> str | None:
    """Why the plain (unquoted) scalar `text` is refused in a lock, or None when every reader
    takes it the same way."""
    if not text or not (text[0].isalnum() or text[0] in "+-.~"):
        return None  # no number, boolean or null of either version starts otherwise
    v11, v12 = _reading_11(text), _reading_12(text)
    same = (type(v11), repr(v11)) == (type(v12), repr(v12))
    if same and text not in _SHORT_BOOLS and not _HEX.fullmatch(text):
        return None
    if same:
        readings = f"YAML 1.1 and 1.2 read {_said(v11)}"
        if text in _SHORT_BOOLS:
            readings = f"PyYAML reads {_said(v11)}, the YAML 1.1 spec a boolean"
    else:
        readings = f"YAML 1.1 (PyYAML) reads {_said(v11)}, YAML 1.2 {_said(v12)}"
    numbers = sorted({v for v in (v11, v12) if isinstance(v, int) and not isinstance(v, bool)})
    if text in _SHORT_BOOLS or bool in (type(v11), type(v12)):
        fix = f"write true or false for a yes/no field, or quote it ('{text}') for the text"
    elif numbers:
        meant = " or ".join(str(n) for n in numbers)
        fix = f"write the number in plain decimal ({meant}), or quote it ('{text}') for the text"
    else:
        fix = f"quote it ('{text}') for the text, or write the number in plain decimal"
    return f"the plain value {text} is {_form(text)}: {readings}; a lock must mean one thing, {fix}"


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that a lock may not use; `problem_mark` is where it is."""


class _Loader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver (commit dates stay the strings git printed)
    that refuses duplicate keys, anchors, aliases and merge keys."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        # Checked on the event, before PyYAML resolves an alias to the node it names.
        event = self.peek_event()
        if self._depth >= MAX_DEPTH:
            raise _Refused(
                problem=f"nesting deeper than {MAX_DEPTH} levels refused (a lock is a few "
                "levels deep)",
                problem_mark=event.start_mark,
            )
        if getattr(event, "tag", None) is not None:
            raise _Refused(
                problem=f"explicit tag {event.tag.replace('tag:yaml.org,2002:', '!!')} "
                "refused: a lock's values are plain or quoted, and mean what they read as",
                problem_mark=event.start_mark,
            )
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(
                problem=f"alias *{event.anchor} refused: a lock spells every value out "
                "(no anchors or aliases)",
                problem_mark=event.start_mark,
            )
        if getattr(event, "anchor", None) is not None:
            raise _Refused(
                problem=f"anchor &{event.anchor} refused: a lock spells every value out "
                "(no anchors or aliases)",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0] and ambiguity(value) is not None:
            return _AMBIGUOUS_TAG
        return super().resolve(kind, value, implicit)

    def construct_ambiguous(self, node: yaml.ScalarNode) -> None:
        raise _Refused(problem=ambiguity(node.value), problem_mark=node.start_mark)

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    raise _Refused(
                        problem="merge key '<<' refused: write the fields of the entry out",
                        problem_mark=key_node.start_mark,
                    )
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: PyYAML's own error names it below
                    continue
                if first is not None:
                    raise _Refused(
                        problem=f"duplicate key {key!r} (first on line "
                        f"{first.start_mark.line + 1}): YAML would keep only the last one; "
                        "remove or rename one of them",
                        problem_mark=key_node.start_mark,
                    )
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_constructor(_AMBIGUOUS_TAG, _Loader.construct_ambiguous)


class _Dumper(yaml.SafeDumper):
    """Indents lists under their key, which is how people write YAML by hand."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        # A string that would load as a refused plain scalar is written quoted.
        if kind is yaml.ScalarNode and implicit[0] and ambiguity(value) is not None:
            return _AMBIGUOUS_TAG
        return super().resolve(kind, value, implicit)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def load_yaml(text: str, filename: str) -> Any:
    """Parse YAML text; a syntax error becomes a LockError naming the file and line."""
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except _Refused as exc:
        mark = exc.problem_mark
        raise LockError([Problem(filename, f"line {mark.line + 1}", exc.problem)]) from None
    except RecursionError:  # not reachable past MAX_DEPTH; kept so no input can crash
        raise LockError(
            [Problem(filename, "", "invalid YAML: nested too deeply to read")]
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise LockError([Problem(filename, where, f"invalid YAML: {problem}")]) from None


def dump_yaml(data: Any, header: str = "") -> str:
    """Serialise `data` canonically (the caller orders the keys)."""
    body = yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=10_000,
        indent=2,
    )
    return header + body
