"""The peer API's listening socket: TLS, and what a connection may hold before it proves anything.

aiohttp's ``TCPSite`` starts TLS on every accepted connection at once: each one, even one that
never sends a byte, then holds asyncio's TLS state and its 256 KiB read buffer, so idle sockets
from a few hundred addresses could take gigabytes (and, before the file limit was raised, every
descriptor). Here a connection goes through three stages, each bounded:

1. **Accepted, silent.** This site accepts connections itself and only watches the socket: no TLS
   object, no buffer, no read. A connection is refused at once when its address (an IPv4
   address or an IPv6 /64) already holds ``max_per_address`` or opened more than its
   ``connect_rate`` allows; one that sends nothing within ``handshake_timeout`` is closed, and
   when a quarter of the file limit waits so, the oldest makes room.
2. **TLS.** On its first byte it is handed to asyncio's TLS, whose handshake must end within
   ``handshake_timeout``. At most ``max_connections`` connections are in this stage and the next
   at once; when a new one would exceed that, the oldest connection that is not from a trusted
   peer (judged against the peer table now, so a removed peer's connections count as strangers')
   is closed to make room, so a crowd of strangers evicts its own and never a peer's working
   connection; and one peer holds at most ``max_per_peer`` connections (its oldest make room).
3. **HTTP.** aiohttp's handler, whose keep-alive timer (armed when the handshake ends, see
   ``RequestHandler.connection_made``) also closes a connection whose request headers never
   complete.

Counts are released when a connection ends, however it ends. A failed accept() (no descriptor
left) pauses accepting for a second and is logged in one line, at most once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import resource
import socket
import ssl
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Container
from typing import Any, cast

import structlog
from aiohttp import web

from node.ratelimit import RateLimiter, sampled, source_key

log = structlog.get_logger("borderlink.listener")

_ACCEPTS_PER_WAKEUP = 64
_ACCEPT_PAUSE = 1.0  # seconds without accepting after the process ran out of descriptors
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class _Fronting(asyncio.Protocol):
    """Fronts aiohttp's handler for one connection's life: it gets every byte and flow-control
    call; a subclass sees the connection begin and end."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.handler = factory()

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return cast(bool | None, self.handler.eof_received())

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()


