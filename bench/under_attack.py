"""A trusted peer's delivery latency while the node is attacked (real processes on 127.0.0.0/8).

The target node (``belgrade-accu``) runs as a real ``borderlink serve`` process on 127.0.0.1.
The bench is its trusted peer ``bar-pcu`` (bench/peer_api.py): it POSTs one fresh sealed
envelope per request (``POST /v1/envelopes``, a batch of 1) over one kept-alive mutual-TLS
connection, one every ``interval`` (the next starts at once if an answer is late), and times each
round trip: the target decodes, opens, stores with fsync and signs a receipt, and the bench
checks every answer accepted its envelope. Meanwhile an attacker (bench/attacker.py, its own
process) does one of:

- nothing (the baseline, measured again at the end to show the drift of the run);
- an anonymous caller (TLS, no client certificate) from 127.0.0.2 POSTs forged batches (an
  envelope claiming bar-pcu's id, sealed by another key) at 20 and at 200 requests/s;
- 1,000 idle TCP connections (no TLS handshake) held open from 127.0.0.3, 127.0.0.4, ..., at most
  ``max_connections_per_address - 1`` per address, so the node's per-address cap refuses none.

The aim: p99 under 100 ms in every case. Every loop is bounded in count and in time. The bench,
the attacker and the node share the machine's CPUs, so an attacker's own CPU is taken from the
node too: a worst case for a 2-vCPU machine, and the node's CPU use per case is shown.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.peer_api import (
    PEER,
    TARGET,
    Target,
    check_answer,
    cpu_seconds,
    open_fds,
    percentile,
    quick_or_full,
    rss_mb,
)

AIM_P99_MS = 100.0
PER_ADDRESS_CAP = 64  # node/config.py Limits.max_connections_per_address, default


@dataclass(frozen=True)
class Plan:
    deliveries: int  # per case
    interval: float  # seconds between the starts of two deliveries
    idle_sockets: int
    warmup: int  # deliveries before the first case, not counted
    max_case_seconds: float  # no case runs longer than this, whatever the node does


QUICK = Plan(deliveries=40, interval=0.01, idle_sockets=1000, warmup=5, max_case_seconds=10)
FULL = Plan(deliveries=200, interval=0.06, idle_sockets=1000, warmup=20, max_case_seconds=60)


@dataclass(frozen=True)
class Attack:
    name: str
    mode: str  # "none", "forge" or "idle"
    rate: float = 0.0


ATTACKS = (
    Attack("no attack", "none"),
    Attack("anonymous forged batches, 20/s", "forge", 20.0),
    Attack("anonymous forged batches, 200/s", "forge", 200.0),
    Attack("1,000 idle TCP connections", "idle"),
    Attack("no attack, again", "none"),
)


@dataclass
class Case:
    attack: Attack
    t0: float = 0.0  # time.monotonic() at the case's start
    latencies_ms: list[float] = field(default_factory=list)
    started_s: list[float] = field(default_factory=list)  # each delivery's start, in the case
    problems: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    node_cpu: float = 0.0  # the node's CPU seconds / wall seconds during the case
    node_fds: int = -1  # the node's open file descriptors, looked at mid-case
    node_rss: float = float("nan")  # the node's resident memory, MB, looked at mid-case
    attacker: dict[str, Any] = field(default_factory=dict)

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    @property
    def met(self) -> bool:
        return (
            len(self.latencies_ms) > 0
            and self.p(99) < AIM_P99_MS
            and not sum(self.problems.values())
        )

    def attacker_rate(self) -> str:
        a = self.attacker
        if self.attack.mode == "forge" and a.get("seconds"):
            return f"{a['sent'] / a['seconds']:,.0f}"
        return "-"

    def attacker_answers(self) -> str:
        a = self.attacker
        if self.attack.mode == "forge":
            return ", ".join(f"{k}: {v}" for k, v in sorted(a.get("answers", {}).items()))
        if self.attack.mode == "idle":
            return (
                f"{a.get('opened', 0)} held from {a.get('addresses', 0)} addresses, "
                f"{a.get('closed_by_server', 0)} closed by the node"
            )
        return "-"


async def deliver(
    target: Target, bodies: list[bytes], interval: float, max_seconds: float, case: Case
) -> None:
    """POST each body as a batch of 1, one every ``interval``; time each round trip."""
    import aiohttp

    from protocol.batch import BATCH_CONTENT_TYPE, BATCH_PATH

    url = target.url + BATCH_PATH
    headers = {"Content-Type": BATCH_CONTENT_TYPE}
    connector = aiohttp.TCPConnector(ssl=target.peer_context, limit=1)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = case.t0 = time.monotonic()
        deadline = t0 + max_seconds
        cpu0 = cpu_seconds(target.pid)
        for i, body in enumerate(bodies):
            now = time.monotonic()
            if now >= deadline:
                case.problems["stopped at the case time limit"] += len(bodies) - i
                break
            due = t0 + i * interval
            if due > now:
                await asyncio.sleep(due - now)
            if i == len(bodies) // 2:
                case.node_fds = open_fds(target.pid)
                case.node_rss = rss_mb(target.pid)
            sent_at, start = time.monotonic() - t0, time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    answer = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                case.problems[type(exc).__name__] += 1
                continue
            case.latencies_ms.append((time.perf_counter() - start) * 1000)
            case.started_s.append(sent_at)
            verdict = check_answer(status, answer, 1)
            if verdict != "ok":
                case.problems[verdict] += 1
        case.seconds = time.monotonic() - t0
        case.node_cpu = (cpu_seconds(target.pid) - cpu0) / case.seconds


def one_case(
    target: Target, attacker: Any, attack: Attack, plan: Plan, forged: list[bytes]
) -> Case:
    from protocol.batch import encode_batch

    case = Case(attack)
    bodies = [encode_batch([env]) for env in target.seal(plan.deliveries)]
    limit = plan.max_case_seconds
    if attack.mode == "forge":
        attacker.send(
            {
                "mode": "forge",
                "url": target.url,
                "source": "127.0.0.2",
                "rate": attack.rate,
                "bodies": [encode_batch([env]) for env in forged],
                "max_seconds": limit + 5,
                "max_requests": int(attack.rate * (limit + 5)),
            }
        )
    elif attack.mode == "idle":
        host, port = target.host_port
        attacker.send(
            {
                "mode": "idle",
                "host": host,
                "port": port,
                "count": plan.idle_sockets,
                "per_address": PER_ADDRESS_CAP - 1,
                "max_seconds": limit + 5,
            }
        )
    if attack.mode != "none":
        if not attacker.poll(30) or attacker.recv() != "ready":
            raise RuntimeError(f"the attacker did not start: {attack.name}")
        time.sleep(0.3)  # let the attack reach its pace before measuring
    asyncio.run(deliver(target, bodies, plan.interval, limit, case))
    if attack.mode != "none":
        attacker.send("stop")
        if not attacker.poll(30):
            raise RuntimeError(f"the attacker did not report: {attack.name}")
        case.attacker = attacker.recv()
    time.sleep(0.2)  # let the node close what the attacker left
    return case


def report(cases: list[Case], plan: Plan, mode: str, setup_s: float, total_s: float) -> str:
    lines = [
        f"under attack ({mode}): {PEER} (this process) -> {TARGET} (a real node on 127.0.0.1), "
        f"{plan.deliveries} deliveries per case, one batch of 1 envelope every "
        f"{plan.interval * 1000:.0f} ms over one kept-alive mutual-TLS connection; round trip "
        "includes decode, open, fsync'd store and receipt",
        "",
    ]
    w = max(len(c.attack.name) for c in cases)
    lines.append(
        f"{'case':<{w}}  {'p50 ms':>7}  {'p99 ms':>7}  {'max ms':>7}  {'node CPU':>8}  "
        f"{'node fds':>8}  {'RSS MB':>6}  {'attack/s':>8}  {'aim p99<100':>11}  attacker answers"
    )
    for c in cases:
        worst = max(c.latencies_ms) if c.latencies_ms else float("nan")
        lines.append(
            f"{c.attack.name:<{w}}  {c.p(50):>7.1f}  {c.p(99):>7.1f}  {worst:>7.1f}  "
            f"{c.node_cpu:>8.0%}  {c.node_fds:>8}  {c.node_rss:>6.0f}  {c.attacker_rate():>8}  "
            f"{'met' if c.met else 'MISSED':>11}  {c.attacker_answers()}"
        )
    lines.append("")
    for c in cases:
        a = c.attacker
        if c.attack.mode == "forge":
            lines.append(
                f"  {c.attack.name}: sent {a['sent']} in {a['seconds']:.1f} s over "
                f"{a['connections']} TLS connections"
                + (f"; {a['skipped']} not sent (64 in flight)" if a["skipped"] else "")
            )
        elif c.attack.mode == "idle":
            lines.append(
                f"  {c.attack.name}: {a['opened']} opened in {a['open_seconds']:.2f} s "
                f"(RLIMIT_NOFILE {a['nofile']}), {a['reopened']} reopened"
                + (
                    f", the node closed them {a['closed_between'][0] - c.t0:.2f}"
                    f"-{a['closed_between'][1] - c.t0:.2f} s into the case"
                    if a["closed_between"]
                    else ""
                )
                + (f", connect errors {a['errors']}" if a["errors"] else "")
            )
        if c.latencies_ms:
            slow = sorted(zip(c.latencies_ms, c.started_s, strict=True), reverse=True)[:3]
            lines.append(
                f"  {c.attack.name}: slowest "
                + ", ".join(f"{ms:.0f} ms at {t:.2f} s" for ms, t in slow)
                + f" into the {c.seconds:.1f} s case"
            )
        if c.problems:
            lines.append(f"  {c.attack.name}: delivery problems: {dict(c.problems)}")
    base = [c for c in cases if c.attack.mode == "none"]
    if len(base) > 1:
        p50s = [c.p(50) for c in base]
        lines.append(
            f"  baseline drift: p50 {' then '.join(f'{p:.1f}' for p in p50s)} ms "
            f"(median {statistics.median(p50s):.1f})"
        )
    lines.append("")
    missed = [c.attack.name for c in cases if not c.met]
    lines.append(
        "aim (p99 < 100 ms in every case): "
        + ("met" if not missed else f"MISSED in: {'; '.join(missed)}")
    )
    lines.append(f"setup {setup_s:.1f} s, total {total_s:.1f} s")
    return "\n".join(lines)


def run(args: Any = None) -> str:
    from bench import attacker as attacker_module
    from protocol.batch import encode_batch

    plan, mode = quick_or_full(args, "bench.under_attack", QUICK, FULL)
    started = time.monotonic()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=attacker_module.serve, args=(child,), daemon=True)
    proc.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bl-attack-") as tmp:
            target = Target(Path(tmp))
            try:
                setup_s = time.monotonic() - started
                forged = target.forged(4)
                warm = [encode_batch([env]) for env in target.seal(plan.warmup)]
                asyncio.run(
                    deliver(target, warm, plan.interval, plan.max_case_seconds, Case(ATTACKS[0]))
                )
                cases = [one_case(target, parent, a, plan, forged) for a in ATTACKS]
            finally:
                target.close()
    finally:
        parent.send("quit")
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return report(cases, plan, mode, setup_s, time.monotonic() - started)


if __name__ == "__main__":
    import sys

    print(run(sys.argv[1:]))
