"""URLs as messages show them: without user info, query string or fragment.

Credentials travel in URLs more often than anyone intends: `HF_ENDPOINT=https://user:token@host`,
a git remote with a token, a pre-signed S3 URL whose query is the signature. Libraries quote such
URLs whole in their errors. Every URL that reaches a message or a log line goes through
`redact_url`, and every library error text through `scrub`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """`url` without user info, query or fragment (scheme, host, port and path stay)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unparsable (a bad IPv6 literal): cut what may be secret by hand
        scheme, _, rest = url.partition("://")
        rest = re.split(r"[?#]", rest, maxsplit=1)[0]
        host, slash, path = rest.partition("/")
        return f"{scheme}://{host.rpartition('@')[2]}{slash}{path}"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def scrub(text: str) -> str:
    """`text` with every URL in it redacted (error messages of libraries quote URLs whole)."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)
