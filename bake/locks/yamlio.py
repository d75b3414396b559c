"""YAML in and out, the one way every lockfile uses.

Loading keeps values as written (an ISO date stays a string, not a datetime) and reports syntax
errors with their line. A lock must mean one thing to every reader, so loading refuses what YAML
allows but a reviewer reading a diff can miss: a key given twice in one mapping (PyYAML keeps
the last one silently), anchors and aliases (one edit changes text elsewhere) and merge keys
(`<<`, a mapping that inherits fields from another). Dumping is canonical: block style, no line
wrapping, keys in the order the caller built, so the same data always gives the same bytes.
"""

from __future__ import annotations

from typing import Any

import yaml

from bake.errors import LockError, Problem

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that a lock may not use; `problem_mark` is where it is."""


class _Loader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver (commit dates stay the strings git printed)
    that refuses duplicate keys, anchors, aliases and merge keys."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        # Checked on the event, before PyYAML resolves an alias to the node it names.
        event = self.peek_event()
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
        return super().compose_node(parent, index)

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


class _Dumper(yaml.SafeDumper):
    """Indents lists under their key, which is how people write YAML by hand."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


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
