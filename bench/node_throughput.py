"""Node throughput: two real nodes on 127.0.0.1, durable end to end, against the crypto ceiling.

A message counts as delivered only when the sender's outbox row says ``delivered``: the receiver
stored it (fsync), signed a receipt, and the sender verified and stored that receipt (fsync). At
the end every stored receipt is verified again here and the receiver's inbox is counted.

Phases, in one run on the same pair of nodes (``bar-pcu`` sends to ``belgrade-accu``):

- crypto ceiling: seal + open + receipt sign + receipt verify per message, in this process;
- backed up: many threads queue N messages through the admin API; time until all delivered;
- sequential send-and-wait (latency bound): send, wait for the receipt, send the next;
- steady: an open-loop 100 msg/s for a few seconds; send-to-receipt latency;
- unbatched drain: the backlog drain again with the sender restarted with
  ``BORDERLINK_DELIVERY_BATCH_SIZE=1`` (concurrency 2, the default, then 8), so every message is its
  own POST, its own receiver commit and its own receipt. The "one message at a time" target is
  judged on this phase (at the default concurrency): it is the unbatched throughput, where the
  sequential phase only measures one round trip.

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

from bench.node_pair import (
    MESSAGE_TYPE,
    RECEIVER,
    SENDER,
    TTL,
    Pair,
    limits_env,
)

TARGETS = {"backed_up": 4000.0, "one_at_a_time": 1500.0, "steady_p99_ms": 20.0}
UNBATCHED_CONCURRENCY = (2, 8)  # 2 is the default; the target is judged on the first
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


QUICK = Plan(
    backlog=600,
    send_threads=8,
    serial=150,
    steady_rate=100,
    steady_seconds=3,
    crypto_seconds=1.0,
    phase_timeout=15,
)
FULL = Plan(
    backlog=4000,
    send_threads=8,
    serial=1000,
    steady_rate=100,
    steady_seconds=10,
    crypto_seconds=3.0,
    phase_timeout=60,
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

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q) if self.latencies_ms else float("nan")


# crypto ceiling --------------------------------------------------------------------------------


@dataclass
class Ceiling:
    per_op_us: dict[str, float]
    noise: float = 0.0  # relative gap between the two measurements of one run

    @property
    def per_message(self) -> float:
        """Messages/s, one receipt per message (the unbatched path)."""
        return 1e6 / sum(self.per_op_us.values())

    def batched(self, batch: int) -> float:
        """Messages/s when one receipt covers ``batch`` messages (the backed-up path)."""
        ops = self.per_op_us
        per = ops["seal"] + ops["open"] + (ops["receipt sign"] + ops["receipt verify"]) / batch
        return 1e6 / per


def crypto_ceiling(seconds: float, body: bytes) -> Ceiling:
    from protocol.envelope import open_envelope, seal
    from protocol.identity import Identity
    from protocol.receipt import sign_receipt, verify_receipt

    alice, bob = Identity.generate(), Identity.generate()

    def sender_of(_node_id: bytes) -> Any:
        return alice.public

    now = int(time.time())
    totals = dict.fromkeys(("seal", "open", "receipt sign", "receipt verify"), 0.0)
    n = 0
    deadline = time.perf_counter() + seconds
    while n < 200_000 and (n < 20 or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        data = seal(alice, [bob.public], MESSAGE_TYPE, body, now=now, ttl=TTL).encode()
        t1 = time.perf_counter()
        opened = open_envelope(data, bob, sender_of=sender_of, now=now)
        t2 = time.perf_counter()
        receipt = sign_receipt(bob, alice.node_id, [(opened.id, opened.content_hash)], now=now)
        t3 = time.perf_counter()
        verify_receipt(receipt, signer=bob.public, sender=alice.node_id)
        t4 = time.perf_counter()
        for key, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[key] += dt
        n += 1
    return Ceiling({k: v / n * 1e6 for k, v in totals.items()})


# the two nodes ---------------------------------------------------------------------------------


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
    t0 = time.time()
    deadline = time.monotonic() + plan.phase_timeout
    with ThreadPoolExecutor(plan.send_threads) as pool:
        ids = list(pool.map(lambda _i: pair.send(body), range(plan.backlog)))
    queued = time.time()
    at_queued = pair.delivered() - before
    pair.wait_delivered(before + len(ids), deadline)
    times = pair.times(ids)
    ph.sent, ph.delivered = len(ids), len(times)
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
    ph = Phase(name)
    receiver = pair.nodes[RECEIVER]
    receiver.stop()
    deadline = time.monotonic() + plan.phase_timeout
    with ThreadPoolExecutor(plan.send_threads) as pool:
        ids = list(pool.map(lambda _i: pair.send(body), range(plan.backlog)))
    before = pair.delivered()
    receiver.start()
    pair.wait_delivered(before + len(ids), deadline)
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


def report(
    plan: Plan,
    mode: str,
    ceiling: Ceiling,
    phases: list[Phase],
    problems: list[str],
    setup_s: float,
    total_s: float,
    refused: int = 0,
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
        "",
    ]
    lines.append(f"crypto ceiling, one core, per message (best of two, {ceiling.noise:.0%} apart):")
    for op, us in ceiling.per_op_us.items():
        lines.append(f"  {op:<15} {us:8.1f} us")
    lines.append(
        f"  => {ceiling.per_message:,.0f} msg/s with a receipt per message; "
        f"{ceiling.batched(64):,.0f} msg/s with one receipt per 64"
    )
    lines.append("")
    w = max(len(ph.name) for ph in phases)
    lines.append(
        f"{'phase':<{w}} {'sent':>6} {'deliv':>6} {'msg/s':>8} {'/ceiling':>9} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    for ph in phases:
        worst = max(ph.latencies_ms) if ph.latencies_ms else float("nan")
        lines.append(
            f"{ph.name:<{w}} {ph.sent:>6} {ph.delivered:>6} {ph.rate:>8,.0f} "
            f"{ph.rate / ceiling.per_message:>9.1%} {ph.p(50):>8.1f} {ph.p(99):>8.1f} "
            f"{worst:>8.1f}"
        )
    for ph in phases:
        for note in ph.notes:
            lines.append(f"  {ph.name}: {note}")
    lines.append("")
    by = {ph.name: ph for ph in phases}
    unbatched = by[f"unbatched drain, c={UNBATCHED_CONCURRENCY[0]}"]
    others = ", ".join(
        f"c={c} {by[f'unbatched drain, c={c}'].rate:,.0f}" for c in UNBATCHED_CONCURRENCY[1:]
    )
    checks = [
        ("backlog drain >= 4,000 msg/s", by["backlog drain"].rate >= TARGETS["backed_up"]),
        ("backlog drain >= half the ceiling", by["backlog drain"].rate >= ceiling.per_message / 2),
        (
            f"one message at a time >= 1,500 msg/s, judged on the {unbatched.name} "
            f"({unbatched.rate:,.0f} msg/s; {others}; {SEQUENTIAL}: "
            f"{by[SEQUENTIAL].rate:,.0f} msg/s, not judged)",
            unbatched.rate >= TARGETS["one_at_a_time"],
        ),
        (
            "steady p99 < 20 ms",
            by[f"steady {plan.steady_rate:.0f}/s"].p(99) < TARGETS["steady_p99_ms"],
        ),
    ]
    lines.append("targets:")
    lines.extend(f"  {name}: {'met' if ok else 'MISSED'}" for name, ok in checks)
    lines.append(
        "durability audit: "
        + (
            "every stored receipt verifies and covers its message; receiver inbox count matches"
            if not problems
            else "; ".join(problems[:5])
        )
    )
    lines.append(f"setup {setup_s:.1f} s, total {total_s:.1f} s")
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
    from protocol.schemas import decode_body, encode_body

    plan, mode = _plan(args)
    started = time.monotonic()
    body = body_1k()
    raw = encode_body(decode_body(MESSAGE_TYPE, json.dumps(body).encode()))
    before = crypto_ceiling(plan.crypto_seconds, raw)
    with tempfile.TemporaryDirectory(prefix="bl-bench-") as tmp:
        t_setup = time.monotonic()
        pair = Pair(Path(tmp))
        setup_s = time.monotonic() - t_setup
        try:
            for _ in range(3):  # warm up connections, workers and caches
                pair.send(body)
            pair.wait_delivered(3, time.monotonic() + 10)
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
    # Measured on both sides of the node phases; the faster is the ceiling, the gap is noise.
    after = crypto_ceiling(plan.crypto_seconds, raw)
    ceiling = max(before, after, key=lambda c: c.per_message)
    ceiling.noise = abs(before.per_message - after.per_message) / ceiling.per_message
    return report(
        plan, mode, ceiling, phases, problems, setup_s, time.monotonic() - started, refused
    )


if __name__ == "__main__":
    import sys

    print(run(sys.argv[1:]))
