"""Crashes and shutdowns in the middle of a stream: at-least-once on the wire, exactly-once inbox.

Real ``borderlink serve`` processes on 127.0.0.1 and their real SQLite files. Messages are queued
through the sender's admin API (the same call ``borderlink send`` makes) from a few threads, so a
stream of a thousand costs no thousand CLI processes. The outcome is read from ``node.db`` directly,
read-only: the inbox holds exactly the ids ``send`` returned, and every outbox row holds a receipt
that verifies against the receiver's card and names the message's content hash (PROTOCOL.md 11).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from cli.admin_client import call
from keys.card import parse_card
from protocol.errors import NodeUnreachable
from protocol.receipt import ReceiptBody, receipt_covers, verify_receipt
from tests.integration.harness import NodeProc, make_network, stop_all
from tests.integration.waiting import PATIENCE, log_events, start, wait_until

STREAM = 1000  # the required minimum
SENDER_THREADS = 4
# Bounds that end a failing test, not budgets: on a loaded machine the stream takes many times
# its usual second or two, and the tests assert on what the databases hold, never on speed.
SEND_DEADLINE = 2 * PATIENCE  # the whole stream, outages included
DRAIN_DEADLINE = 2 * PATIENCE


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[dict[str, NodeProc]]:
    # debug: a line per message received, which accepted_at_most_once counts
    nodes = make_network(
        tmp_path, ["bar-pcu", "belgrade-accu"], extra_env={"BORDERLINK_LOG_LEVEL": "debug"}
    )
    yield nodes
    stop_all(nodes)


# -- the stream ----------------------------------------------------------------------------------


class Stream:
    """``total`` sends to one peer from a few threads; ``ids`` holds every id the node returned.

    A send that finds the node unreachable (killed, or not yet restarted) is counted in
    ``unreachable`` and replaced by a new one after a short pause, until ``total`` ids were returned
    or the deadline passes. Such a send may still have been queued if the kill swallowed its answer.
    """

    def __init__(self, node: NodeProc, to: str, body: Any, total: int) -> None:
        self.socket = node.home / "admin.sock"
        self.request = {"to": [to], "type": "seizure-alert", "body": body, "ttl": 3600}
        self.total = total
        self.ids: list[str] = []
        self.unreachable = 0
        self.errors: list[str] = []
        self._claimed = 0
        self._lock = threading.Lock()
        self._deadline = time.monotonic() + SEND_DEADLINE
        self._threads = [
            threading.Thread(target=self._run, daemon=True) for _ in range(SENDER_THREADS)
        ]
        self.started = time.monotonic()
        self.elapsed = 0.0

    def __enter__(self) -> Stream:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.join()

    @property
    def accepted(self) -> int:
        with self._lock:
            return len(self.ids)

    def _run(self) -> None:
        while time.monotonic() < self._deadline:
            with self._lock:
                if self._claimed >= self.total:
                    return
                self._claimed += 1
            try:
                res = call(self.socket, "POST", "/v1/send", self.request, timeout=PATIENCE)
            except NodeUnreachable:
                with self._lock:
                    self._claimed -= 1
                    self.unreachable += 1
                time.sleep(0.05)
                continue
            except Exception as exc:  # reported by join(), not swallowed
                with self._lock:
                    self.errors.append(repr(exc))
                return
            with self._lock:
                self.ids.append(res["id"])

    def wait_for(self, accepted: int) -> None:
        def enough() -> bool:
            assert not self.errors, self.errors
            return self.accepted >= accepted

        wait_until(enough, lambda: f"{accepted} sends accepted (only {self.accepted})")

    def join(self) -> None:
        for t in self._threads:
            t.join(SEND_DEADLINE + 30)
        self.elapsed = time.monotonic() - self.started
        assert not self.errors, self.errors
        assert len(self.ids) == self.total, f"{len(self.ids)} of {self.total} sends accepted"
        assert len(set(self.ids)) == len(self.ids), "send returned one id twice"


def template(node: NodeProc) -> Any:
    return json.loads(node.cli("template", "seizure-alert").stdout)


# -- reading node.db read-only -------------------------------------------------------------------


def query(node: NodeProc, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{node.home / 'node.db'}?mode=ro", uri=True, timeout=10)
    with closing(db):
        return db.execute(sql, args).fetchall()


def inbox_count(node: NodeProc) -> int:
    return int(query(node, "SELECT COUNT(*) FROM inbox")[0][0])


def outbox_counts(node: NodeProc) -> dict[str, int]:
    return dict(query(node, "SELECT status, COUNT(*) FROM outbox GROUP BY status"))


def wait_drained(sender: NodeProc, expected: int) -> float:
    """Until every one of ``expected`` outbox rows is delivered; returns the seconds it took (for
    the report only: no test asserts on it)."""
    began = time.monotonic()

    def drained() -> bool:
        assert sender.proc is not None and sender.proc.poll() is None, "the sender died"
        return outbox_counts(sender) == {"delivered": expected}

    wait_until(
        drained,
        lambda: f"the outbox drained: {outbox_counts(sender)}",
        timeout=DRAIN_DEADLINE,
        interval=0.1,
    )
    return time.monotonic() - began


def assert_exactly_once(sender: NodeProc, receiver: NodeProc, ids: set[str]) -> None:
    """The receiver's inbox holds exactly ``ids``; each sender row has a covering, valid receipt."""
    inbox = query(receiver, "SELECT id, sender, content_hash FROM inbox")
    assert len(inbox) == len(ids)
    assert {bytes(i).hex() for i, _, _ in inbox} == ids
    sent = {
        bytes(i).hex(): bytes(h) for i, h in query(sender, "SELECT id, content_hash FROM messages")
    }
    assert set(sent) == ids
    me = parse_card(sender.home.joinpath("card.txt").read_text(), now=None).identity
    peer = parse_card(receiver.home.joinpath("card.txt").read_text(), now=None).identity
    assert {(bytes(s), bytes(h)) for i, s, h in inbox} <= {(me.node_id, h) for h in sent.values()}
    for i, _, h in inbox:
        assert sent[bytes(i).hex()] == bytes(h), "inbox content hash differs from the one sealed"
    rows = query(
        sender,
        "SELECT o.msg_id, o.peer, o.status, o.receipt, m.content_hash "
        "FROM outbox o JOIN messages m ON m.id = o.msg_id",
    )
    assert len(rows) == len(ids)
    verified: dict[bytes, ReceiptBody] = {}  # one receipt covers a batch: verify each once
    for msg_id, peer_id, status, receipt, content_hash in rows:
        assert (bytes(peer_id), status) == (peer.node_id, "delivered")
        assert receipt is not None, f"{bytes(msg_id).hex()} delivered without a receipt"
        receipt = bytes(receipt)
        if receipt not in verified:
            verified[receipt] = verify_receipt(receipt, signer=peer, sender=me.node_id)
        assert receipt_covers(verified[receipt], bytes(msg_id), bytes(content_hash))


