"""The peer API's listening socket (node/http/listener.py) on real sockets on 127.0.0.1: the
per-address cap holds before any TLS work and is released however a connection ends, a silent
connection holds no TLS state and is closed, strangers make room for each other and for peers but
never take a peer's place, an address opening connections too fast is refused, and a request sent
together with the last handshake message is served. (A failed accept() is tested black-box, under a
real file limit: tests/integration/test_http_abuse.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from keys.tls import make_certificate
from node.http.listener import GatedSite
from node.tls import NodeTls, unverified_client
from tests.conftest import NOW, fixed_identity

BOB, ALICE = fixed_identity("bob"), fixed_identity("alice")
CERTS = {id(w): make_certificate(w, now=NOW) for w in (BOB, ALICE)}


@contextlib.asynccontextmanager
async def gated(tmp_path: Path, **kw: Any) -> AsyncIterator[GatedSite]:
    """Bob's site serving one page, trusting Alice's certificate; ``kw`` overrides its bounds."""

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, keepalive_timeout=30)
    await runner.setup()
    tls = NodeTls(BOB, CERTS[id(BOB)], tmp_path)
    site = GatedSite(
        runner,
        "127.0.0.1",
        0,
        ssl_context=tls.server_context([CERTS[id(ALICE)]]),
        **{"max_per_address": 3, "handshake_timeout": 5, **kw},
    )
    await site.start()
    try:
        yield site
    finally:
        await runner.cleanup()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[GatedSite]:
    async with gated(tmp_path) as s:
        yield s


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


async def tls_open(port: int, context: ssl.SSLContext) -> tuple[asyncio.StreamReader, Any]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="")


async def until(cond: Callable[[], bool]) -> None:
    """Wait for ``cond`` (bounded: 10 s), not for a length of time."""
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def test_a_silent_connection_holds_no_tls_state_and_is_closed(tmp_path: Path) -> None:
    async with gated(tmp_path, handshake_timeout=0.5) as site:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(site))
        await until(lambda: len(site.silent) == 1)
        assert not site.tls  # no TLS object, no buffer, until it sends something
        assert await closed_by_server(reader)
        writer.close()
        await until(lambda: not site.open)


async def test_the_oldest_stranger_makes_room_never_a_peer(tmp_path: Path) -> None:
    """Two places in TLS: strangers evict each other, oldest first; a peer's connection takes a
    stranger's place, and when peers hold every place a stranger is turned away."""
    anon = unverified_client()
    async with gated(tmp_path, max_connections=2) as site:
        port = port_of(site)
        r1, w1 = await tls_open(port, anon)
        r2, w2 = await tls_open(port, anon)
        await until(lambda: len(site.tls) == 2)
        r3, w3 = await tls_open(port, anon)  # evicts the first
        assert await closed_by_server(r1)
        _peer_r, peer_w = await tls_open(port, client_context(tmp_path))  # evicts the second
        assert await closed_by_server(r2)
        _peer2_r, peer2_w = await tls_open(port, client_context(tmp_path))  # evicts the third
        assert await closed_by_server(r3)
        await until(lambda: len(site.tls) == 2 and all(site.authenticated(c) for c in site.tls))
        with pytest.raises((ConnectionError, ssl.SSLError)):
            r4, _w4 = await tls_open(port, anon)
            await r4.read(1)  # closed: no place, and no peer's place is taken
        assert site.evicted == 3
        for w in (w1, w2, w3, peer_w, peer2_w):
            w.close()


async def test_an_address_opening_connections_too_fast_is_refused(tmp_path: Path) -> None:
    async with gated(tmp_path, connect_rate=0.001, connect_burst=2) as site:
        port = port_of(site)
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(reader)
        assert site.refused == 1 and site.open == {"127.0.0.1": 2}
        for _r, w in (*held, (reader, writer)):
            w.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_evicted_connections_close_their_sockets(tmp_path: Path) -> None:
    """40 connections close at once (each EOF is a first byte, so each goes to TLS); with two
    places, most are evicted, some before their handshake task ran. Every server socket must be
    closed then, not left in CLOSE-WAIT until a garbage collection (the collector is off here)."""
    gc.disable()
    try:
        async with gated(tmp_path, max_per_address=100, max_connections=2) as site:
            site.max_silent = 100  # all 40 wait for their first byte
            baseline = open_fds()
            clients = [socket.create_connection(("127.0.0.1", port_of(site))) for _ in range(40)]
            await until(lambda: sum(site.open.values()) == 40)
            for c in clients:
                c.close()
            await until(lambda: not site.open and open_fds() == baseline)
            assert site.evicted > 0
    finally:
        gc.enable()


async def test_the_oldest_silent_connection_makes_room(tmp_path: Path) -> None:
    """Silent connections hold a descriptor each: past the silent bound the oldest is closed, so
    they cannot use up the file limit (found by an attack run at a hard limit of 1,024)."""
    async with gated(tmp_path, max_per_address=100) as site:
        site.max_silent = 3
        port = port_of(site)
        first = await asyncio.open_connection("127.0.0.1", port)
        others = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        assert await closed_by_server(first[0])
        await until(lambda: len(site.silent) == 3)
        for _r, w in (first, *others):
            w.close()


class _OutOfFiles:
    """The listening socket as it behaves when the process has no descriptor left (the stages'
    bounds keep the listener itself from getting there, so the condition is played here)."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real

    def fileno(self) -> int:
        return self.real.fileno()

    def accept(self) -> tuple[socket.socket, object]:
        raise OSError(errno.EMFILE, "Too many open files")


async def test_out_of_descriptors_pauses_accepting_with_one_line(tmp_path: Path) -> None:
    async with gated(tmp_path) as site:
        real = site._listener
        assert real is not None
        site._listener = _OutOfFiles(real)  # type: ignore[assignment]
        try:
            with capture_logs() as logs:
                for _ in range(100):
                    site._accept()
            assert site._paused is not None  # accepting resumes after a pause, no busy loop
            lines = [e for e in logs if e["event"] == "connection.accept_failed"]
            assert len(lines) == 1 and "exc_info" not in lines[0]
        finally:
            site._listener = real
