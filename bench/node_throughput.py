"""Node throughput: two real nodes on 127.0.0.1, durable end to end, against ceilings measured in
the same run, judged on issue 12's aims (bench/aims.py).

A message counts as delivered only when the sender's outbox row says ``delivered``: the receiver
stored it (fsync), signed a receipt, and the sender verified and stored that receipt (fsync). At
the end every stored receipt is verified again here and the receiver's inbox is counted.

Phases, in one run on the same pair of nodes (``bar-pcu`` sends to ``belgrade-accu``):

- backed up: many threads queue N messages through the admin API; time until all delivered;
- backlog drain: the receiver is down while N messages queue, then comes back (the aim's
  "backed-up drain");
- sequential send-and-wait (latency bound): send, wait for the receipt, send the next;
- steady: an open-loop 100 msg/s for a few seconds; send-to-receipt latency;
- unbatched drain: the backlog drain again with the sender restarted with
  ``BORDERLINK_DELIVERY_BATCH_SIZE=1`` (concurrency 2, the default, then 8), so every message is its
  own POST, its own receiver commit and its own receipt: the aim's "one message at a time".

Ceilings and floors, measured before and after the node phases (the faster of the two counts;
their gap is printed as the run's noise), bench/ceilings.py:

- crypto, per operation, on one core and in one process per usable core at once; a phase is set
  against the crypto its own messages need: a drain's backlog was sealed when it was queued, so
  a drain's ceiling is open + the receipts (one per batch actually sent), the other phases add
  the seal;
- the steady floor: one message's crypto (seal, open, receipt sign and verify, one core) + one
  fsync'd SQLite commit + one aiohttp round trip over mutual TLS on 127.0.0.1 (a trivial handler
  behind the node's own listener and TLS context), each a median of this run.

Each drain records the CPU of every process (both nodes, their crypto workers, this bench) so
the report can say why an aim was missed: cores busy or idle, which process was full, and how
much of the nodes' CPU the crypto itself needed.

Latencies come from the sender's database (``messages.queued_at`` to ``outbox.delivered_at``), so
polling here does not inflate them. Every loop is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import aims
from bench.ceilings import (
    Crypto,
    best,
    cpu_seconds,
    fsync_commit_ms,
    machine_cpu_seconds,
    measure_crypto,
    per_message,
    proc_tree,
    tls_round_trip_ms,
)
from bench.node_pair import (
    MESSAGE_TYPE,
    RECEIVER,
    SENDER,
    Pair,
    limits_env,
)

AIM_DRAIN = 0.90  # backlog drain / both-cores crypto ceiling
AIM_ONE_AT_A_TIME = 0.50  # batch-size-1 drain / both-cores crypto ceiling
AIM_STEADY = 3.0  # steady p99 / floor
UNBATCHED_CONCURRENCY = (2, 8)  # 2 is the default; the aim is judged on the first
SEQUENTIAL = "sequential send-and-wait (latency bound)"


@dataclass(frozen=True)
class Plan:
    backlog: int  # messages queued at once
    send_threads: int
    serial: int  # messages sent one at a time
    steady_rate: float  # messages per second
    steady_seconds: float
    crypto_seconds: float
    phase_timeout: float  # no phase waits longer than this for deliveries
    floor_rounds: int  # fsync'd commits and TLS round trips timed for the floor


QUICK = Plan(
    backlog=600,
    send_threads=8,
    serial=150,
    steady_rate=100,
    steady_seconds=3,
    crypto_seconds=1.0,
    phase_timeout=15,
    floor_rounds=30,
)
FULL = Plan(
    backlog=4000,
    send_threads=8,
    serial=1000,
    steady_rate=100,
    steady_seconds=10,
    crypto_seconds=3.0,
    phase_timeout=60,
    floor_rounds=200,
)


def body_1k() -> dict[str, Any]:
    """A valid seizure alert whose signed plaintext pads to the 1 KiB bucket (PROTOCOL.md 5.3)."""
    from protocol.schemas import encode_body, template

    body: dict[str, Any] = json.loads(encode_body(template(MESSAGE_TYPE)))
    body["concealment"]["description"] = "Among boxes of bananas."
    body["narrative"] = "Scanner image showed anomalies."
    size = len(json.dumps(body, separators=(",", ":")))
    if not 900 <= 64 + size + 1 <= 1024:
        raise RuntimeError(f"benchmark body is {size} bytes; expected to pad to 1 KiB")
    return body


# statistics ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Phase:
    name: str
    sent: int = 0
    delivered: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    covers: float = 1.0  # messages per receipt
    sealed_before: bool = False  # a backlog queued (and sealed) before the phase's clock ran
    cpu: dict[str, float] = field(default_factory=dict)  # cores' worth, by process, while it ran

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q) if self.latencies_ms else float("nan")


# the two nodes ---------------------------------------------------------------------------------


MACHINE = "machine"  # every process on it, ours included


def cpu_now(pair: Pair) -> dict[str, float]:
    """CPU seconds so far of each node, its crypto workers, and this bench process."""
    out = {}
    for label, name in (("sender", SENDER), ("receiver", RECEIVER)):
        proc = pair.nodes[name].proc
        assert proc is not None
        tree = proc_tree(proc.pid)
        out[label], out[f"{label} workers"] = cpu_seconds(tree[:1]), cpu_seconds(tree[1:])
    out["bench"] = time.process_time()
    out[MACHINE] = machine_cpu_seconds()
    return out


def cpu_since(pair: Pair, start: dict[str, float], wall: float) -> dict[str, float]:
    """Cores' worth of CPU of each process since ``start`` was taken ``wall`` seconds ago."""
    end = cpu_now(pair)
    return {k: (end[k] - start.get(k, 0.0)) / wall for k in end} if wall > 0 else {}


