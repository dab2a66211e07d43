"""A peer that is down for a while: retries back off (capped), the operator sees why, and delivery
completes once the peer is back (PROTOCOL.md 11.4).

Backoff is shortened through the environment, the way an operator would override the config:
``BORDERLINK_DELIVERY_BACKOFF_BASE`` and ``BORDERLINK_DELIVERY_BACKOFF_MAX``.
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

BASE = 0.2
MAX = 2.0
SLACK = 0.5  # from a row falling due to its failure being written, on a busy 2-core machine
WATCH = 12.0  # enough for 6 tries: at most 0.2 + 0.4 + 0.8 + 1.6 + 2 + 2 s of backoff


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[dict[str, NodeProc]]:
    nodes = make_network(
        tmp_path,
        ["bar-pcu", "belgrade-accu"],
        extra_env={
            "BORDERLINK_DELIVERY_BACKOFF_BASE": str(BASE),
            "BORDERLINK_DELIVERY_BACKOFF_MAX": str(MAX),
        },
    )
    yield nodes
    stop_all(nodes)


def outbox(node: NodeProc, msg_id: str) -> dict[str, Any]:
    """One message's row, through the admin API ``outbox --json`` prints (fast enough to poll)."""
    [row] = call(node.home / "admin.sock", "GET", f"/v1/outbox?id={msg_id}")
    return dict(row)


def watch_retries(node: NodeProc, msg_id: str, tries: int) -> dict[int, float]:
    """attempts -> next_attempt, for each failed try seen, until ``tries`` tries have failed."""
    seen: dict[int, float] = {}
    deadline = time.monotonic() + WATCH
    while time.monotonic() < deadline:
        row = outbox(node, msg_id)
        assert row["status"] in ("queued", "delivering", "failed"), row
        if row["status"] == "failed":
            seen.setdefault(row["attempts"], row["next_attempt"])
            if row["attempts"] >= tries:
                return seen
        time.sleep(0.01)
    raise AssertionError(f"only these tries failed within {WATCH:.0f} s: {seen}")


def test_peer_down_backs_off_reports_and_delivers_when_back(
    pair: dict[str, NodeProc], tmp_path: Path
) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    alert = tmp_path / "alert.json"
    alert.write_text(bar.cli("template", "seizure-alert").stdout)
    assert bel.stop() == 0
    first_sent = time.time()
    ids = [
        bar.json("send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert))["id"]
        for _ in range(3)
    ]

    # Each failed try pushes the next one further out: base * 2^attempts (jittered by 0.5..1),
    # never more than backoff_max. next_attempt[a + 1] - next_attempt[a] is that delay plus the
    # time from falling due to failing, which is small.
    tries = watch_retries(bar, ids[0], tries=6)
    gaps = {a: tries[a + 1] - tries[a] for a in sorted(tries) if a + 1 in tries}
    assert len(gaps) >= 4, tries
    for a, gap in gaps.items():
        delay = min(MAX, BASE * 2**a)
        assert 0.5 * delay <= gap <= delay + SLACK, (a, gap, tries)
    assert gaps[max(gaps)] > gaps[min(gaps)]
    assert max(gaps.values()) <= MAX + SLACK

    # What the operator sees.
    rows = {r["id"]: r for r in bar.json("outbox")}
    now = time.time()
    for msg_id in ids:
        row = rows[msg_id]
        assert row["peer"] == "belgrade-accu" and row["status"] in ("failed", "delivering"), row
        assert row["last_error"] == f"connection refused by belgrade-accu at 127.0.0.1:{bel.port}"
    first = rows[ids[0]]
    assert first["status"] == "failed" and first["attempts"] >= 6
    assert first["next_attempt"] - now <= MAX
    status = bar.json("status")
    [link] = [p for p in status["peers"] if p["name"] == "belgrade-accu"]
    assert (link["link"], link["queued"]) == ("down", 3)
    assert "delivered" not in status["outbox"] and sum(status["outbox"].values()) == 3
    assert (
        time.time() - first_sent - 1
        <= status["oldest_undelivered_age"]
        <= time.time() - first_sent + 1
    )

    # The peer comes back: the next try, at most backoff_max away, gets through.
    bel.start()
    back = time.monotonic()
    while not all(outbox(bar, i)["status"] == "delivered" for i in ids):
        assert time.monotonic() - back < MAX + 5, [outbox(bar, i) for i in ids]
        time.sleep(0.05)
    assert sorted(m["id"] for m in bel.json("inbox")) == sorted(ids)
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
    watch_retries(bar, msg_id, tries=2)  # the worker is retrying on its backoff schedule

    with closing(sqlite3.connect(bar.home / "node.db", isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # e.g. an operator's sqlite3 shell in a transaction
        time.sleep(7.5)  # the worker's next try falls due and waits out the 5 s busy timeout
        other.execute("ROLLBACK")
    # Still to deliver: a failed try is retried, never given up on or lost.
    assert outbox(bar, msg_id)["status"] in ("failed", "delivering")

    bel.start()
    back = time.monotonic()
    while outbox(bar, msg_id)["status"] != "delivered":
        assert time.monotonic() - back < MAX + 5, (
            f"not delivered after the lock was gone: {outbox(bar, msg_id)}"
        )
        time.sleep(0.05)
