"""The peer API's listening socket: TLS, and what a connection may hold before it proves anything.

aiohttp's ``TCPSite`` starts TLS inside asyncio, where nothing sees a connection before its
handshake is done, so idle sockets could pile up to the file limit and starve real peers. Here each
accepted TCP connection is counted against its address (an IPv4 address or an IPv6 /64) before
any TLS work: over ``max_per_address`` it is closed at once. The handshake must finish within
``handshake_timeout``; then the connection is handed to aiohttp, whose keep-alive timer (armed
from the first byte, see ``RequestHandler.connection_made``) also closes a connection whose request
headers never complete. The count is released when the connection ends, however it ends.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

import structlog
from aiohttp import web

from node.ratelimit import source_key

log = structlog.get_logger("borderlink.listener")


class _Connection(asyncio.Protocol):
    """One accepted connection: counted, then TLS, then aiohttp's handler (which this object
    fronts for the rest of the connection's life, so its end is seen here too)."""

    def __init__(self, site: GatedSite) -> None:
        self.site = site
        self.key: str | None = None
        self.handler: asyncio.Protocol | None = None
        self.raw: asyncio.Transport | None = None
        self.tls: asyncio.Task[None] | None = None
        # Bytes the client sent with its last handshake message arrive before start_tls returns.
        self.early: list[bytes] = []
        self.early_eof = False

    # raw TCP ---------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        key = source_key(peer[0] if isinstance(peer, tuple) else None)
        if not self.site.admit(key):
            self.raw.abort()
            return
        self.key = key
        self.tls = asyncio.ensure_future(self._start_tls())

    async def _start_tls(self) -> None:
        assert self.raw is not None
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self.raw,
                self,
                self.site.ssl_context,
                server_side=True,
                ssl_handshake_timeout=self.site.handshake_timeout,
            )
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError, asyncio.CancelledError):
            self.raw.abort()
            self._release()
            return
        if transport is None:  # closed during the handshake
            self._release()
            return
        self.handler = self.site.handler_factory()
        self.handler.connection_made(transport)
        for data in self.early:
            self.handler.data_received(data)
        self.early.clear()
        if self.early_eof:
            self.handler.eof_received()

    # after the handshake, everything is the handler's -----------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.data_received(data)
        elif sum(map(len, self.early)) + len(data) <= 1 << 20:
            self.early.append(data)

    def eof_received(self) -> bool | None:
        if self.handler is None:
            self.early_eof = True
            return None
        return self.handler.eof_received()

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.tls is not None and not self.tls.done():
            self.tls.cancel()
        self._release()
        if self.handler is not None:
            self.handler.connection_lost(exc)

    def _release(self) -> None:
        if self.key is not None:
            self.site.release(self.key)
            self.key = None


class GatedSite(web.BaseSite):
    """A TCP site serving TLS, with a per-address connection cap (see the module docstring)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        max_per_address: int,
        handshake_timeout: float,
        backlog: int = 512,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.max_per_address = max_per_address
        self.handshake_timeout = handshake_timeout
        self.open: Counter[str] = Counter()
        self.refused = 0

    @property
    def handler_factory(self) -> Callable[[], asyncio.Protocol]:
        server = self._runner.server
        assert server is not None
        return cast(Callable[[], asyncio.Protocol], server)

    @property
    def name(self) -> str:
        return f"https://{self.host}:{self.port}"

    def admit(self, key: str) -> bool:
        if self.open[key] >= self.max_per_address:
            self.refused += 1
            if self.refused & (self.refused - 1) == 0:  # 1st, 2nd, 4th...: no log flood
                log.warning(
                    "connection.refused",
                    source=key,
                    reason=f"over {self.max_per_address} connections from one address",
                    refused_so_far=self.refused,
                )
            return False
        self.open[key] += 1
        return True

    def release(self, key: str) -> None:
        self.open[key] -= 1
        if self.open[key] <= 0:
            del self.open[key]

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, backlog=self._backlog
        )

    @property
    def sockets(self) -> list[Any]:
        server = self._server
        return list(getattr(server, "sockets", None) or [])


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Log a failed accept() (no file descriptors left, for instance) as one line, at most once
    per second, instead of asyncio's traceback per attempt (26 MB in 25 s under a socket flood)."""
    last = [float("-inf")]
    suppressed = [0]
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if "accept" not in message:
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        now = loop.time()
        if now - last[0] < 1.0:
            suppressed[0] += 1
            return
        exc = context.get("exception")
        log.warning(
            "connection.accept_failed",
            reason=getattr(exc, "strerror", None) or type(exc).__name__,
            suppressed=suppressed[0],
        )
        last[0], suppressed[0] = now, 0

    loop.set_exception_handler(handler)