def note_undelivered(pair: Pair, ids: Sequence[str], ph: Phase) -> None:
    """Say why messages of a phase were not delivered in time (their outbox status and error)."""
    if len(ids) > ph.delivered:
        why = pair.undelivered(ids)
        ph.notes.append(
            f"{len(ids) - ph.delivered} not delivered in time: "
            + "; ".join(f"{n} {k}" for k, n in sorted(why.items(), key=lambda kv: -kv[1])[:3])
        )


def backed_up(pair: Pair, body: dict[str, Any], plan: Plan) -> Phase:
    ph = Phase("backed up")
    before = pair.delivered()
    cpu0, w0 = cpu_now(pair), time.monotonic()
    t0 = time.time()
    deadline = time.monotonic() + plan.phase_timeout
    with ThreadPoolExecutor(plan.send_threads) as pool:
        ids = list(pool.map(lambda _i: pair.send(body), range(plan.backlog)))
    queued = time.time()
    at_queued = pair.delivered() - before
    pair.wait_delivered(before + len(ids), deadline)
    ph.cpu = cpu_since(pair, cpu0, time.monotonic() - w0)
    times = pair.times(ids)
    ph.sent, ph.delivered = len(ids), len(times)
    ph.covers = ph.delivered / max(1, pair.receipts(ids))
    note_undelivered(pair, ids, ph)
    end = max((d for _, d in times), default=time.time())
    ph.seconds = end - t0
    ph.latencies_ms = [(d - q) * 1000 for q, d in times]
    ph.notes.append(
        f"queueing alone: {len(ids) / (queued - t0):,.0f} msg/s "
        f"({plan.send_threads} threads on the admin socket)"
    )
    if end > queued and ph.delivered - at_queued >= 100:
        ph.notes.append(
            f"drain after queueing ended: {(ph.delivered - at_queued) / (end - queued):,.0f}"
            f" msg/s ({ph.delivered - at_queued} messages)"
        )
    return ph


def drain(
    pair: Pair,
    body: dict[str, Any],
    plan: Plan,
    name: str = "backlog drain",
    unbatched: bool = False,
) -> Phase:
    """A real backlog: the receiver is down while N messages queue, then comes back."""
    ph = Phase(name, sealed_before=True)
    receiver = pair.nodes[RECEIVER]
    receiver.stop()
    deadline = time.monotonic() + plan.phase_timeout
    with ThreadPoolExecutor(plan.send_threads) as pool:
        ids = list(pool.map(lambda _i: pair.send(body), range(plan.backlog)))
    before = pair.delivered()
    receiver.start()
    cpu0, w0 = cpu_now(pair), time.monotonic()
    pair.wait_delivered(before + len(ids), deadline)
    ph.cpu = cpu_since(pair, cpu0, time.monotonic() - w0)
    times = pair.times(ids)
    ph.sent, ph.delivered = len(ids), len(times)
    note_undelivered(pair, ids, ph)
    done = sorted(d for _, d in times)
    if len(done) > 1 and done[-1] > done[0]:
        # From the first answered batch to the last: the messages after the first batch.
        first = sum(1 for d in done if d == done[0])
        ph.seconds = (done[-1] - done[0]) * len(done) / (len(done) - first)
        ph.notes.append(
            f"{len(done)} queued while {RECEIVER} was down, delivered in "
            f"{done[-1] - done[0]:.2f} s after its first batch ({first} messages)"
        )
    receipts = pair.receipts(ids)
    ph.covers = ph.delivered / max(1, receipts)
    ph.notes.append(
        f"{receipts} distinct receipts for {ph.delivered} messages"
        + (" (batch size 1: one POST, receiver commit and receipt each)" if unbatched else "")
    )
    return ph


