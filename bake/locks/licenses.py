"""What license a checked-out tree carries, read from its license file.

A license matters to whoever runs the image as a service: RES4LYF, for one, puts a clause in
front of the AGPL that forbids "providing a commercial service, such as an AI image generation
service" without its author's permission. So the license is recorded as found, never assumed:
an SPDX id where the file is a well-known license text, the terms added in front of it when
there are any, and the file's first lines when the text is not recognised.

Recognition is by each license's own title or opening words, not by a full-text comparison: it
names the license a reader would name; the added terms are what a reader must look at. A GPL
file does not say whether "or later" applies (that is in the source headers), so the family is
given as SPDX's plain ids (`GPL-3.0`, `AGPL-3.0`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Looked for at the tree's root, in this order; names compare without case.
LICENSE_FILES = (
    "LICENSE",
    "LICENSE.md",
    "LICENSE.txt",
    "LICENSE.rst",
    "LICENCE",
    "LICENCE.md",
    "LICENCE.txt",
    "COPYING",
    "COPYING.md",
    "COPYING.txt",
)
MAX_BYTES = 256 * 1024  # a license file larger than this is read only so far
FIRST_LINES = 5  # what is recorded of a text that is not recognised
MAX_TERMS = 400  # characters kept of added terms (the whole clause is in the file)

# (SPDX id, pattern of the license's title or opening words), matched on lower-case text with
# whitespace collapsed. The earliest match in the file wins: the AGPL and LGPL texts mention
# the GPL (and the GPL the AGPL) only further down.
_KNOWN = (
    ("AGPL-3.0", r"gnu affero general public(?: license)? version 3"),
    ("LGPL-3.0", r"gnu lesser general public license version 3"),
    ("LGPL-2.1", r"gnu lesser general public license version 2\.1"),
    ("GPL-3.0", r"gnu general public license version 3"),
    ("GPL-2.0", r"gnu general public license version 2"),
    ("Apache-2.0", r"apache license,? version 2\.0"),
    ("MPL-2.0", r"mozilla public license,? (?:version|v\.?) ?2\.0"),
    ("MIT", r"\bmit license\b|permission is hereby granted, free of charge"),
    ("BSD-3-Clause", r"redistribution and use in source and binary forms.{0,1200}neither the name"),
    ("BSD-2-Clause", r"redistribution and use in source and binary forms"),
    ("Unlicense", r"this is free and unencumbered software released into the public domain"),
)

# Terms that limit who may use the code or how: any commercial-use clause, "non-commercial".
_RESTRICTIVE = re.compile(r"(?<![a-z-])commercial|non-?commercial", re.IGNORECASE)


@dataclass(frozen=True)
class License:
    """A tree's license as its file states it. `file` is None when the tree has none."""

    file: str | None = None
    spdx: str | None = None
    # terms added to a recognised license (RES4LYF's commercial-service clause), whitespace
    # collapsed, or the clause of an unrecognised text that restricts commercial use
    restriction: str | None = None
    # the first lines of an unrecognised text
    text: str | None = None

    @property
    def restricted(self) -> bool:
        return self.restriction is not None

    def summary(self) -> str:
        """One line for messages: `MIT`, `AGPL-3.0 with added terms`, `unrecognised (...)`."""
        if self.file is None:
            return "no license file"
        name = self.spdx or f"unrecognised ({self.file})"
        return f"{name} with added terms" if self.restricted and self.spdx else name

    def to_dict(self) -> dict[str, Any]:
        data = {"file": self.file, "spdx": self.spdx, "restriction": self.restriction}
        data["text"] = self.text
        return {k: v for k, v in data.items() if v is not None}


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _cut(text: str, limit: int = MAX_TERMS) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _first_sentence(text: str) -> str:
    """The first sentence of the first paragraph: the clause itself, short enough for a lock
    line and a warning (the file holds the rest)."""
    for block in re.split(r"\n\s*\n", text):
        if block.strip():
            return re.split(r"(?<=\.)\s+", _collapse(block), maxsplit=1)[0]
    return ""


def classify(text: str, file: str = "LICENSE") -> License:
    """The license that `text` (the content of `file`) states. Pure."""
    flat = _collapse(text).lower()
    found: tuple[int, str] | None = None
    for spdx, pattern in _KNOWN:
        match = re.search(pattern, flat)
        if match and (found is None or match.start() < found[0]):
            found = (match.start(), spdx)
    if found is None:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        restriction = None
        sentences = (
            sentence
            for block in re.split(r"\n\s*\n", text)
            for sentence in re.split(r"(?<=[.;])\s+", _collapse(block))
        )
        restriction = next((_cut(s) for s in sentences if _RESTRICTIVE.search(s)), None)
        return License(file, None, restriction, "\n".join(lines[:FIRST_LINES]) or None)
    start, spdx = found
    # What comes before the license's title: a heading and copyright lines are normal; terms
    # that speak of commercial use are added restrictions (the collapsed text maps back to the
    # original by counting words).
    preamble_words = flat[:start].split()
    preamble = _original_prefix(text, len(preamble_words))
    restriction = None
    if _RESTRICTIVE.search(preamble):
        restriction = _cut(_first_sentence(preamble))
    return License(file, spdx, restriction, None)


def _original_prefix(text: str, words: int) -> str:
    """The start of `text` up to (not including) its `words`-th word, line breaks kept."""
    if words == 0:
        return ""
    matches = list(re.finditer(r"\S+", text))
    return text[: matches[words - 1].end()]


def license_file(root: Path) -> Path | None:
    """The license file at the root of a tree, or None."""
    try:
        names = {p.name.lower(): p for p in root.iterdir() if p.is_file() and not p.is_symlink()}
    except OSError:
        return None
    for candidate in LICENSE_FILES:
        if candidate.lower() in names:
            return names[candidate.lower()]
    return None


def read_license(root: Path) -> License:
    """The license of the tree at `root` (a checkout, or a folder of the image)."""
    path = license_file(root)
    if path is None:
        return License()
    with path.open("rb") as fh:
        data = fh.read(MAX_BYTES)
    return classify(data.decode("utf-8", errors="replace"), path.name)
