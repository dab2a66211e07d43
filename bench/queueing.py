"""Queueing through the batch path (issue 12): what ``POST /v1/send/batch`` queues per second
against the seal-only ceiling of the same machine, and the wall time of one ``borderlink send -``
process queueing 1,000 alerts from a JSON-lines file.

One real node (``borderlink serve``) with one trusted peer that is not running: nothing is
delivered, so delivery takes no CPU from the queueing being measured (its one wake-up per batch
finds the peer down and backs off). The ceiling is ``node.sending.sealed``, the function the node
seals a chunk with, timed on this process's one core: the node also validates, commits and
answers, so the ratio says what the rest of the path costs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import aims
from bench.node_pair import MESSAGE_TYPE, RECEIVER, SENDER, TTL
from bench.node_throughput import body_1k

AIM_RATE = 5000.0  # msg/s through the batch path
AIM_CLI_SECONDS = 1.0  # one `borderlink send -` process, 1,000 alerts
CLI_ALERTS = 1000
# The peer is down: after its first failure, delivery waits an hour before trying an entry again.
QUIET = {"BORDERLINK_DELIVERY_BACKOFF_BASE": "3600", "BORDERLINK_DELIVERY_BACKOFF_MAX": "3600"}


@dataclass(frozen=True)
class Plan:
    batch: int  # messages per batch call
    batches: int  # calls; the fastest counts
    cli_runs: int  # `borderlink send -` processes; the fastest counts
    seal_messages: int


QUICK = Plan(batch=1000, batches=1, cli_runs=1, seal_messages=500)
FULL = Plan(batch=10_000, batches=3, cli_runs=3, seal_messages=5000)


@dataclass(frozen=True)
class Figures:
    batch_rate: float  # msg/s, one batch call, the best of the run
    seal_rate: float  # msg/s, sealing alone
    cli_seconds: float  # one `borderlink send -` of CLI_ALERTS

    @property
    def ratio(self) -> float:
        return self.batch_rate / self.seal_rate if self.seal_rate else 0.0


def seal_ceiling(body: bytes, count: int) -> float:
    """Messages/s of ``node.sending.sealed`` for one recipient, on this process's thread."""
    from node.outgoing import Prepared, sealed
    from protocol.identity import Identity

    alice, bob = Identity.generate(), Identity.generate()
    bodies = [Prepared(body, "routine", "GREEN")] * count
    t0 = time.perf_counter()
    sealed(alice, [bob.public], MESSAGE_TYPE, bodies, now=int(time.time()), ttl=TTL)
    return count / (time.perf_counter() - t0)


def batch_rate(sock: Path, body: dict[str, Any], count: int) -> float:
    """Messages/s of one ``POST /v1/send/batch`` of ``count`` bodies (encoded beforehand)."""
    import msgspec

    from cli.admin_client import call

    request = {"to": [RECEIVER], "type": MESSAGE_TYPE, "bodies": [body] * count, "ttl": TTL}
    payload = msgspec.json.encode(request)
    t0 = time.perf_counter()
    ids = call(sock, "POST", "/v1/send/batch", encoded=payload, timeout=600)["ids"]
    seconds = time.perf_counter() - t0
    if len(set(ids)) != count:
        raise RuntimeError(f"the batch answered {len(set(ids))} ids for {count} bodies")
    return count / seconds


def cli_seconds(home: Path, lines: Path, env: dict[str, str]) -> float:
    """Wall time of one ``borderlink send ... -`` process reading ``lines`` on its stdin."""
    argv = [sys.executable, "-m", "cli.main", "--home", str(home), "send"]
    argv += ["--to", RECEIVER, "--type", MESSAGE_TYPE, "-"]
    root = Path(__file__).resolve().parents[1]
    with lines.open("rb") as stdin:
        t0 = time.perf_counter()
        proc = subprocess.run(argv, stdin=stdin, capture_output=True, env=env, cwd=root)
        seconds = time.perf_counter() - t0
    if proc.returncode != 0 or len(proc.stdout.split()) != CLI_ALERTS:
        raise RuntimeError(f"borderlink send - exited {proc.returncode}: {proc.stderr[-500:]!r}")
    return seconds


