"""What mutual TLS costs a delivery batch, against the HTTP and the crypto ceilings, in one run.

Three servers on 127.0.0.1, each a process of its own:

- the real node (``belgrade-accu``, ``borderlink serve``; bench/peer_api.py), trusted peer of the
  bench (``bar-pcu``): every batch it gets is fresh envelopes it decodes, opens, stores with fsync
  and answers with a signed receipt;
- "HTTPS, trivial": an aiohttp app behind the node's own listener (``node.http.listener``) and
  TLS context (``node.tls.NodeTls``, the target's key, bar-pcu trusted), whose handler reads the
  body and answers a fixed 16 bytes: TLS + HTTP alone;
- "HTTP, trivial": the same app over plain TCP (aiohttp's ``TCPSite``): the HTTP alone ceiling.

Timed from this process with aiohttp (as the node's ``PeerClient`` does), rounds interleaved so
noise falls on every case alike, medians of wall time per request:

- connection set-up to the node: TCP connect alone; TCP connect + TLS 1.3 handshake with both
  certificates (verified against the pins); a ``GET /livez`` on a new connection each time vs on
  one kept-alive connection;
- ``POST /v1/envelopes`` of a batch of 1 and of 64 envelopes over a kept-alive connection, to the
  three servers;
- the crypto ceiling: ``open_envelope`` of those envelopes (decode, HPKE, AEAD, signature, schema)
  plus one receipt signature, in this process, on one core.

Ratios: the node over each ceiling, and HTTPS over HTTP for the trivial app (what TLS adds per
request once the connection is up).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.peer_api import PEER, TARGET, Target, check_answer, quick_or_full

ANSWER = b"\x82\xa7results\x90\xa8receipts\x90"  # a MessagePack {results: [], receipts: []}
BATCHES = (1, 64)


@dataclass(frozen=True)
class Plan:
    rounds: int  # of every timed case
    max_seconds: float  # each group of cases stops after this, once MIN_ROUNDS are done
    crypto_rounds: int


QUICK = Plan(rounds=8, max_seconds=4, crypto_rounds=3)
FULL = Plan(rounds=60, max_seconds=40, crypto_rounds=15)
MIN_ROUNDS = 3
UNBUDGETED = {"BORDERLINK_LIMITS_PEER_RATE": "100000", "BORDERLINK_LIMITS_PEER_BURST": "100000"}


# the trivial servers (their own process) ---------------------------------------------------------


def trivial_servers(conn: Connection, node_home: str, peer_cert: bytes) -> None:
    """Serve the trivial app over HTTP and over the node's TLS until told ``quit`` (at most 10
    minutes); send the two ports when ready."""
    from aiohttp import web

    from node.http.listener import GatedSite
    from node.tls import NodeTls
    from tests.integration.harness import PASSPHRASE
    from tests.tlsclient import card_cert, home_identity

    home = Path(node_home)

    async def envelopes(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=ANSWER, content_type="application/octet-stream")

    async def livez(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def main() -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/envelopes", envelopes)
        app.router.add_get("/livez", livez)
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=15)
        await runner.setup()
        plain = web.TCPSite(runner, "127.0.0.1", 0)
        await plain.start()
        tls = NodeTls(
            home_identity(home, PASSPHRASE), card_cert((home / "card.txt").read_text()), home
        )
        gated = GatedSite(
            runner,
            "127.0.0.1",
            0,
            ssl_context=tls.server_context([peer_cert]),
            max_per_address=64,
            handshake_timeout=10,
        )
        await gated.start()
        ports = [s.getsockname()[1] for s in (*plain._server.sockets, *gated.sockets)]
        conn.send(ports)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not conn.poll():
            await asyncio.sleep(0.05)
        await runner.cleanup()

    asyncio.run(main())


# timing ----------------------------------------------------------------------------------------


Timed = Callable[[], Any]  # a coroutine function, one request or connection per call


async def interleaved(cases: dict[str, Timed], plan: Plan) -> dict[str, list[float]]:
    """Rounds of one call per case; milliseconds of wall time per call."""
    out: dict[str, list[float]] = {name: [] for name in cases}
    deadline = time.monotonic() + plan.max_seconds
    for done in range(plan.rounds):
        if done >= MIN_ROUNDS and time.monotonic() > deadline:
            break
        for name, fn in cases.items():
            start = time.perf_counter()
            await fn()
            out[name].append((time.perf_counter() - start) * 1000)
    return out


async def measure_http(target: Target, ports: list[int], plan: Plan) -> dict[str, list[float]]:
    import aiohttp

    from protocol.batch import BATCH_CONTENT_TYPE, BATCH_PATH, encode_batch

    host, port = target.host_port
    plain_url, tls_url = f"http://127.0.0.1:{ports[0]}", f"https://127.0.0.1:{ports[1]}"
    headers = {"Content-Type": BATCH_CONTENT_TYPE}
    ctx = target.peer_context
    problems: list[str] = []

    def session(ssl: Any, force_close: bool = False) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl, limit=1, force_close=force_close),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async with (
        session(ctx) as node,
        session(ctx, force_close=True) as node_new,
        session(ctx) as https,
        session(False) as http,
    ):

        async def tcp_connect() -> None:
            _r, w = await asyncio.open_connection(host, port)
            w.close()
            await w.wait_closed()

        async def tls_handshake() -> None:
            _r, w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="")
            w.close()
            await w.wait_closed()

        async def get(s: aiohttp.ClientSession, url: str) -> None:
            async with s.get(url + "/livez") as resp:
                await resp.read()

        async def post(s: aiohttp.ClientSession, url: str, body: bytes, n: int = 0) -> None:
            async with s.post(url + BATCH_PATH, data=body, headers=headers) as resp:
                answer = await resp.read()
                if n:
                    verdict = check_answer(resp.status, answer, n)
                    if verdict != "ok":
                        problems.append(verdict)

        await get(node, target.url)  # open the kept-alive connections first
        await get(https, tls_url)
        await get(http, plain_url)
        results = await interleaved(
            {
                "TCP connect alone": tcp_connect,
                "TCP connect + mutual TLS 1.3 handshake": tls_handshake,
                "GET /livez, new connection each": lambda: get(node_new, target.url),
                "GET /livez, kept-alive connection": lambda: get(node, target.url),
            },
            plan,
        )
        for n in BATCHES:
            fixed = encode_batch(target.seal(n))
            fresh = [encode_batch(target.seal(n)) for _ in range(plan.rounds)]
            it = iter(fresh)
            results |= await interleaved(
                {
                    f"batch of {n}: node (HTTPS, open, fsync, receipt)": lambda it=it, n=n: post(
                        node, target.url, next(it), n
                    ),
                    f"batch of {n}: HTTPS, trivial handler": lambda b=fixed: post(
                        https, tls_url, b
                    ),
                    f"batch of {n}: HTTP, trivial handler": lambda b=fixed: post(
                        http, plain_url, b
                    ),
                },
                plan,
            )
    if problems:
        raise RuntimeError(f"the node did not accept every batch: {problems[:3]}")
    return results


def crypto_ceiling(target: Target, plan: Plan) -> dict[int, list[float]]:
    """Milliseconds to open each batch's envelopes and sign one receipt, on one core."""
    from protocol.envelope import open_envelope
    from protocol.receipt import sign_receipt

    me = target.target_identity()
    peer = target.peer_identity.public

    def sender_of(_node_id: bytes) -> Any:
        return peer

    out: dict[int, list[float]] = {}
    for n in BATCHES:
        times = []
        for _ in range(plan.crypto_rounds):
            envelopes = target.seal(n)
            now = int(time.time())
            start = time.perf_counter()
            opened = [open_envelope(e, me, sender_of=sender_of, now=now) for e in envelopes]
            sign_receipt(me, peer.node_id, [(o.id, o.content_hash) for o in opened], now=now)
            times.append((time.perf_counter() - start) * 1000)
        out[n] = times
    return out


