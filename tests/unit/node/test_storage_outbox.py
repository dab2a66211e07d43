"""The outbox half of the SQLite store: due entries through the partial index, in-flight ids
skipped, and taking them is a read (the in-flight state lives in the delivery worker,
PROTOCOL.md 11.4)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.storage import QueuedMessage, Store
from node.storage.sqlite import open_store

PEER, OTHER = b"p" * 32, b"q" * 32
NOW = 1_790_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "n.db")
    yield s
    s.close()


def queue(
    store: Store, n: int, *, expires: int = int(NOW) + 3600, peer: bytes = PEER
) -> list[bytes]:
    ids = []
    for i in range(n):
        msg_id = bytes([i]) * 16 if peer == PEER else bytes([200 + i]) * 16
        with store.unit(NOW + i) as u:
            u.enqueue(
                QueuedMessage(
                    id=msg_id,
                    type="seizure-alert",
                    created=int(NOW) - 10,
                    expires=expires,
                    content_hash=b"h" * 32,
                    envelope=b"e" * 10,
                ),
                [peer],
            )
        ids.append(msg_id)
    return ids


def statuses(tmp_path: Path) -> list[str]:
    """Read by a second connection, as a crash would leave the file."""
    db = sqlite3.connect(tmp_path / "n.db")
    try:
        return [str(s) for (s,) in db.execute("SELECT status FROM outbox ORDER BY msg_id")]
    finally:
        db.close()


def test_due_entries_come_oldest_first_and_skip_those_in_flight(
    store: Store, tmp_path: Path
) -> None:
    ids = queue(store, 5)
    queue(store, 1, peer=OTHER)
    assert [d.id for d in store.due(PEER, NOW + 10, 2)] == ids[:2]
    assert [d.id for d in store.due(PEER, NOW + 10, 10, exclude=ids[:2])] == ids[2:]
    # Taking is a read: nothing on disk says "in flight", so a crash leaves every entry due.
    assert set(statuses(tmp_path)) == {"queued"}


def test_next_due_says_when_the_next_entry_falls_due(store: Store) -> None:
    ids = queue(store, 3)
    assert store.due(PEER, NOW - 1, 10) == []
    assert store.next_due(PEER) == NOW
    assert store.next_due(PEER, exclude=ids[:1]) == NOW + 1
    assert store.next_due(PEER, exclude=ids) is None
    assert store.next_due(b"x" * 32) is None


def test_expired_entries_are_due_until_marked_expired(store: Store, tmp_path: Path) -> None:
    ids = queue(store, 2, expires=int(NOW) + 1)
    assert [d.expires for d in store.due(PEER, NOW + 2, 10)] == [int(NOW) + 1] * 2
    with store.unit(NOW + 2) as u:
        u.mark_expired(PEER, ids)
    assert statuses(tmp_path) == ["expired", "expired"]
    assert store.due(PEER, NOW + 2, 10) == [] and store.next_due(PEER) is None


def test_delivered_failed_and_rejected_entries(store: Store) -> None:
    a, b, c = queue(store, 3)
    with store.unit(NOW + 5) as u:
        u.mark_delivered(PEER, [(a, b"receipt")])
        u.mark_failed(PEER, [(b, "connection refused by bob", NOW + 60)])
        u.mark_rejected(PEER, c, "bob refused the message (expired)")
    rows = {r.id: r for r in store.outbox_rows()}
    assert (rows[a].status, rows[a].attempts, rows[a].delivered_at) == ("delivered", 1, NOW + 5)
    assert (rows[b].status, rows[b].next_attempt, rows[b].last_error) == (
        "failed",
        NOW + 60,
        "connection refused by bob",
    )
    assert rows[c].status == "rejected"
    assert store.pending_peers() == {PEER: NOW + 60}
    stats = store.outbox_stats()
    assert stats.by_status == {"delivered": 1, "failed": 1, "rejected": 1}
    assert stats.per_peer == {PEER: 1} and stats.oldest_undelivered == NOW + 1


def test_due_uses_the_partial_index(store: Store, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "n.db")
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT o.msg_id FROM outbox o INDEXED BY outbox_pending "
        "WHERE o.peer = ? AND o.status IN ('queued', 'failed') AND o.next_attempt <= ? "
        "ORDER BY o.next_attempt LIMIT 1",
        (PEER, NOW),
    ).fetchall()
    db.close()
    text = " ".join(str(r[-1]) for r in plan)
    assert "outbox_pending" in text and "TEMP B-TREE" not in text
