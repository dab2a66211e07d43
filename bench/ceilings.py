"""Ceilings and floors measured in the run that judges against them (issue 12's aims).

- Crypto: the per-message work (seal, open, receipt sign, receipt verify) timed in this process
  alone (one core), and in one process per usable core at once (``os.sched_getaffinity``),
  started together behind a barrier: the both-cores ceiling is the sum of their rates, so a
  core shared with a neighbour, or two hyperthreads, lower it as they lower the node.
- One fsync'd SQLite commit (WAL, ``synchronous=FULL``, as node/storage/sqlite.py opens it).
- One aiohttp round trip over mutual TLS on 127.0.0.1 to a trivial handler behind the node's own
  listener and TLS context (bench/tls_cost.py's server), kept-alive, a one-envelope body.
- CPU seconds of a process and its children (/proc), to say which process a phase kept busy.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

OPS = ("seal", "open", "receipt sign", "receipt verify")
MAX_MESSAGES = 200_000


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


def crypto_costs(seconds: float, body: bytes, recipients: int = 1) -> dict[str, float]:
    """Microseconds per operation, the four in turn per message until ``seconds`` have passed.
    ``recipients`` > 1 seals to that many (one of them opens, signs the receipt)."""
    from bench.node_pair import MESSAGE_TYPE, TTL
    from protocol.envelope import open_envelope, seal
    from protocol.identity import Identity
    from protocol.receipt import sign_receipt, verify_receipt

    alice, bob = Identity.generate(), Identity.generate()
    others = [Identity.generate().public for _ in range(recipients - 1)]
    kind: Any = MESSAGE_TYPE

    def sender_of(_node_id: bytes) -> Any:
        return alice.public

    now = int(time.time())
    totals = dict.fromkeys(OPS, 0.0)
    n = 0
    deadline = time.perf_counter() + seconds
    while n < MAX_MESSAGES and (n < 5 or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        data = seal(alice, [bob.public, *others], kind, body, now=now, ttl=TTL).encode()
        t1 = time.perf_counter()
        opened = open_envelope(data, bob, sender_of=sender_of, now=now)
        t2 = time.perf_counter()
        receipt = sign_receipt(bob, alice.node_id, [(opened.id, opened.content_hash)], now=now)
        t3 = time.perf_counter()
        verify_receipt(receipt, signer=bob.public, sender=alice.node_id)
        t4 = time.perf_counter()
        for key, dt in zip(OPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[key] += dt
        n += 1
    return {k: v / n * 1e6 for k, v in totals.items()}


def _crypto_worker(
    conn: Connection, barrier: Any, seconds: float, body: bytes, recipients: int
) -> None:
    crypto_costs(0.05, body, recipients)  # imports and first calls, before the others start
    barrier.wait(60)
    conn.send(crypto_costs(seconds, body, recipients))


@dataclass
class Crypto:
    """Per-operation costs: alone on one core, and per process with every core busy at once."""

    one: dict[str, float]
    parallel: list[dict[str, float]]

    @property
    def cores(self) -> int:
        return len(self.parallel)

    @staticmethod
    def _us(costs: Mapping[str, float], weights: Mapping[str, float]) -> float:
        return sum(costs[op] * w for op, w in weights.items())

    def one_core(self, weights: Mapping[str, float]) -> float:
        """Messages/s on one core of the work ``weights`` (operations per message)."""
        return 1e6 / self._us(self.one, weights)

    def all_cores(self, weights: Mapping[str, float]) -> float:
        """Messages/s of that work in every process at once: the sum of their rates."""
        return sum(1e6 / self._us(c, weights) for c in self.parallel)

    def parallel_us(self, op: str) -> float:
        """The median per-op cost while every core was busy."""
        return statistics.median(c[op] for c in self.parallel)


def per_message(receipt_covers: float = 1.0, seal: bool = True) -> dict[str, float]:
    """Operations per message: one open, a receipt per ``receipt_covers`` messages, and a seal
    unless the messages were sealed before the phase (a backlog queued earlier)."""
    weights = {
        "open": 1.0,
        "receipt sign": 1 / receipt_covers,
        "receipt verify": 1 / receipt_covers,
    }
    return ({"seal": 1.0} | weights) if seal else weights


def measure_crypto(seconds: float, body: bytes, recipients: int = 1) -> Crypto:
    """One core alone, then one process per usable core at once (spawned, behind a barrier)."""
    one = crypto_costs(seconds, body, recipients)
    n = usable_cores()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    pipes, procs = [], []
    for _ in range(n):
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_crypto_worker, args=(child, barrier, seconds, body, recipients), daemon=True
        )
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    try:
        parallel = []
        for parent in pipes:
            if not parent.poll(seconds + 60):
                raise RuntimeError("a crypto ceiling process did not answer")
            parallel.append(parent.recv())
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    return Crypto(one, parallel)


def best(a: Crypto, b: Crypto, weights: Mapping[str, float]) -> tuple[Crypto, float]:
    """The faster of two measurements of one run (both cores, for ``weights``) and how far apart
    they were: noise the reader should know of."""
    ra, rb = a.all_cores(weights), b.all_cores(weights)
    return (a if ra >= rb else b), abs(ra - rb) / max(ra, rb)


def fsync_commit_ms(commits: int = 50, row_bytes: int = 1400) -> float:
    """Median wall ms of one committed insert, WAL with ``synchronous=FULL``, in a temp dir on
    the same file system as the benchmark's node homes."""
    with tempfile.TemporaryDirectory(prefix="bl-fsync-") as tmp:
        db = sqlite3.connect(Path(tmp) / "t.db", isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
            blob = os.urandom(row_bytes)
            times = []
            for _ in range(commits + 3):
                t0 = time.perf_counter()
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO t (b) VALUES (?)", (blob,))
                db.execute("COMMIT")
                times.append((time.perf_counter() - t0) * 1000)
        finally:
            db.close()
    return statistics.median(times[3:])


def tls_round_trip_ms(server: Any, client: Any, rounds: int = 60) -> float:
    """Median wall ms of one kept-alive aiohttp POST over mutual TLS of a one-envelope body
    (1.4 KB) to a trivial handler behind the node's listener and TLS context, keyed as the node
    ``server`` (a NodeProc; its own process need not run), called as the node ``client``."""
    from bench.tls_cost import trivial_servers

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=trivial_servers, args=(child, str(server.home), client.cert), daemon=True
    )
    proc.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the trivial TLS server did not start")
        port = parent.recv()[1]
        url = f"https://127.0.0.1:{port}/v1/envelopes"
        return asyncio.run(_posts(url, client.as_peer_of(server), rounds))
    finally:
        parent.send("quit")
        proc.join(10)
        if proc.is_alive():
            proc.kill()


async def _posts(url: str, ssl: Any, rounds: int) -> float:
    import aiohttp

    body = os.urandom(1400)
    times = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl, limit=1),
        timeout=aiohttp.ClientTimeout(total=30),
    ) as session:
        for _ in range(rounds + 3):
            t0 = time.perf_counter()
            async with session.post(url, data=body) as resp:
                await resp.read()
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times[3:])


def proc_tree(pid: int) -> list[int]:
    """The process and its children (a node and its crypto workers)."""
    out = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far; 0 for one that is gone."""
    from bench.peer_api import cpu_seconds as one

    total = 0.0
    for pid in pids:
        try:
            total += one(pid)
        except OSError:
            pass
    return total


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far, every process (/proc/stat: all but idle
    and iowait), to tell cores our processes left idle from cores a neighbour took."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