def unbatched_drains(pair: Pair, body: dict[str, Any], plan: Plan) -> list[Phase]:
    """The backlog drain with one message per POST: every message is its own request, receiver
    commit and receipt. The sender is restarted for each concurrency and not restored (last)."""
    phases = []
    for conc in UNBATCHED_CONCURRENCY:
        pair.restart_sender(
            {"BORDERLINK_DELIVERY_BATCH_SIZE": "1", "BORDERLINK_DELIVERY_CONCURRENCY": str(conc)}
        )
        ph = drain(pair, body, plan, f"unbatched drain, c={conc}", unbatched=True)
        phases.append(ph)
    return phases


def one_at_a_time(pair: Pair, body: dict[str, Any], plan: Plan) -> Phase:
    ph = Phase(SEQUENTIAL)
    ids = []
    t0 = time.time()
    deadline = time.monotonic() + plan.phase_timeout
    for _ in range(plan.serial):
        if time.monotonic() >= deadline:
            ph.notes.append("stopped at the phase time limit")
            break
        msg_id = pair.send(body)
        ids.append(msg_id)
        while not pair.is_delivered(msg_id) and time.monotonic() < deadline:
            time.sleep(0.0002)
    end = time.time()
    times = pair.times(ids)
    ph.sent, ph.delivered, ph.seconds = len(ids), len(times), end - t0
    note_undelivered(pair, ids, ph)
    ph.latencies_ms = [(d - q) * 1000 for q, d in times]
    return ph


def steady(pair: Pair, body: dict[str, Any], plan: Plan) -> Phase:
    ph = Phase(f"steady {plan.steady_rate:.0f}/s")
    count = int(plan.steady_rate * plan.steady_seconds)
    ids: list[str] = []
    lock = threading.Lock()
    late = 0

    def one() -> None:
        msg_id = pair.send(body)
        with lock:
            ids.append(msg_id)

    before = pair.delivered()
    t0 = time.monotonic()
    with ThreadPoolExecutor(4) as pool:  # open loop: a slow send does not delay the next
        for i in range(count):
            delay = t0 + i / plan.steady_rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.005:
                late += 1
            pool.submit(one)
    sent_for = time.monotonic() - t0
    pair.wait_delivered(before + count, time.monotonic() + plan.phase_timeout)
    times = pair.times(ids)
    ph.sent, ph.delivered, ph.seconds = len(ids), len(times), sent_for
    note_undelivered(pair, ids, ph)
    ph.latencies_ms = [(d - q) * 1000 for q, d in times]
    ph.notes.append(
        f"offered {count / sent_for:,.0f} msg/s over {sent_for:.1f} s"
        + (f"; {late} sends started >5 ms late" if late else "")
    )
    return ph


# report ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Floor:
    """The steady phase's floor: what one message cannot go below, each part measured here."""

    crypto_ms: float  # seal + open + receipt sign + receipt verify, one core
    commit_ms: float  # one fsync'd SQLite commit
    round_trip_ms: float  # one kept-alive aiohttp POST over mutual TLS on 127.0.0.1

    @property
    def ms(self) -> float:
        return self.crypto_ms + self.commit_ms + self.round_trip_ms


def work(ph: Phase) -> dict[str, float]:
    """The crypto a phase's messages needed, per message (its receipts as it sent them)."""
    return per_message(receipt_covers=ph.covers, seal=not ph.sealed_before)