def accepted_at_most_once(receiver: NodeProc) -> None:
    """No id was ever accepted twice (a retry after a lost answer must come back ``duplicate``)."""
    accepted = Counter(
        e["message_id"]
        for e in log_events(receiver, "message.received")
        if e.get("outcome") == "accepted"
    )
    assert [i for i, n in accepted.items() if n > 1] == []


def report(label: str, **numbers: float) -> None:
    print(
        f"\n{label}: "
        + ", ".join(
            f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in numbers.items()
        )
    )


# -- the tests -----------------------------------------------------------------------------------


def test_receiver_killed_mid_stream_gets_every_message_exactly_once(
    pair: dict[str, NodeProc],
) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    with Stream(bar, "belgrade-accu", template(bar), STREAM) as stream:
        stream.wait_for(300)
        # Deliveries trail the sends, the more so on a loaded machine: kill once some arrived.
        wait_until(lambda: inbox_count(bel) > 0, "a first delivery")
        bel.kill9()
        at_kill = stream.accepted
        inbox_at_kill = inbox_count(bel)
        stream.wait_for(at_kill + 150)  # sending goes on while the peer is down
        wait_until(lambda: outbox_counts(bar).get("failed", 0) > 0, "a delivery failing")
        start(bel)
    drained = wait_drained(bar, STREAM)
    assert 0 < inbox_at_kill < STREAM, "the kill did not land in the middle of the stream"
    assert_exactly_once(bar, bel, set(stream.ids))
    accepted_at_most_once(bel)
    report(
        "receiver kill -9",
        sends=STREAM,
        send_s=stream.elapsed,
        sends_per_s=STREAM / stream.elapsed,
        at_kill=at_kill,
        inbox_at_kill=inbox_at_kill,
        drain_after_sends_s=drained,
    )


def test_sender_killed_mid_stream_resumes_and_delivers_exactly_once(
    pair: dict[str, NodeProc],
) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    with Stream(bar, "belgrade-accu", template(bar), STREAM) as stream:
        stream.wait_for(500)
        bar.kill9()
        at_kill = outbox_counts(bar)
        start(bar)
    # Rows that were in flight at the kill went back to 'failed' on start, and were retried.
    started = log_events(bar, "node.started")
    assert len(started) == 2 and started[-1]["resumed"] == at_kill.get("delivering", 0)
    # A send whose answer the kill swallowed may or may not have been queued; whatever the
    # sender's database holds is delivered, and it holds every id that send returned.
    queued = query(bar, "SELECT COUNT(*) FROM messages")[0][0]
    assert STREAM <= queued <= STREAM + stream.unreachable
    drained = wait_drained(bar, queued)
    all_ids = {bytes(i).hex() for (i,) in query(bar, "SELECT id FROM messages")}
    assert set(stream.ids) <= all_ids
    assert_exactly_once(bar, bel, all_ids)
    accepted_at_most_once(bel)
    report(
        "sender kill -9",
        sends=STREAM,
        send_s=stream.elapsed,
        at_kill=sum(at_kill.values()),
        delivering_at_kill=at_kill.get("delivering", 0),
        unreachable_sends=stream.unreachable,
        drain_after_sends_s=drained,
    )


def test_sigterm_with_queued_work_exits_0_and_loses_nothing(pair: dict[str, NodeProc]) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    total = 300
    with Stream(bar, "belgrade-accu", template(bar), total) as stream:
        stream.wait_for(100)
        assert bel.stop() == 0  # the receiver, while batches are arriving
    # The sender now has work it cannot deliver; stopping it must keep all of it.
    undelivered = outbox_counts(bar)
    assert bar.stop() == 0
    after = outbox_counts(bar)
    assert "delivering" not in after, "a clean stop left rows in flight"
    assert sum(after.values()) == total and after.get("delivered", 0) < total, after
    assert after.get("delivered", 0) >= undelivered.get("delivered", 0)
    assert [e["node"] for e in log_events(bar, "node.stopped")] == ["bar-pcu"]
    assert [e["node"] for e in log_events(bel, "node.stopped")] == ["belgrade-accu"]
    bel.start(wait=False)
    start(bar)
    bel.wait_ready(timeout=PATIENCE)
    wait_drained(bar, total)
    assert_exactly_once(bar, bel, set(stream.ids))
    accepted_at_most_once(bel)
