"""``GET /v1/directory``: the signed directory this coordinator last published (PROTOCOL.md 13.8),
as ``borderlink peers publish-directory`` left it in the home. The directory carries its own
signature, so the route only serves the file; who may call is the peer API's rule (TLS).
"""

from __future__ import annotations

import asyncio
import pathlib

import msgspec
from aiohttp import web

from node.directory_ops import DIRECTORY_PATH, SERVED_NAME


def _read(path: pathlib.Path) -> str | None:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None


def not_found(message: str) -> web.Response:
    """``{"error": "not_found", "message": ...}`` with 404 (the reason is not a wire reason of
    node/http/responses.py, whose peer_error would answer it 400)."""
    body = msgspec.json.encode({"error": "not_found", "message": message})
    return web.Response(status=404, body=body, content_type="application/json")


def add_directory_route(app: web.Application, home_root: pathlib.Path) -> None:
    path = home_root / SERVED_NAME

    async def directory(_request: web.Request) -> web.Response:
        text = await asyncio.to_thread(_read, path)
        if text is None:
            return not_found("this node publishes no directory")
        return web.Response(text=text, content_type="text/plain")

    app.router.add_get(DIRECTORY_PATH, directory)
