"""YAML in and out, the one way every lockfile uses.

Loading keeps values as written (an ISO date stays a string, not a datetime) and reports syntax
errors with their line. Dumping is canonical: block style, no line wrapping, keys in the order
the caller built, so the same data always gives the same bytes.
"""

from __future__ import annotations

from typing import Any

import yaml

from bake.errors import LockError, Problem


class _Loader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver: commit dates stay the strings git printed."""


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
