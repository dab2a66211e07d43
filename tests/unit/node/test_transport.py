"""HttpTransport against a real aiohttp server on 127.0.0.1 that answers too much."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from node.transport import (
    BATCH_CONTENT_TYPE,
    BATCH_PATH,
    MAX_BATCH_RESPONSE,
    DeliveryFailed,
    HttpTransport,
)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_transport_read_a_batch_answer_of_any_size(declared: bool) -> None:
    """Bug 4: post_batch read the whole answer, so a 400 MB answer cost 1.3 GB of memory."""
    sent = [0]

    async def huge(request: web.Request) -> web.StreamResponse:
        await request.read()
        if declared:
            body = b"\0" * (MAX_BATCH_RESPONSE + 1)
            return web.Response(body=body, content_type=BATCH_CONTENT_TYPE)
        resp = web.StreamResponse()
        resp.content_type = BATCH_CONTENT_TYPE
        await resp.prepare(request)
        try:
            for _ in range(256):
                await resp.write(b"\0" * 2**20)
                sent[0] += 2**20
        except ConnectionError:
            pass
        return resp

    app = web.Application()
    app.router.add_post(BATCH_PATH, huge)
    transport = HttpTransport(timeout=10)
    try:
        async with TestServer(app) as server:
            endpoint = str(server.make_url(""))
            with pytest.raises(DeliveryFailed, match="answered with more than 4 MiB") as caught:
                await transport.post_batch("bob", endpoint, bytes(32), b"batch")
    finally:
        await transport.close()
    assert str(caught.value).startswith("bob at 127.0.0.1:")
    assert sent[0] < 64 * 2**20


async def test_transport_returns_an_answer_within_the_limit() -> None:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"receipts", content_type=BATCH_CONTENT_TYPE)

    app = web.Application()
    app.router.add_post(BATCH_PATH, ok)
    transport = HttpTransport(timeout=10)
    try:
        async with TestServer(app) as server:
            got = await transport.post_batch("bob", str(server.make_url("")), bytes(32), b"x")
    finally:
        await transport.close()
    assert got == (200, BATCH_CONTENT_TYPE, b"receipts")
