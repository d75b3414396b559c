"""ComfyUI's HTTP API answers only the worker: run ComfyUI's main.py behind a per-boot key.

    $COMFYUI_PYTHON api_guard.py /comfyui/main.py --listen 127.0.0.1 --port 8188 ...

This file runs in ComfyUI's interpreter, in place of `python main.py`: it reads the key the
worker made at boot from a pipe (the descriptor named by COMFY_BAKE_API_KEY_FD, closed once
read, so neither ComfyUI's environment nor a child it starts ever holds the key), adds one
aiohttp middleware to the application ComfyUI's server builds, then runs main.py as
`__main__`, as `python main.py` would. Every route (prompts, history, uploads, files, the
websocket, the front end) then needs `Authorization: Bearer <key>`; anything else gets 403.
So nothing running inside ComfyUI or beside it (ffmpeg told to POST to ComfyUI's port, another
process in the container) can queue a prompt, read history or files, or upload.

Why a launcher and not a custom node: a node folder would be a tenth tree in custom_nodes/,
outside the lock that `nodes verify` checks every tree against; this file is the worker's own
code, read-only like the rest of it. It imports nothing of the worker (ComfyUI's interpreter may
not have the worker installed).

Without COMFY_BAKE_API_KEY_FD (pod mode: the open UI), ComfyUI runs unguarded, as documented.
"""

from __future__ import annotations

import hmac
import json
import os
import runpy
import sys

KEY_FD_ENV = "COMFY_BAKE_API_KEY_FD"
HEADER = "Authorization"
MAX_KEY = 256


def read_key(env: dict[str, str] | os._Environ[str]) -> bytes | None:
    """The key from the descriptor the worker passed, which is closed; None when none was."""
    raw = env.pop(KEY_FD_ENV, None)
    if raw is None:
        return None
    fd = int(raw)
    try:
        key = os.read(fd, MAX_KEY + 1).strip()
    finally:
        os.close(fd)
    if not key or len(key) > MAX_KEY:
        raise SystemExit(f"api_guard: the key on descriptor {fd} is empty or too long")
    return key


def middleware(key: bytes):
    """An aiohttp middleware that lets through only requests that carry the key."""
    from aiohttp import web

    expected = b"Bearer " + key

    @web.middleware
    async def require_key(request, handler):
        given = request.headers.get(HEADER, "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, expected):
            return web.Response(
                status=403,
                text=json.dumps({"error": "ComfyUI answers only the worker on this endpoint"}),
                content_type="application/json",
            )
        return await handler(request)

    return require_key


def guard_applications(key: bytes) -> None:
    """Every aiohttp application built from now on starts with the key check (ComfyUI's
    server builds one; a node's own application would be guarded too)."""
    from aiohttp import web

    original = web.Application.__init__
    check = middleware(key)

    def __init__(self, *args, middlewares=(), **kwargs):
        original(self, *args, middlewares=[check, *middlewares], **kwargs)

    web.Application.__init__ = __init__


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: api_guard.py MAIN_PY [ARGS...]")
    script = os.path.abspath(argv[0])
    key = read_key(os.environ)
    if key is not None:
        guard_applications(key)
    # As `python main.py` would have it: the script's folder first on the path (not this
    # file's), the script and its arguments as argv.
    sys.path[0] = os.path.dirname(script)
    sys.argv = [script, *argv[1:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