# report ----------------------------------------------------------------------------------------


def report(results: dict[str, list[float]], crypto: dict[int, list[float]], mode: str) -> str:
    med = {name: statistics.median(v) for name, v in results.items()}
    lines = [
        f"TLS cost ({mode}): {PEER} (this process) -> {TARGET} and two trivial aiohttp servers, "
        "each its own process on 127.0.0.1; medians of wall time per call, rounds interleaved",
        "",
    ]
    w = max(len(n) for n in [*med, "crypto ceiling, batch of 64 (open + 1 receipt sign)"])
    lines.append(f"{'case':<{w}}  {'median ms':>9}  {'p90 ms':>7}  {'runs':>4}")
    for name, values in results.items():
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        lines.append(f"{name:<{w}}  {med[name]:>9.3f}  {p90:>7.3f}  {len(values):>4}")
    for n, values in crypto.items():
        name = f"crypto ceiling, batch of {n} (open + 1 receipt sign)"
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        lines.append(
            f"{name:<{w}}  {statistics.median(values):>9.3f}  {p90:>7.3f}  {len(values):>4}"
        )
    lines.append("")
    handshake = med["TCP connect + mutual TLS 1.3 handshake"] - med["TCP connect alone"]
    new, kept = med["GET /livez, new connection each"], med["GET /livez, kept-alive connection"]
    lines.append("ratios:")
    lines.append(
        f"  new connection / kept-alive (GET /livez): {new / kept:.1f}x "
        f"(the handshake alone: {handshake:.2f} ms over a TCP connect)"
    )
    for n in BATCHES:
        node = med[f"batch of {n}: node (HTTPS, open, fsync, receipt)"]
        https = med[f"batch of {n}: HTTPS, trivial handler"]
        http = med[f"batch of {n}: HTTP, trivial handler"]
        cpu = statistics.median(crypto[n])
        lines.append(
            f"  batch of {n}: node / HTTP ceiling {node / http:.1f}x, node / HTTPS trivial "
            f"{node / https:.1f}x, node / crypto ceiling {node / cpu:.2f}x; HTTPS / HTTP trivial "
            f"{https / http:.2f}x (TLS adds {https - http:.3f} ms a request, "
            f"{(https - http) / node:.0%} of the node's round trip)"
        )
        lines.append(
            f"    a new connection per batch would add {handshake:.2f} ms "
            f"({handshake / node:.0%} of the node's round trip)"
        )
    return "\n".join(lines)


def run(args: Any = None) -> str:
    plan, mode = quick_or_full(args, "bench.tls_cost", QUICK, FULL)
    started = time.monotonic()
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bl-tls-") as tmp:
        # What a batch costs, not what the peer budget (400 envelopes/s by default) lets one peer
        # send: a full run's batches of 64 went past it and were answered 429.
        target = Target(Path(tmp), UNBUDGETED)
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=trivial_servers,
            args=(child, str(target.node.home), target.nodes[PEER].cert),
            daemon=True,
        )
        proc.start()
        try:
            if not parent.poll(30):
                raise RuntimeError("the trivial servers did not start")
            ports = parent.recv()
            results = asyncio.run(measure_http(target, ports, plan))
            crypto = crypto_ceiling(target, plan)
        finally:
            parent.send("quit")
            proc.join(10)
            if proc.is_alive():
                proc.kill()
            target.close()
    return report(results, crypto, mode) + f"\ntotal {time.monotonic() - started:.1f} s"


if __name__ == "__main__":
    import sys

    print(run(sys.argv[1:]))