class _Tracked(_Fronting):
    """The application side of one TLS connection, so that its end (and whether it
    authenticated) is seen here."""

    def __init__(self, site: GatedSite, conn: _Conn) -> None:
        super().__init__(site.handler_factory)
        self.site, self.conn = site, conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        self.conn.certificate = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        self.handler.connection_made(transport)
        self.site._handshake_done(self.conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self.site._end(self.conn)
        self.handler.connection_lost(exc)


class _Conn:
    """One accepted connection, in whatever stage it is."""

    __slots__ = ("certificate", "counted", "key", "sock", "task", "timer", "transport")

    def __init__(self, sock: socket.socket, key: str) -> None:
        self.sock = sock
        self.key = key
        self.timer: asyncio.TimerHandle | None = None  # stage 1: closes a silent connection
        self.task: asyncio.Task[None] | None = None  # stage 2: the handshake
        self.transport: asyncio.BaseTransport | None = None  # stage 3
        self.certificate: bytes | None = None  # the client certificate TLS verified, if any
        self.counted = True  # holds a place in its address's count until released

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            cast(asyncio.Transport, self.transport).abort()
        elif self.task is not None:
            # A handshake cancelled mid-way closes its socket; one cancelled before it ran never
            # touched it (attack10: evicted sockets left in CLOSE-WAIT until a garbage
            # collection), so the socket is closed once the task is done, whichever it was.
            sock = self.sock
            self.task.add_done_callback(lambda _task: sock.close())
            self.task.cancel()
        else:
            self.sock.close()


class GatedSite(web.BaseSite):
    """A TCP site serving TLS behind the stages of the module docstring."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        max_per_address: int,
        handshake_timeout: float,
        max_connections: int = 512,
        connect_rate: float | None = None,
        connect_burst: int | None = None,
        peer_of: Callable[[bytes], str | None] | None = None,
        max_per_peer: int = 8,
        backlog: int = 512,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.max_per_address = max_per_address
        self.handshake_timeout = handshake_timeout
        self.connects = (
            RateLimiter(connect_rate, connect_burst or max(1, int(connect_rate)))
            if connect_rate is not None
            else None
        )
        self.monotonic = monotonic
        # Which trusted peer a verified client certificate is now (None: none, or one removed
        # since: the server's trust anchors only grow while it runs). Without it, any verified
        # certificate counts, keyed by itself.
        self.peer_of = peer_of or (lambda der: der.hex())
        self.max_per_peer = max_per_peer
        # Silent connections cost only a descriptor each, but descriptors run out: at most a
        # quarter of the file limit (and 4 x max_connections) wait for their first byte.
        # Neither do the TLS stage's: with the silent quarter, the listener keeps at most three
        # quarters of the file limit, the rest left to the database, the admin socket and the
        # node's own outbound connections.
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        files = soft if soft != resource.RLIM_INFINITY else 1 << 20
        self.max_silent = max(16, min(4 * max_connections, files // 4))
        self.max_connections = max(2, min(max_connections, files // 2))
        self.open: Counter[str] = Counter()  # connections per address, every stage
        self.silent: OrderedDict[_Conn, None] = OrderedDict()  # stage 1, oldest first
        self.tls: OrderedDict[_Conn, None] = OrderedDict()  # stages 2 and 3, oldest first
        self.refused = 0  # connections closed at accept
        self.evicted = 0  # connections closed to make room
        self._listener: socket.socket | None = None
        self._paused: asyncio.TimerHandle | None = None
        self._accept_failures = 0
        self._last_accept_log = float("-inf")

    @property
    def handler_factory(self) -> Callable[[], asyncio.Protocol]:
        server = self._runner.server
        assert server is not None
        return cast(Callable[[], asyncio.Protocol], server)

    @property
    def name(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def sockets(self) -> list[Any]:
        return [self._listener] if self._listener is not None else []

    async def start(self) -> None:
        await super().start()
        listener = _listening(self.host, self.port, self._backlog)
        self._listener = listener
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._paused is not None:
            self._paused.cancel()
        if self._listener is not None:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        for conn in list(self.silent):  # stage 3 connections end with the runner's handlers
            self._drop(conn)
        for conn in list(self.tls):
            if conn.transport is None:
                self._drop(conn)
        await super().stop()

    # stage 1 ----------------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._pause_accepting(exc)
                return  # ECONNABORTED and the like: that client is gone
            sock.setblocking(False)
            key = source_key(peer[0] if isinstance(peer, tuple) else None)
            if not self._admit(key):
                sock.close()
                continue
            if len(self.silent) >= self.max_silent:  # the oldest silent one makes room
                oldest = next(iter(self.silent))
                self._evicted(oldest, f"{self.max_silent} connections wait for a first byte")
                self._drop(oldest)
            conn = _Conn(sock, key)
            self.open[key] += 1
            self.silent[conn] = None
            loop.add_reader(sock.fileno(), self._first_byte, conn)
            conn.timer = loop.call_later(self.handshake_timeout, self._drop, conn)

    def _admit(self, key: str) -> bool:
        why = None
        if self.open[key] >= self.max_per_address:
            why = f"over {self.max_per_address} connections from one address"
        elif self.connects is not None and not self.connects.allow(key, self.monotonic()):
            why = "over its rate of new connections"
        if why is None:
            return True
        self.refused += 1
        if sampled(self.refused):  # no log flood
            log.warning("connection.refused", source=key, reason=why, refused_so_far=self.refused)
        return False

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of descriptors: stop accepting for a while rather than spin on accept()."""
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        loop.remove_reader(self._listener.fileno())
        if self._paused is not None:
            self._paused.cancel()
        self._paused = loop.call_later(_ACCEPT_PAUSE, self._resume_accepting)
        self._accept_failures += 1
        now = self.monotonic()
        if now - self._last_accept_log >= 1.0:
            log.warning(
                "connection.accept_failed",
                reason=exc.strerror or type(exc).__name__,
                suppressed=self._accept_failures - 1,
            )
            self._last_accept_log, self._accept_failures = now, 0

    def _resume_accepting(self) -> None:
        self._paused = None
        if self._listener is not None:
            asyncio.get_running_loop().add_reader(self._listener.fileno(), self._accept)

    # stage 2 ----------------------------------------------------------------------------------
    def _first_byte(self, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(conn.sock.fileno())
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        del self.silent[conn]
        if len(self.tls) >= self.max_connections and not self._evict_one():
            self._drop(conn)
            return
        self.tls[conn] = None
        conn.task = asyncio.ensure_future(self._handshake(conn))

    def authenticated(self, conn: _Conn) -> str | None:
        """The trusted peer ``conn`` is from, judged now (a peer removed since counts as none)."""
        return self.peer_of(conn.certificate) if conn.certificate is not None else None

    def _handshake_done(self, conn: _Conn) -> None:
        """A handshake ended: a peer holds at most ``max_per_peer`` connections, its oldest
        closed for a new one, so one peer's key cannot take every place."""
        peer = self.authenticated(conn)
        if peer is None:
            return
        mine = [c for c in self.tls if c.transport is not None and self.authenticated(c) == peer]
        for old in mine[: max(0, len(mine) - self.max_per_peer)]:
            self._drop(old)

    def _evict_one(self) -> bool:
        """Close the oldest TLS connection not from a trusted peer; False if all are."""
        for old in self.tls:
            if self.authenticated(old) is None:
                self._evicted(
                    old,
                    f"{self.max_connections} connections in TLS; the oldest not from a trusted "
                    "peer made room",
                )
                self._drop(old)
                return True
        return False

    def _evicted(self, conn: _Conn, why: str) -> None:
        self.evicted += 1
        if sampled(self.evicted):  # no log flood
            log.warning(
                "connection.evicted", source=conn.key, reason=why, evicted_so_far=self.evicted
            )

    async def _handshake(self, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: _Tracked(self, conn),
                conn.sock,
                ssl=self.ssl_context,
                ssl_handshake_timeout=self.handshake_timeout,
            )
        except (Exception, asyncio.CancelledError):  # a failed handshake ends the connection
            conn.sock.close()
            self._end(conn)

    # the end ----------------------------------------------------------------------------------
    def _drop(self, conn: _Conn) -> None:
        """Close ``conn`` now, whatever its stage."""
        if conn in self.silent:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(conn.sock.fileno())
        conn.close()
        if conn.transport is None:
            self._end(conn)  # stage 3 ends in _Tracked.connection_lost

    def _end(self, conn: _Conn) -> None:
        """Release ``conn``'s place (once, however many ways it ends)."""
        self.silent.pop(conn, None)
        self.tls.pop(conn, None)
        if conn.counted:
            conn.counted = False
            self.open[conn.key] -= 1
            if self.open[conn.key] <= 0:
                del self.open[conn.key]


def _listening(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking listening socket on the first address ``host`` names."""
    family, *_rest, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.create_server(address[:2], family=family, backlog=backlog)
    listener.setblocking(False)
    return listener


ACCEPT_BURST = 8  # a CappedSite's listen backlog, and so its accepts per loop turn


class CappedSite(web.TCPSite):
    """Plain TCP for a local listener (the dashboard on 127.0.0.1): at most ``max_connections``
    at once, the oldest not in ``kept`` closed to make room for a new one. Without a cap, idle sockets from any
    local process took every descriptor the node had, so the peer API and the admin socket
    stopped answering (attack review F3: 627 idle connections against a limit of 512). The
    runner's keep-alive timeout closes a connection that sends no request."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        max_connections: int = 64,
        kept: Container[object] = frozenset(),
    ) -> None:
        super().__init__(runner, host, port)
        self.max_connections = max_connections
        self.live: OrderedDict[_Capped, None] = OrderedDict()
        # Transports the app serves a signed-in stream on: never closed to make room (else the
        # oldest connection, always the operator's live page, was the one closed).
        self.kept = kept
        self.evicted = 0

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; the server is made here
        server = self._runner.server
        assert server is not None
        listening = _listening(self._host or "127.0.0.1", self._port or 0, self._backlog)
        # asyncio accepts up to ``backlog`` sockets per loop turn and closes an evicted one
        # three turns later, so that number bounds how far past the cap the count runs: at
        # aiohttp's 128, a loaded loop reached the node's whole file limit of 160 (CI, issue
        # 11). It serves with a small one; the kernel's queue, which costs the node no
        # descriptor, is set back to the full backlog so connecting is not slowed.
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Capped(self, server), sock=listening, backlog=ACCEPT_BURST
        )
        listening.listen(self._backlog)

    def _opened(self, conn: _Capped) -> None:
        self.live[conn] = None
        while len(self.live) > self.max_connections:
            oldest = next((c for c in self.live if c.transport not in self.kept), conn)
            del self.live[oldest]
            self.evicted += 1
            if sampled(self.evicted):
                log.warning(
                    "connection.evicted",
                    reason=f"{self.max_connections} connections open; the oldest not serving "
                    "a live stream made room",
                    evicted_so_far=self.evicted,
                )
            oldest.abort()


class _Capped(_Fronting):
    """One connection of a :class:`CappedSite`, counted while it lives."""

    def __init__(self, site: CappedSite, factory: Callable[[], Any]) -> None:
        super().__init__(factory)
        self.site = site
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.handler.connection_made(transport)
        self.site._opened(self)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.site.live.pop(self, None)
        self.handler.connection_lost(exc)
