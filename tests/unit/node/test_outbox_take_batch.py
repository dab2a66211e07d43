"""OutboxMixin.take_batch: due rows through the partial index, in-flight ids skipped, no writes
unless something expired (the in-flight state lives in the delivery worker, PROTOCOL.md 11.4)."""

from __future__ import annotations

from pathlib import Path

from node.store import Store

PEER, OTHER = b"p" * 32, b"q" * 32
NOW = 1_790_000_000.0


def queue(
    store: Store, n: int, *, expires: int = int(NOW) + 3600, peer: bytes = PEER
) -> list[bytes]:
    ids = []
    for i in range(n):
        msg_id = bytes([i]) * 16 if peer == PEER else bytes([200 + i]) * 16
        store.enqueue(
            msg_id=msg_id,
            type_name="seizure-alert",
            created=int(NOW) - 10,
            expires=expires,
            content_hash=b"h" * 32,
            envelope=b"e" * 10,
            peers=[peer],
            now=NOW + i,
        )
        ids.append(msg_id)
    return ids


def test_takes_due_rows_oldest_first_and_skips_those_in_flight(tmp_path: Path) -> None:
    store = Store(tmp_path / "n.db")
    ids = queue(store, 5)
    queue(store, 1, peer=OTHER)
    rows, nxt = store.take_batch(PEER, NOW + 10, 2)
    assert [r[0] for r in rows] == ids[:2] and nxt is None
    rows, _ = store.take_batch(PEER, NOW + 10, 10, exclude=ids[:2])
    assert [r[0] for r in rows] == ids[2:]
    # Taking is a read: nothing on disk says "in flight", so a crash leaves every row due.
    statuses = store.db.execute("SELECT DISTINCT status FROM outbox").fetchall()
    assert statuses == [("queued",)]


def test_nothing_due_returns_when_the_next_row_falls_due(tmp_path: Path) -> None:
    store = Store(tmp_path / "n.db")
    ids = queue(store, 3)
    assert store.take_batch(PEER, NOW - 1, 10) == ([], NOW)
    assert store.take_batch(PEER, NOW - 1, 10, exclude=ids[:1]) == ([], NOW + 1)
    assert store.take_batch(PEER, NOW + 5, 10, exclude=ids) == ([], None)
    assert store.take_batch(b"x" * 32, NOW + 5, 10) == ([], None)


def test_expired_rows_are_marked_and_not_returned(tmp_path: Path) -> None:
    store = Store(tmp_path / "n.db")
    queue(store, 2, expires=int(NOW) + 1)
    rows, nxt = store.take_batch(PEER, NOW + 2, 10)
    assert rows == [] and nxt == NOW + 2  # look again at once: more may be due
    statuses = store.db.execute("SELECT status FROM outbox").fetchall()
    assert statuses == [("expired",), ("expired",)]
    assert store.take_batch(PEER, NOW + 2, 10) == ([], None)


def test_take_batch_uses_the_partial_index(tmp_path: Path) -> None:
    store = Store(tmp_path / "n.db")
    plan = store.db.execute(
        "EXPLAIN QUERY PLAN SELECT o.msg_id FROM outbox o INDEXED BY outbox_pending "
        "WHERE o.peer = ? AND o.status IN ('queued', 'failed') AND o.next_attempt <= ? "
        "ORDER BY o.next_attempt LIMIT 1",
        (PEER, NOW),
    ).fetchall()
    text = " ".join(str(r[-1]) for r in plan)
    assert "outbox_pending" in text and "TEMP B-TREE" not in text
