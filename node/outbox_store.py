"""Outbox tables: what this node sent, and per recipient where delivery stands.

Status of an outbox row (PROTOCOL.md 11.4): ``queued`` (never tried), ``delivered`` (receipt
verified and stored), ``failed`` (last try failed; retried at ``next_attempt``), ``expired`` (the
message expired before delivery), ``rejected`` (the peer refused it for good). A row in flight
stays ``queued`` or ``failed`` on disk; the delivery worker keeps the in-flight set in memory (see
``PeerWorker.inflight``), so taking a batch costs no write and a crash simply leaves the row due
again (at-least-once; the receiver answers a re-delivery ``duplicate``). Databases written by
older versions may still hold ``delivering`` rows: :meth:`OutboxMixin.resume_inflight` turns them
back into ``failed`` at start.

Due rows are found through the partial index ``outbox_pending`` (node/store.py), so taking a batch
reads only the rows it returns, however long the history or the queue.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from protocol.audit import AuditEntry

Row = tuple[bytes, bytes, bytes, int, int]  # (id, envelope, content_hash, expires, attempts)


class _Db(Protocol):
    db: sqlite3.Connection

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def audit_append(self, db: sqlite3.Connection, entry: AuditEntry) -> int: ...


class OutboxMixin:
    def enqueue(
        self: _Db,
        *,
        msg_id: bytes,
        type_name: str,
        created: int,
        expires: int,
        content_hash: bytes,
        envelope: bytes,
        peers: Sequence[bytes],
        now: float,
        audit: AuditEntry | None = None,
    ) -> None:
        """The message, one row per recipient and its audit entry, in one durable transaction."""
        with self.transaction() as db:
            if audit is not None:
                self.audit_append(db, audit)
            db.execute(
                "INSERT INTO messages (id, type, created, expires, content_hash, envelope, queued_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (msg_id, type_name, created, expires, content_hash, envelope, now),
            )
            db.executemany(
                "INSERT INTO outbox (msg_id, peer, status, next_attempt) VALUES (?, ?, 'queued', ?)",
                [(msg_id, p, now) for p in peers],
            )

    def resume_inflight(self: _Db) -> int:
        """Rows an older version left ``delivering`` go back to ``failed`` (retried at once)."""
        with self.transaction() as db:
            return db.execute(
                "UPDATE outbox SET status = 'failed', last_error = COALESCE(last_error, "
                "'interrupted by a restart') WHERE status = 'delivering'"
            ).rowcount

    def pending_peers(self: _Db) -> dict[bytes, float]:
        """Peer -> earliest next attempt, over rows still to deliver."""
        rows = self.db.execute(
            "SELECT peer, MIN(next_attempt) FROM outbox WHERE status IN ('queued', 'failed') "
            "GROUP BY peer"
        ).fetchall()
        return {bytes(p): float(t) for p, t in rows}

    def take_batch(
        self: _Db, peer: bytes, now: float, limit: int, exclude: Collection[bytes] = ()
    ) -> tuple[list[Row], float | None]:
        """Up to ``limit`` due rows for ``peer``, oldest ``next_attempt`` first, skipping the
        message ids in ``exclude`` (those in flight) -> (rows, None); rows are (id, envelope,
        content_hash, expires, attempts). With nothing due -> ([], when the next row falls due,
        or None if there is none). Rows whose message expired are marked ``expired`` instead.

        A read unless something expired: the in-flight state lives in the worker, not on disk.
        """
        skip = f" AND o.msg_id NOT IN ({','.join('?' * len(exclude))})" if exclude else ""
        rows = self.db.execute(
            "SELECT o.msg_id, m.envelope, m.content_hash, m.expires, o.attempts FROM outbox o "
            "INDEXED BY outbox_pending JOIN messages m ON m.id = o.msg_id "
            "WHERE o.peer = ? AND o.status IN ('queued', 'failed') AND o.next_attempt <= ?"
            f"{skip} ORDER BY o.next_attempt LIMIT ?",
            (peer, now, *exclude, limit),
        ).fetchall()
        expired = [r[0] for r in rows if r[3] <= now]
        if expired:
            with self.transaction() as db:
                db.executemany(
                    "UPDATE outbox SET status = 'expired', next_attempt = ? WHERE msg_id = ? "
                    "AND peer = ? AND status IN ('queued', 'failed')",
                    [(now, msg_id, peer) for msg_id in expired],
                )
            rows = [r for r in rows if r[3] > now]
        if rows or expired:  # all expired: look again at once
            taken = [(bytes(a), bytes(b), bytes(c), int(d), int(e)) for a, b, c, d, e in rows]
            return taken, None if taken else now
        nxt = self.db.execute(
            "SELECT o.next_attempt FROM outbox o INDEXED BY outbox_pending WHERE o.peer = ? AND "
            f"o.status IN ('queued', 'failed'){skip} ORDER BY o.next_attempt LIMIT 1",
            (peer, *exclude),
        ).fetchone()
        return [], None if nxt is None else float(nxt[0])

    def mark_delivered(
        self: _Db, peer: bytes, delivered: Sequence[tuple[bytes, bytes]], now: float
    ) -> None:
        """``delivered``: (message id, verified receipt bytes) pairs; each is audited."""
        from node.audit_store import event

        with self.transaction() as db:
            for msg_id, receipt in delivered:
                self.audit_append(
                    db,
                    event(
                        "message.delivered",
                        message_id=msg_id.hex(),
                        peer_id=peer.hex(),
                        outcome="receipt verified",
                        hashes={"receipt": _sha256(receipt)},
                    ),
                )
            db.executemany(
                "UPDATE outbox SET status = 'delivered', delivered_at = ?, receipt = ?, "
                "attempts = attempts + 1, last_error = NULL WHERE msg_id = ? AND peer = ?",
                [(now, receipt, msg_id, peer) for msg_id, receipt in delivered],
            )

    def mark_failed(self: _Db, peer: bytes, failures: Sequence[tuple[bytes, str, float]]) -> None:
        """``failures``: (message id, error in words, next attempt time)."""
        with self.transaction() as db:
            db.executemany(
                "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?, "
                "next_attempt = ? WHERE msg_id = ? AND peer = ?",
                [(err, nxt, msg_id, peer) for msg_id, err, nxt in failures],
            )

    def mark_rejected(self: _Db, peer: bytes, msg_id: bytes, error: str, now: float) -> None:
        """The peer refused the message for good (e.g. expired, not a recipient): stop retrying."""
        from node.audit_store import event

        with self.transaction() as db:
            self.audit_append(
                db,
                event(
                    "message.delivery_refused",
                    message_id=msg_id.hex(),
                    peer_id=peer.hex(),
                    outcome="refused",
                    detail=error,
                ),
            )
            db.execute(
                "UPDATE outbox SET status = 'rejected', attempts = attempts + 1, last_error = ?, "
                "next_attempt = ? WHERE msg_id = ? AND peer = ?",
                (error, now, msg_id, peer),
            )

    def outbox_rows(
        self: _Db, msg_id: bytes | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        where, args = ("WHERE m.id = ?", (msg_id, limit)) if msg_id else ("", (limit,))
        cur = self.db.execute(
            "SELECT m.id, m.type, m.created, m.expires, m.queued_at, o.peer, o.status, o.attempts, "
            "o.next_attempt, o.last_error, o.delivered_at FROM messages m "
            f"JOIN outbox o ON o.msg_id = m.id {where} ORDER BY m.queued_at DESC, o.peer LIMIT ?",
            args,
        )
        return list(_dicts(cur))

    def outbox_stats(self: _Db) -> dict[str, Any]:
        by_status = dict(
            self.db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
        )
        oldest = self.db.execute(
            "SELECT MIN(m.queued_at) FROM outbox o JOIN messages m ON m.id = o.msg_id "
            "WHERE o.status IN ('queued', 'failed', 'delivering')"
        ).fetchone()[0]
        per_peer = dict(
            self.db.execute(
                "SELECT peer, COUNT(*) FROM outbox WHERE status IN ('queued', 'failed', "
                "'delivering') GROUP BY peer"
            ).fetchall()
        )
        return {"by_status": by_status, "oldest_undelivered": oldest, "per_peer": per_peer}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dicts(cur: sqlite3.Cursor) -> Iterator[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    for row in cur:
        yield dict(zip(names, row, strict=True))