def cpu_why(ph: Phase, crypto: Crypto) -> str:
    """What the CPU figures of a phase say: cores full or idle, and which process was full."""
    c = dict(ph.cpu)
    if not c:
        return "no CPU figures"
    machine = c.pop(MACHINE, 0.0)
    ours = sum(c.values())
    nodes = ours - c.get("bench", 0.0)
    others = max(0.0, machine - ours)
    need = ph.rate * sum(crypto.one[op] * w for op, w in work(ph).items()) / 1e6
    shown = ", ".join(f"{k} {v:.0%}" for k, v in c.items())
    why = (
        f"CPU in cores' worth: {shown}, other processes {others:.0%}; the machine {machine:.2f} "
        f"of {crypto.cores} cores busy; the crypto of what it delivered needs {need:.2f} "
        f"({need / nodes if nodes else 0:.0%} of the nodes' CPU)"
    )
    if machine >= 0.85 * crypto.cores:
        why += "; the cores were full"
        if others >= 0.25:
            why += f", {others:.2f} of them taken by other processes (a shared machine)"
        why += "; the nodes' CPU outside the crypto (HTTP, decoding, SQLite, Python) is the rest"
    else:
        why += "; cores left idle, so not CPU: waits bound it (round trips, fsync'd commits, "
        why += "requests in flight, one process's event loop)"
    main = max(("sender", "receiver"), key=lambda k: c.get(k, 0.0))
    if c.get(main, 0.0) >= 0.85:
        why += f"; the {main}'s own process was at {c[main]:.0%} of a core (its event loop)"
    return why


def judge(
    phases: list[Phase], plan: Plan, crypto: Crypto, floor: Floor, load: tuple[float, ...]
) -> list[aims.Aim]:
    by = {ph.name: ph for ph in phases}
    drained = by["backlog drain"]
    one = by[f"unbatched drain, c={UNBATCHED_CONCURRENCY[0]}"]
    wide = by[f"unbatched drain, c={UNBATCHED_CONCURRENCY[-1]}"]
    st = by[f"steady {plan.steady_rate:.0f}/s"]
    tail = (
        f"p50 {st.p(50):.1f} ms, p99 {st.p(99):.1f} ms, max {max(st.latencies_ms, default=0):.1f}"
        f" ms over {st.delivered} messages; floor = crypto {floor.crypto_ms:.2f} + fsync'd "
        f"commit {floor.commit_ms:.2f} + TLS round trip {floor.round_trip_ms:.2f} ms; p50 is "
        f"{st.p(50) / floor.ms:.1f}x the floor; load average {load[0]:.1f}"
    )
    return [
        aims.Aim(
            "drain",
            drained.rate,
            "msg/s",
            crypto.all_cores(work(drained)),
            f"{crypto.cores}-core crypto ceiling (open + a receipt per {drained.covers:.0f})",
            AIM_DRAIN,
            True,
            cpu_why(drained, crypto),
        ),
        aims.Aim(
            "batch-size-1",
            one.rate,
            "msg/s",
            crypto.all_cores(work(one)),
            f"{crypto.cores}-core crypto ceiling (open + a receipt each)",
            AIM_ONE_AT_A_TIME,
            True,
            f"concurrency {UNBATCHED_CONCURRENCY[0]} (the default); at c="
            f"{UNBATCHED_CONCURRENCY[-1]} {wide.rate:,.0f} msg/s; " + cpu_why(one, crypto),
        ),
        aims.Aim(
            "steady-p99",
            st.p(99),
            "ms",
            floor.ms,
            "floor",
            AIM_STEADY,
            False,
            tail,
        ),
    ]


