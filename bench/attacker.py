"""The attacker of bench/under_attack.py, in a process of its own (so its CPU and its event loop
are not the measuring client's), driven over a pipe: one attack per command, until ``stop``.

Two attacks, both from addresses on 127.0.0.0/8 other than the measuring peer's:

- ``forge``: an anonymous caller (TLS without a client certificate) from 127.0.0.2 POSTs batches
  of envelopes that claim the trusted peer's node id, open loop at a fixed rate, over kept-alive
  connections (at most ``MAX_IN_FLIGHT`` requests at once). The answers are counted by status
  and reason; connections opened are counted, so a server that closes after each refusal shows.
- ``idle``: ``count`` TCP connections are opened and held without a byte sent (no TLS handshake),
  spread over 127.0.0.3, 127.0.0.4, ... so that no address holds more than ``per_address``. One
  the server closes is opened again (at most ``count`` times in all), so the count stays held.

Each attack is bounded by its own time limit and request or reconnect count, even if the
parent never says ``stop``.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

MAX_IN_FLIGHT = 64
POLL = 0.02  # seconds between looks at the pipe


def raise_nofile(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def _stopped(conn: Connection) -> bool:
    if conn.poll():
        return conn.recv() == "stop"
    return False


async def forge(conn: Connection, cmd: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    from node.tls import unverified_client
    from protocol.batch import BATCH_CONTENT_TYPE, BATCH_PATH, error_reason

    rate: float = cmd["rate"]
    bodies: list[bytes] = cmd["bodies"]
    answers: Counter[str] = Counter()
    connections = 0

    async def on_connection(*_args: Any) -> None:
        nonlocal connections
        connections += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_connection)
    connector = aiohttp.TCPConnector(
        ssl=unverified_client(), local_addr=(cmd["source"], 0), limit=MAX_IN_FLIGHT
    )
    url = cmd["url"] + BATCH_PATH
    headers = {"Content-Type": BATCH_CONTENT_TYPE}
    in_flight: set[asyncio.Task[None]] = set()

    async def one(i: int, session: aiohttp.ClientSession) -> None:
        try:
            async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as resp:
                body = await resp.read()
                answers[f"{resp.status} {error_reason(body)}"] += 1
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            answers[type(exc).__name__] += 1

    sent = skipped = 0
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, trace_configs=[trace]
    ) as session:
        conn.send("ready")
        t0 = time.monotonic()
        deadline = t0 + cmd["max_seconds"]
        next_poll = t0
        while sent + skipped < cmd["max_requests"] and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_poll:
                if _stopped(conn):
                    break
                next_poll = now + POLL
            due = t0 + (sent + skipped) / rate
            if due > now:
                await asyncio.sleep(min(due - now, POLL))
                continue
            if len(in_flight) >= MAX_IN_FLIGHT:  # the server is slower than the rate: skip one
                skipped += 1
                await asyncio.sleep(0)
                continue
            task = asyncio.ensure_future(one(sent, session))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            sent += 1
        seconds = time.monotonic() - t0
        if in_flight:
            await asyncio.wait(in_flight, timeout=10)
    return {
        "sent": sent,
        "skipped": skipped,
        "seconds": seconds,
        "answers": dict(answers),
        "connections": connections,
    }


class _Idle(asyncio.Protocol):
    def __init__(self, lost: asyncio.Queue[str]) -> None:
        self.lost = lost
        self.source = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.source = transport.get_extra_info("sockname")[0]

    def data_received(self, data: bytes) -> None:  # nothing is expected; ignore it
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.put_nowait(self.source)


async def idle(conn: Connection, cmd: dict[str, Any]) -> dict[str, Any]:
    count: int = cmd["count"]
    per: int = cmd["per_address"]
    host, port = cmd["host"], cmd["port"]
    limit = raise_nofile(count + 256)
    loop = asyncio.get_running_loop()
    lost: asyncio.Queue[str] = asyncio.Queue()
    transports: list[asyncio.BaseTransport] = []
    errors: Counter[str] = Counter()
    sources = [f"127.0.0.{3 + i // per}" for i in range(count)]

    async def open_one(source: str) -> bool:
        try:
            transport, _ = await loop.create_connection(
                lambda: _Idle(lost), host, port, local_addr=(source, 0)
            )
        except OSError as exc:
            errors[type(exc).__name__] += 1
            return False
        transports.append(transport)
        return True

    t_open = time.monotonic()
    opened = 0
    for lo in range(0, count, 100):  # a hundred connects at a time: no SYN flood of our own
        results = await asyncio.gather(*(open_one(s) for s in sources[lo : lo + 100]))
        opened += sum(results)
    open_s = time.monotonic() - t_open
    conn.send("ready")
    t0 = time.monotonic()
    deadline = t0 + cmd["max_seconds"]
    closed = reopened = 0
    closed_at: list[float] = []  # time.monotonic() (one clock for every process) of each close
    while time.monotonic() < deadline and not _stopped(conn):
        try:
            source = await asyncio.wait_for(lost.get(), timeout=POLL)
        except TimeoutError:
            continue
        closed += 1
        closed_at.append(time.monotonic())
        if cmd.get("reopen", True) and reopened < count and await open_one(source):
            reopened += 1
    seconds = time.monotonic() - t0
    for t in transports:
        t.close()
    await asyncio.sleep(0.05)
    return {
        "opened": opened,
        "open_seconds": open_s,
        "addresses": len(set(sources)),
        "closed_by_server": closed,
        "closed_between": (min(closed_at), max(closed_at)) if closed_at else None,
        "reopened": reopened,
        "errors": dict(errors),
        "seconds": seconds,
        "nofile": limit,
    }


def serve(conn: Connection) -> None:
    """The process's main: run each command received until ``quit`` (or the pipe closes)."""
    while True:
        try:
            cmd = conn.recv()
        except EOFError:
            return
        if cmd == "quit":
            return
        if cmd == "stop":  # a stop that arrived after an attack ended by itself
            continue
        attack = forge if cmd["mode"] == "forge" else idle
        conn.send(asyncio.run(attack(conn, cmd)))
