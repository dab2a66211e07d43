"""The peer API's listening socket (node/http/listener.py) on real sockets on 127.0.0.1: the
per-address cap holds before any TLS work and is released however a connection ends, a request
sent together with the last handshake message is served, and a failed accept() is one log line
per second, not a traceback per attempt."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from keys.tls import make_certificate
from node.http.listener import GatedSite, quiet_accept_errors
from node.tls import NodeTls
from tests.conftest import NOW, fixed_identity

BOB, ALICE = fixed_identity("bob"), fixed_identity("alice")
CERTS = {id(w): make_certificate(w, now=NOW) for w in (BOB, ALICE)}


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[GatedSite]:
    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, keepalive_timeout=30)
    await runner.setup()
    tls = NodeTls(BOB, CERTS[id(BOB)], tmp_path)
    gated = GatedSite(
        runner,
        "127.0.0.1",
        0,
        ssl_context=tls.server_context([CERTS[id(ALICE)]]),
        max_per_address=3,
        handshake_timeout=5,
    )
    await gated.start()
    yield gated
    await runner.cleanup()


def port_of(site: GatedSite) -> int:
    return int(site.sockets[0].getsockname()[1])


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True if the server ends the connection (EOF or reset); a bounded wait, not a timing."""
    try:
        return await asyncio.wait_for(reader.read(1), timeout=10) == b""
    except ConnectionError:
        return True


def client_context(tmp_path: Path) -> ssl.SSLContext:
    return NodeTls(ALICE, CERTS[id(ALICE)], tmp_path).client_context(CERTS[id(BOB)])


async def get(port: int, context: ssl.SSLContext) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=""
    )
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return data


async def test_connections_over_the_cap_are_closed_before_tls(
    site: GatedSite, tmp_path: Path
) -> None:
    port = port_of(site)
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await closed_by_server(reader)  # the fourth: refused at once, no handshake
    writer.close()
    assert site.open == {"127.0.0.1": 3} and site.refused == 1
    # A real request is refused too while three idle sockets hold the address's share...
    with pytest.raises((ConnectionError, ssl.SSLError)):
        await get(port, client_context(tmp_path))
    # ...and served once one of them goes away: its count was released.
    _r, w = idle.pop()
    w.close()
    for _ in range(200):
        if site.open.get("127.0.0.1") == 2:
            break
        await asyncio.sleep(0.01)
    assert b"hello" in await get(port, client_context(tmp_path))
    for _r, w in idle:
        w.close()


async def test_a_request_sent_with_the_handshake_is_served(site: GatedSite, tmp_path: Path) -> None:
    """TLS 1.3 lets the client send its request right behind its Finished message; those bytes
    reach the connection before the handshake coroutine returns and must not be lost."""
    for _ in range(20):
        assert b"hello" in await get(port_of(site), client_context(tmp_path))
    for _ in range(200):
        if not site.open:
            break
        await asyncio.sleep(0.01)
    assert site.open == {}  # every count released when its connection ended


async def test_a_failed_accept_is_one_line_per_second_without_a_traceback() -> None:
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    quiet_accept_errors(loop)
    try:
        with capture_logs() as logs:
            for _ in range(1000):
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(24, "Too many open files"),
                    }
                )
        accept_lines = [e for e in logs if e["event"] == "connection.accept_failed"]
        assert len(accept_lines) == 1
        assert "exc_info" not in accept_lines[0]
    finally:
        loop.set_exception_handler(previous)
