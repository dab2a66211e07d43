"""A peer that is down for a while: retries back off (capped), the operator sees why, and delivery
completes once the peer is back (PROTOCOL.md 11.4).

Backoff is shortened through the environment, the way an operator would override the config:
``BORDERLINK_DELIVERY_BACKOFF_BASE`` and ``BORDERLINK_DELIVERY_BACKOFF_MAX``.

Nothing here counts what happened within some seconds: on a loaded machine a node gets fewer
tries done per second, and that is no fault. The backoff is read from what the node recorded for
each failed try: its log's ``delivery.failed`` lines (``retry_in``: the delay it scheduled) and
the outbox row (attempts, next_attempt). The schedule itself, with the clock under the test's
control, is tests/unit/node/test_delivery_schedule.py.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from cli.admin_client import call
from tests.integration.harness import NodeProc, make_network, stop_all
from tests.integration.waiting import log_events, wait_until

BASE = 0.1
MAX = 0.8
TRIES = 6  # delays 0.1, 0.2, 0.4, then the 0.8 cap three times (each jittered by 0.5..1)
ROUNDING = 0.005  # the log's retry_in is rounded to 2 decimals


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[dict[str, NodeProc]]:
    nodes = make_network(
        tmp_path,
        ["bar-pcu", "belgrade-accu"],
        extra_env={
            "BORDERLINK_DELIVERY_BACKOFF_BASE": str(BASE),
            "BORDERLINK_DELIVERY_BACKOFF_MAX": str(MAX),
            "BORDERLINK_LOG_LEVEL": "debug",  # a delivery.failed line per message and try
        },
    )
    yield nodes
    stop_all(nodes)


def outbox(node: NodeProc, msg_id: str) -> dict[str, Any]:
    """One message's row, through the admin API ``outbox --json`` prints (fast enough to poll)."""
    [row] = call(node.home / "admin.sock", "GET", f"/v1/outbox?id={msg_id}")["items"]
    return dict(row)


def retries(node: NodeProc, msg_id: str) -> list[float]:
    """The delay the node scheduled after each failed try of ``msg_id``, first try first.

    The k-th failure (from 0) was scheduled from ``attempts == k``: a row is in one batch at a
    time, and each failure is written before it is logged."""
    return [e["retry_in"] for e in log_events(node, "delivery.failed") if e["message_id"] == msg_id]


def test_peer_down_backs_off_reports_and_delivers_when_back(
    pair: dict[str, NodeProc], tmp_path: Path
) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    alert = tmp_path / "alert.json"
    alert.write_text(bar.cli("template", "seizure-alert").stdout)
    assert bel.stop() == 0
    ids = [
        bar.json("send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert))["id"]
        for _ in range(3)
    ]
    wait_until(
        lambda: len(retries(bar, ids[0])) >= TRIES and all(retries(bar, i) for i in ids[1:]),
        lambda: (
            f"{TRIES} failed tries of the first message, one of each other: "
            f"{[retries(bar, i) for i in ids]}"
        ),
    )

    # Each failed try pushed the next one further out: base * 2^attempts, jittered by 0.5..1,
    # never more than backoff_max.
    delays = retries(bar, ids[0])
    for attempt, delay in enumerate(delays):
        ideal = min(MAX, BASE * 2**attempt)
        assert 0.5 * ideal - ROUNDING <= delay <= ideal + ROUNDING, (attempt, delays)
    assert delays[3] > delays[0]  # at least 0.4 after at most 0.1: it grew
    assert all(d >= 0.5 * MAX - ROUNDING for d in delays[3:])  # then stayed at the cap

    # What the operator sees.
    rows = {r["id"]: r for r in bar.json("outbox")["items"]}
    now = time.time()
    for msg_id in ids:
        row = rows[msg_id]
        assert row["peer"] == "belgrade-accu" and row["status"] in ("failed", "delivering"), row
        assert row["last_error"] == f"connection refused by belgrade-accu at 127.0.0.1:{bel.port}"
    first = rows[ids[0]]
    assert first["status"] == "failed" and first["attempts"] >= TRIES
    assert first["next_attempt"] - now <= MAX  # set at the last failure, which is past
    before = time.time()
    status = bar.json("status")
    after = time.time()
    [link] = [p for p in status["peers"] if p["name"] == "belgrade-accu"]
    assert (link["link"], link["queued"]) == ("down", 3)
    assert "delivered" not in status["outbox"] and sum(status["outbox"].values()) == 3
    oldest = min(rows[i]["queued_at"] for i in ids)  # the node's age is now - this, to 0.1 s
    assert before - oldest - 0.1 <= status["oldest_undelivered_age"] <= after - oldest + 0.1

    # The peer comes back: the next try gets through.
    bel.start()
    wait_until(
        lambda: all(outbox(bar, i)["status"] == "delivered" for i in ids),
        lambda: f"delivery once the peer was back: {[outbox(bar, i) for i in ids]}",
    )
    assert sorted(m["id"] for m in bel.json("inbox")["items"]) == sorted(ids)
    for msg_id in ids:  # every try is accounted for: each failure logged, then one success
        assert outbox(bar, msg_id)["attempts"] == len(retries(bar, msg_id)) + 1
    status = bar.json("status")
    assert [p["link"] for p in status["peers"]] == ["up"]
    assert status["outbox"] == {"delivered": 3} and status["oldest_undelivered_age"] is None


@pytest.fixture
def single_worker_pair(tmp_path: Path) -> Iterator[dict[str, NodeProc]]:
    nodes = make_network(
        tmp_path,
        ["bar-pcu", "belgrade-accu"],
        extra_env={
            "BORDERLINK_DELIVERY_BACKOFF_BASE": str(BASE),
            "BORDERLINK_DELIVERY_BACKOFF_MAX": str(MAX),
            "BORDERLINK_DELIVERY_CONCURRENCY": "1",
            "BORDERLINK_LOG_LEVEL": "debug",
        },
    )
    yield nodes
    stop_all(nodes)


def test_delivery_resumes_after_the_database_was_locked(
    single_worker_pair: dict[str, NodeProc], tmp_path: Path
) -> None:
    """A transient database fault (here another process holding the write lock past the node's
    5 s busy timeout; in the field a full disk or an I/O error) must delay delivery, not end it."""
    bar, bel = single_worker_pair["bar-pcu"], single_worker_pair["belgrade-accu"]
    alert = tmp_path / "alert.json"
    alert.write_text(bar.cli("template", "seizure-alert").stdout)
    assert bel.stop() == 0
    msg_id = bar.json("send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert))["id"]
    wait_until(lambda: len(retries(bar, msg_id)) >= 2, "the worker retrying on its schedule")

    with closing(sqlite3.connect(bar.home / "node.db", isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # e.g. an operator's sqlite3 shell in a transaction
        # Held until the worker's next try has waited out the busy timeout and failed on it.
        wait_until(
            lambda: log_events(bar, "delivery.worker_error"),
            "the worker failing on the locked database",
        )
        other.execute("ROLLBACK")
    # Still to deliver: a failed try is retried, never given up on or lost.
    assert outbox(bar, msg_id)["status"] in ("failed", "delivering")

    bel.start()
    wait_until(
        lambda: outbox(bar, msg_id)["status"] == "delivered",
        lambda: f"delivery after the lock was gone: {outbox(bar, msg_id)}",
    )