def settle(db: Path, patience: float = 60.0) -> None:
    """Wait until delivery has tried (and failed) every queued entry: a batch then takes no CPU
    from the next one being measured (the long backoff of :data:`QUIET` keeps it quiet)."""
    import sqlite3

    deadline = time.monotonic() + patience
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        while time.monotonic() < deadline:
            query = "SELECT COUNT(*) FROM outbox WHERE status IN ('queued', 'delivering')"
            if conn.execute(query).fetchone()[0] == 0:
                return
            time.sleep(0.02)


def measure(plan: Plan) -> Figures:
    from protocol.schemas import decode_body, encode_body
    from tests.integration.harness import env, make_network, stop_all

    body = body_1k()
    raw = encode_body(decode_body(MESSAGE_TYPE, json.dumps(body).encode()))
    with tempfile.TemporaryDirectory(prefix="bl-bench-") as tmp:
        root = Path(tmp)
        nodes = make_network(root, [SENDER, RECEIVER], start=False, extra_env=QUIET)
        sender = nodes[SENDER]
        try:
            sender.start()
            sock = sender.home / "admin.sock"
            batch_rate(sock, body, 10)  # warm: imports, caches, the peer's parsed card
            rates = []
            for _ in range(plan.batches):
                settle(sender.home / "node.db")
                rates.append(batch_rate(sock, body, plan.batch))
            settle(sender.home / "node.db")
            lines = root / "alerts.jsonl"
            lines.write_text((json.dumps(body) + "\n") * CLI_ALERTS)
            cli = [cli_seconds(sender.home, lines, env()) for _ in range(plan.cli_runs)]
        finally:
            stop_all(nodes)
    return Figures(max(rates), seal_ceiling(raw, plan.seal_messages), min(cli))


def report(fig: Figures, plan: Plan, mode: str) -> str:
    met_rate = "met" if fig.batch_rate >= AIM_RATE else "MISSED"
    met_cli = "met" if fig.cli_seconds < AIM_CLI_SECONDS else "MISSED"
    return "\n".join(
        [
            f"mode: {mode}; batches of {plan.batch:,} 1 KiB alerts to one peer (best of "
            f"{plan.batches}), {os.cpu_count()} CPUs",
            f"batch endpoint        {fig.batch_rate:>9,.0f} msg/s   aim >= {AIM_RATE:,.0f}: "
            f"{met_rate}",
            f"seal-only ceiling     {fig.seal_rate:>9,.0f} msg/s   one core",
            f"batch / ceiling       {fig.ratio:>9.2f}",
            f"send - of {CLI_ALERTS:,} alerts  {fig.cli_seconds:>9.3f} s       aim < "
            f"{AIM_CLI_SECONDS:g} s: {met_cli}  (one process, best of {plan.cli_runs})",
            aims.block(judge(fig, plan)),
        ]
    )


def judge(fig: Figures, plan: Plan) -> list[aims.Aim]:
    """The two queueing aims in the common form (bench/aims.py): absolute limits, so the ratio
    is to the limit; the seal-only ceiling of the run is in the why."""
    return [
        aims.Aim(
            "queueing",
            fig.batch_rate,
            "msg/s",
            AIM_RATE,
            "limit",
            1.0,
            True,
            f"best of {plan.batches} batches of {plan.batch:,}; the seal-only ceiling of this run "
            f"is {fig.seal_rate:,.0f} msg/s on one core and the batch path reached "
            f"{fig.ratio:.2f} of it: validation, the queue commit and the audit entries are the "
            "rest of each message's cost",
        ),
        aims.Aim(
            "send-1000",
            fig.cli_seconds,
            "s",
            AIM_CLI_SECONDS,
            "limit",
            1.0,
            False,
            f"one `borderlink send -` process of {CLI_ALERTS:,} 1 KiB alerts from a JSON-lines "
            f"file, best of {plan.cli_runs}, process start and the node's queueing included",
        ),
    ]


def run(args: Any = None) -> str:
    """Measure once and return the report (``args.quick``: one batch of 1,000, one CLI run)."""
    if isinstance(args, Sequence) and not isinstance(args, str):
        parser = argparse.ArgumentParser(prog="bench.queueing")
        parser.add_argument("--quick", action="store_true")
        args = parser.parse_args(list(args))
    quick = bool(getattr(args, "quick", False))
    plan, mode = (QUICK, "quick") if quick else (FULL, "full")
    return report(measure(plan), plan, mode)


if __name__ == "__main__":
    print(run(sys.argv[1:]))