def report(
    plan: Plan,
    mode: str,
    crypto: Crypto,
    noise: float,
    floor: Floor,
    phases: list[Phase],
    problems: list[str],
    setup_s: float,
    total_s: float,
    refused: int = 0,
    load: tuple[float, ...] = (0.0, 0.0, 0.0),
) -> str:
    lines = [
        f"node throughput ({mode}): {SENDER} -> {RECEIVER}, two processes on 127.0.0.1, "
        f"{MESSAGE_TYPE} padded to 1 KiB, SQLite synchronous=FULL",
        "limits: "
        + (", ".join(f"{k}={v}" for k, v in sorted(limits_env().items())) or "node defaults")
        + (
            f"; the receiver refused the sender over its peer budget (429; {refused} sampled "
            "log lines): the budget bound some phase, raise BORDERLINK_LIMITS_PEER_RATE"
            if refused
            else "; the peer budget never bound (no 429)"
        ),
        f"load average at the end: {', '.join(f'{x:.2f}' for x in load)}",
        "",
        f"crypto, us per operation (the faster of two measurements of this run, {noise:.0%} "
        "apart):",
        f"  {'operation':<15} {'one core':>9} {f'each of {crypto.cores} at once':>17}",
    ]
    for op, us in crypto.one.items():
        lines.append(f"  {op:<15} {us:>9.1f} {crypto.parallel_us(op):>17.1f}")
    for label, w in (
        ("one message (seal, open, its own receipt)", per_message()),
        ("a drained message (open, a receipt per 64)", per_message(64, seal=False)),
        ("a drained message at batch size 1 (open, its receipt)", per_message(1, seal=False)),
    ):
        lines.append(
            f"  ceiling, {label}: {crypto.one_core(w):,.0f} msg/s on one core, "
            f"{crypto.all_cores(w):,.0f} on {crypto.cores}"
        )
    lines.append(
        f"  steady floor: crypto {floor.crypto_ms:.2f} ms + fsync'd commit {floor.commit_ms:.2f}"
        f" ms + aiohttp round trip over TLS {floor.round_trip_ms:.2f} ms = {floor.ms:.2f} ms"
    )
    lines.append("")
    width = max(len(ph.name) for ph in phases)
    lines.append(
        f"{'phase':<{width}} {'sent':>6} {'deliv':>6} {'msg/s':>8} {'/1 core':>8} "
        f"{f'/{crypto.cores} cores':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    for ph in phases:
        worst = max(ph.latencies_ms) if ph.latencies_ms else float("nan")
        lines.append(
            f"{ph.name:<{width}} {ph.sent:>6} {ph.delivered:>6} {ph.rate:>8,.0f} "
            f"{ph.rate / crypto.one_core(work(ph)):>8.1%} "
            f"{ph.rate / crypto.all_cores(work(ph)):>9.1%} {ph.p(50):>8.1f} {ph.p(99):>8.1f} "
            f"{worst:>8.1f}"
        )
    lines.append(
        "  (each phase against the crypto its own messages need: a drain's were sealed before)"
    )
    for ph in phases:
        for note in ph.notes:
            lines.append(f"  {ph.name}: {note}")
    lines.append(f"  {SEQUENTIAL}: one round trip at a time, not an aim")
    lines.append(
        "durability audit: "
        + (
            "every stored receipt verifies and covers its message; receiver inbox count matches"
            if not problems
            else "; ".join(problems[:5])
        )
    )
    lines.append(f"setup {setup_s:.1f} s, total {total_s:.1f} s")
    lines.append(aims.block(judge(phases, plan, crypto, floor, load)))
    return "\n".join(lines)


def _plan(args: Any) -> tuple[Plan, str]:
    if isinstance(args, Sequence) and not isinstance(args, str):
        parser = argparse.ArgumentParser(prog="bench.node_throughput")
        parser.add_argument("--quick", action="store_true")
        args = parser.parse_args(list(args))
    quick = bool(getattr(args, "quick", False))
    return (QUICK, "quick") if quick else (FULL, "full")


def run(args: Any = None) -> str:
    """Run every phase once and return the report text (``args.quick`` picks the short plan)."""
    import os

    from protocol.schemas import decode_body, encode_body

    plan, mode = _plan(args)
    started = time.monotonic()
    body = body_1k()
    raw = encode_body(decode_body(MESSAGE_TYPE, json.dumps(body).encode()))
    before = measure_crypto(plan.crypto_seconds, raw)
    with tempfile.TemporaryDirectory(prefix="bl-bench-") as tmp:
        t_setup = time.monotonic()
        pair = Pair(Path(tmp))
        setup_s = time.monotonic() - t_setup
        try:
            for _ in range(3):  # warm up connections, workers and caches
                pair.send(body)
            pair.wait_delivered(3, time.monotonic() + 10)
            commit_ms = fsync_commit_ms(plan.floor_rounds)
            round_trip_ms = tls_round_trip_ms(
                pair.nodes[RECEIVER], pair.nodes[SENDER], plan.floor_rounds
            )
            phases: list[Phase] = []
            steps: list[Callable[[Pair, dict[str, Any], Plan], Phase]] = [
                backed_up,
                drain,
                one_at_a_time,
                steady,
            ]
            for step in steps:
                phases.append(step(pair, body, plan))
            phases.extend(unbatched_drains(pair, body, plan))  # restarts the sender: last
            problems = pair.audit()
            refused = pair.rate_limited()
        finally:
            pair.close()
    load = os.getloadavg()
    # Measured on both sides of the node phases; the faster is the ceiling, the gap is noise.
    after = measure_crypto(plan.crypto_seconds, raw)
    crypto, noise = best(before, after, per_message())
    floor = Floor(sum(crypto.one.values()) / 1000, commit_ms, round_trip_ms)
    return report(
        plan,
        mode,
        crypto,
        noise,
        floor,
        phases,
        problems,
        setup_s,
        time.monotonic() - started,
        refused,
        load,
    )


if __name__ == "__main__":
    import sys

    print(run(sys.argv[1:]))
