"""Text from ComfyUI's log made safe to pass through into the worker's log.

ComfyUI echoes job input (prompt text, file names) into its log. A carriage return or another
control character in such a value would let a job write what looks like a line of the
worker's own (`[worker] ... ERROR ...`) into a log viewer. So a carriage return (progress
bars redraw with it) starts a new line, which gets ComfyUI's prefix too, and every other
control character is shown escaped.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x80-\x9f\u2028\u2029]")


def printable(line: str) -> str:
    """`line` with control characters (all but tab; line breaks too) written as escapes,
    e.g. `\\r`: one line of log stays one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], line)


def log_lines(text: str) -> list[str]:
    """The lines to pass through for one line read from ComfyUI: split at carriage returns
    (each part gets the `[comfyui] ` prefix), empty parts dropped, escapes for the rest."""
    parts = text.rstrip("\n").replace("\r\n", "\n").replace("\n", "\r").split("\r")
    return [printable(part) for part in parts if part.strip()] or [""]


EXCERPT = 60


def excerpt(value: object, limit: int = EXCERPT) -> str:
    """`value` as an error quotes it: its repr, cut to `limit` characters with its length
    said, so an error never echoes a whole input back (a workflow sent as a 5 MB string)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str | bytes | list | dict) else len(text)
    return f"{text[:limit]}... ({size:,} long)"
