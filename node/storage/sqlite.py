"""The SQLite implementation of the storage seam (node/storage/interface.py): one file per node.

WAL mode with ``synchronous=FULL``: a unit that returned is on disk, so anything the node
acknowledged survives kill -9 and power loss. A unit is ``BEGIN IMMEDIATE ... COMMIT`` on the one
connection, which the daemon uses from its one database thread. Outbox entries in flight are not
written (``PeerWorker`` keeps them in memory); the partial index ``outbox_pending`` makes finding
due entries cost only the rows returned, however long the history or the queue.

This module and ``sqlite_schema.py`` are the only places that speak SQL.
"""

from __future__ import annotations

import heapq
import itertools
import os
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from keys.trust import PeerRecord
from node.storage import flow_sqlite as flow
from node.storage.audit_tree import appended
from node.storage.flow_rows import (
    EVERYTHING,
    Disagreement,
    FlowCursor,
    FlowFilter,
    FlowRow,
    FlowUnit,
    LatencyHistogram,
    LinkCount,
    PendingLink,
    UnitCounts,
)
from node.storage.interface import Reader, Reads, Store, Unit
from node.storage.rows import (
    Accepted,
    AuditFilter,
    AuditRow,
    AuditState,
    AuditVerified,
    Cosignature,
    DueMessage,
    Evidence,
    InboxFilter,
    InboxKey,
    InboxRow,
    InboxStats,
    KeyEvent,
    KeyNotice,
    KnownMessage,
    OutboxKey,
    OutboxRow,
    OutboxStats,
    QueuedMessage,
    RevokedKey,
    SenderUsage,
    SignedCheckpoint,
    StoredMessage,
    Witnessed,
)
from node.storage.sqlite_schema import (
    ADDED_COLUMNS,
    AUDIT_INDEXES,
    AUDIT_KIND,
    AUDIT_MESSAGE,
    AUDIT_TIME,
    COUNTERS,
    COUNTERS_TABLE,
    ON_ADDED_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
)
from protocol.audit import KINDS, AuditEntry
from protocol.errors import NodeError, Replay

_PEER_COLUMNS = (
    "name, node_id, fingerprint, card, verified_by, status, added_at, revoked_at, "
    "revoke_reason, revoke_since, pending_card, introduced_by"
)
_NOTICE_COLUMNS = (
    "id, peer, kind, statement, status, attempts, next_attempt, last_error, queued_at, delivered_at"
)
_INBOX_COLUMNS = (
    "id, sender, type, created, expires, received_at, content_hash, refers_to, read_at, "
    "acked_at, ack_action, withdrawn_by, priority, suspect, tlp"
)
_PRIORITIES = ("routine", "urgent", "flash")  # inbox.priority is the index: most urgent highest
_INBOX_ORDER = "ORDER BY priority DESC, received_at DESC, sender DESC, id DESC"
_PENDING = "('queued', 'failed')"
_UNDELIVERED = "('queued', 'failed', 'delivering')"  # 'delivering': databases of older versions
_UNDELIVERED_STATUSES = frozenset({"queued", "failed", "delivering"})


def open_store(path: Path) -> Store:
    return SqliteStore(path)


def open_reader(path: Path) -> Reader:
    """A read-only connection to the database a store opened (and brought up to date) first."""
    return SqliteReader(path)


class _Reads:
    """The read half, shared by the store (autocommit reads) and a unit (reads in its transaction)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    # peers -----------------------------------------------------------------------------------

    def peer_by_name(self, name: str) -> PeerRecord | None:
        row = self._db.execute(
            f"SELECT {_PEER_COLUMNS} FROM peers WHERE name = ?", (name,)
        ).fetchone()
        return _peer(row) if row else None

    def peer_by_id(self, node_id: bytes) -> PeerRecord | None:
        row = self._db.execute(
            f"SELECT {_PEER_COLUMNS} FROM peers WHERE node_id = ?", (node_id,)
        ).fetchone()
        return _peer(row) if row else None

    def peers(self) -> list[PeerRecord]:
        rows = self._db.execute(f"SELECT {_PEER_COLUMNS} FROM peers ORDER BY name").fetchall()
        return [_peer(r) for r in rows]

    def revoked_keys(self, node: bytes | None = None) -> list[RevokedKey]:
        where, args = ("WHERE node = ?", (node,)) if node is not None else ("", ())
        rows = self._db.execute(
            f"SELECT node, key, reason, since, at, statement FROM revoked_keys {where} "
            "ORDER BY at, key",
            args,
        ).fetchall()
        return [
            RevokedKey(
                node=bytes(r[0]),
                key=bytes(r[1]),
                reason=r[2],
                since=r[3],
                at=r[4],
                statement=r[5],
            )
            for r in rows
        ]

    def key_notices(self, peer: bytes | None = None, *, pending: bool = False) -> list[KeyNotice]:
        clauses, args = [], []
        if peer is not None:
            clauses.append("peer = ?")
            args.append(peer)
        if pending:
            clauses.append("status = 'queued'")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(
            f"SELECT {_NOTICE_COLUMNS} FROM key_notices {where} ORDER BY id", args
        ).fetchall()
        return [
            KeyNotice(
                id=r[0],
                peer=bytes(r[1]),
                kind=r[2],
                statement=r[3],
                status=r[4],
                attempts=r[5],
                next_attempt=r[6],
                last_error=r[7],
                queued_at=r[8],
                delivered_at=r[9],
            )
            for r in rows
        ]

    def key_events(self, limit: int = 20) -> list[KeyEvent]:
        rows = self._db.execute(
            "SELECT at, peer, kind, outcome, detail FROM key_events ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [KeyEvent(at=r[0], peer=r[1], kind=r[2], outcome=r[3], detail=r[4]) for r in rows]

    def directory_seq(self, coordinator: bytes) -> int | None:
        row = self._db.execute(
            "SELECT seq FROM directories WHERE coordinator = ?", (coordinator,)
        ).fetchone()
        return None if row is None else int(row[0])

    def rotations_applied(self, node: bytes) -> dict[int, int]:
        rows = self._db.execute(
            "SELECT seq, applied_at FROM rotations_applied WHERE node = ?", (node,)
        ).fetchall()
        return {int(r[0]): int(r[1]) for r in rows}

    # replay table ----------------------------------------------------------------------------

    def seen(self, sender: bytes, msg_id: bytes) -> bool:
        row = self._db.execute("SELECT 1 FROM seen WHERE sender = ? AND id = ?", (sender, msg_id))
        return row.fetchone() is not None

    # inbox -----------------------------------------------------------------------------------

    def inbox_lookup(self, sender: bytes, msg_id: bytes) -> KnownMessage | None:
        row = self._db.execute(
            "SELECT content_hash, receipt FROM inbox WHERE sender = ? AND id = ?", (sender, msg_id)
        ).fetchone()
        return KnownMessage(bytes(row[0]), bytes(row[1])) if row else None

    def inbox_rows(
        self,
        *,
        unread: bool = False,
        limit: int = 50,
        after: InboxKey | None = None,
        only: InboxFilter | None = None,
    ) -> list[InboxRow]:
        if only is not None and len(only.types) > 1 and only.sender is None:
            # Each type's rows come in listing order from inbox_by_type; one query over several
            # would sort every match. The first ``limit`` of each, merged, are the page.
            pages = [
                self.inbox_rows(
                    unread=unread,
                    limit=limit,
                    after=after,
                    only=msgspec.structs.replace(only, types=(t,)),
                )
                for t in dict.fromkeys(only.types)
            ]
            merged = heapq.merge(*pages, key=_inbox_order, reverse=True)
            return list(itertools.islice(merged, limit))
        where: list[str] = ["read_at IS NULL"] if unread else []
        args: list[Any] = []
        if only is not None:
            where, args = _inbox_filter(only, where, args)
        if after is not None:
            # Keyset paging: the listing's order is descending on every column of the key.
            where.append("(priority, received_at, sender, id) < (?, ?, ?, ?)")
            args += [_urgency(after.priority), after.received_at, after.sender, after.id]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(
            f"SELECT {_INBOX_COLUMNS} FROM inbox {clause} {_INBOX_ORDER} LIMIT ?", (*args, limit)
        ).fetchall()
        return [_inbox(r) for r in rows]

    def inbox_ids(self, prefix: str, limit: int = 1000) -> list[bytes]:
        return _ids_between(self._db, "inbox", prefix, limit)

    def inbox_get(self, msg_id: bytes, sender: bytes | None = None) -> list[StoredMessage]:
        query = f"SELECT {_INBOX_COLUMNS}, envelope FROM inbox WHERE id = ?"
        args: tuple[bytes, ...] = (msg_id,)
        if sender is not None:
            query, args = query + " AND sender = ?", (msg_id, sender)
        rows = self._db.execute(query, args).fetchall()
        return [StoredMessage(_inbox(r[:-1]), bytes(r[-1])) for r in rows]

    # The three counts below read inbox_counts, one row per sender kept by triggers
    # (sqlite_schema.COUNTERS): what they cost does not grow with the inbox.

    def inbox_stats(self) -> InboxStats:
        total, unread = self._db.execute(
            "SELECT COALESCE(SUM(messages), 0), COALESCE(SUM(unread), 0) FROM inbox_counts"
        ).fetchone()
        return InboxStats(int(total), int(unread))

    def inbox_usage(self, sender: bytes) -> SenderUsage:
        row = self._db.execute(
            "SELECT messages, unread, bytes FROM inbox_counts WHERE sender = ?", (sender,)
        ).fetchone()
        n, unread, size = row if row else (0, 0, 0)
        return SenderUsage(sender, int(n), int(unread), int(size))

    def inbox_senders(self) -> list[SenderUsage]:
        rows = self._db.execute(
            "SELECT sender, messages, unread, bytes FROM inbox_counts WHERE messages > 0 "
            "ORDER BY sender"
        ).fetchall()
        return [SenderUsage(bytes(s), int(n), int(u), int(b)) for s, n, u, b in rows]

    # outbox ----------------------------------------------------------------------------------

    def pending_peers(self) -> dict[bytes, float]:
        rows = self._db.execute(
            f"SELECT peer, MIN(next_attempt) FROM outbox WHERE status IN {_PENDING} GROUP BY peer"
        ).fetchall()
        return {bytes(p): float(t) for p, t in rows}

    def due(
        self, peer: bytes, now: float, limit: int, exclude: Collection[bytes] = ()
    ) -> list[DueMessage]:
        skip = _not_in(exclude)
        rows = self._db.execute(
            "SELECT o.msg_id, m.envelope, m.content_hash, m.expires, o.attempts FROM outbox o "
            "INDEXED BY outbox_pending JOIN messages m ON m.id = o.msg_id "
            f"WHERE o.peer = ? AND o.status IN {_PENDING} AND o.next_attempt <= ?"
            f"{skip} ORDER BY o.next_attempt LIMIT ?",
            (peer, now, *exclude, limit),
        ).fetchall()
        return [DueMessage(bytes(a), bytes(b), bytes(c), int(d), int(e)) for a, b, c, d, e in rows]

    def next_due(self, peer: bytes, exclude: Collection[bytes] = ()) -> float | None:
        row = self._db.execute(
            "SELECT o.next_attempt FROM outbox o INDEXED BY outbox_pending WHERE o.peer = ? AND "
            f"o.status IN {_PENDING}{_not_in(exclude)} ORDER BY o.next_attempt LIMIT 1",
            (peer, *exclude),
        ).fetchone()
        return None if row is None else float(row[0])

    def outbox_rows(
        self, msg_id: bytes | None = None, limit: int = 200, after: OutboxKey | None = None
    ) -> list[OutboxRow]:
        where = ["m.id = :id"] if msg_id else []
        args: dict[str, object] = {"id": msg_id, "limit": limit}
        if after is not None:
            # Keyset paging on (queued_at DESC, id DESC, peer ASC): a range on messages_queued
            # (the row value), then within the cursor's own message (ids are unique) the peers
            # after it. Written as an OR, the range was lost and every page scanned from the top.
            where.append("(m.queued_at, m.id) <= (:t, :i) AND (m.id != :i OR o.peer > :p)")
            args.update(t=after.queued_at, i=after.id, p=after.peer)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        # A listing walks messages_queued newest first and looks up each message's entries: the
        # planner, left alone, sorted the whole outbox for every page. SQLite still sorts each
        # message's own few entries by peer ("right part of ORDER BY"), which costs the page.
        join = "JOIN" if msg_id else "INDEXED BY messages_queued CROSS JOIN"
        rows = self._db.execute(
            "SELECT m.id, m.type, m.created, m.expires, m.queued_at, o.peer, o.status, o.attempts, "
            f"o.next_attempt, o.last_error, o.delivered_at FROM messages m {join} outbox o "
            f"ON o.msg_id = m.id {clause} "
            "ORDER BY m.queued_at DESC, m.id DESC, o.peer LIMIT :limit",
            args,
        ).fetchall()
        return [
            OutboxRow(
                id=bytes(r[0]),
                type=str(r[1]),
                created=int(r[2]),
                expires=int(r[3]),
                queued_at=float(r[4]),
                peer=bytes(r[5]),
                status=str(r[6]),
                attempts=int(r[7]),
                next_attempt=float(r[8]),
                last_error=r[9],
                delivered_at=r[10],
            )
            for r in rows
        ]

    def outbox_ids(self, prefix: str, limit: int = 1000) -> list[bytes]:
        return _ids_between(self._db, "messages", prefix, limit)

    def outbox_peers(self, msg_id: bytes) -> list[bytes]:
        rows = self._db.execute("SELECT peer FROM outbox WHERE msg_id = ? ORDER BY peer", (msg_id,))
        return [bytes(p) for (p,) in rows]

    def outbox_stats(self) -> OutboxStats:
        # Counts from outbox_counts (kept by triggers); the oldest entry still to deliver through
        # the partial index outbox_pending, so over the queue only, never the delivered history.
        # 'delivering' rows (older versions) are counted; resume_inflight makes them 'failed' at
        # start, so the oldest of them is found then.
        by_status: dict[str, int] = {}
        per_peer: dict[bytes, int] = {}
        for p, s, n in self._db.execute(
            "SELECT peer, status, n FROM outbox_counts WHERE n > 0 ORDER BY status, peer"
        ):
            by_status[str(s)] = by_status.get(str(s), 0) + int(n)
            if s in _UNDELIVERED_STATUSES:
                per_peer[bytes(p)] = per_peer.get(bytes(p), 0) + int(n)
        oldest = self._db.execute(
            "SELECT MIN(m.queued_at) FROM outbox o INDEXED BY outbox_pending "
            f"JOIN messages m INDEXED BY messages_age ON m.id = o.msg_id WHERE o.status IN {_PENDING}"
        ).fetchone()[0]
        return OutboxStats(by_status, None if oldest is None else float(oldest), per_peer)

    # audit log -------------------------------------------------------------------------------

    def audit_state(self) -> AuditState:
        row = self._db.execute("SELECT size, peaks FROM audit_state WHERE id = 0").fetchone()
        if row is None:
            return AuditState(0, [])
        return AuditState(int(row[0]), _peaks(bytes(row[1])))

    def audit_rows(self, start: int = 0, end: int | None = None) -> list[AuditRow]:
        rows = self._db.execute(
            "SELECT idx, entry, root FROM audit WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, 2**62 if end is None else end),
        ).fetchall()
        return [AuditRow(int(i), bytes(e), bytes(r)) for i, e, r in rows]

    def audit_find(self, start: int, limit: int, only: AuditFilter) -> list[AuditRow]:
        kind, message_id, since_ms = only.kind, only.message_id, only.since_ms
        args: list[object]
        if kind is not None and kind.endswith("."):
            # A prefix: each kind it names, in index order from audit_kind, merged (a range over
            # the kinds would sort every match for one page).
            pages = [
                self.audit_find(start, limit, msgspec.structs.replace(only, kind=k))
                for k in sorted(k for k in KINDS if k.startswith(kind))
            ]
            merged = heapq.merge(*pages, key=lambda row: row.index)
            return list(itertools.islice(merged, limit))
        where, args = ["idx >= ?"], [start]
        # One index leads (the message's, else the kind's, else the time's) and the others
        # filter the rows it finds, so a page costs the matching entries, not the log. The
        # time's alone gives its matches out of index order: they are sorted (the recent ones,
        # as --since asks; the planner would rather scan the log from its start).
        hint = "INDEXED BY audit_time" if since_ms is not None and not (kind or message_id) else ""
        if message_id is not None:
            where.append(f"{AUDIT_MESSAGE} = ?")
            args.append(message_id)
        if kind is not None:
            where.append(f"{AUDIT_KIND} = ?")
            args.append(kind)
        if since_ms is not None:
            where.append(f"{AUDIT_TIME} >= ?")
            args.append(since_ms)
        rows = self._db.execute(
            f"SELECT idx, entry, root FROM audit {hint} WHERE {' AND '.join(where)} "
            "ORDER BY idx LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [AuditRow(int(i), bytes(e), bytes(r)) for i, e, r in rows]

    def audit_verified(self) -> AuditVerified:
        found = {
            int(i): AuditState(int(n), _peaks(bytes(p)))
            for i, n, p in self._db.execute("SELECT id, size, peaks FROM audit_verified")
        }
        empty = AuditState(0, [])
        return AuditVerified(found.get(0, empty), found.get(1, empty))

    def checkpoints(self) -> list[SignedCheckpoint]:
        rows = self._db.execute("SELECT size, root, note FROM checkpoints ORDER BY size")
        return [SignedCheckpoint(int(s), bytes(r), str(n)) for s, r, n in rows]

    def checkpoint_at(self, size: int) -> SignedCheckpoint | None:
        row = self._db.execute(
            "SELECT size, root, note FROM checkpoints WHERE size = ?", (size,)
        ).fetchone()
        return SignedCheckpoint(int(row[0]), bytes(row[1]), str(row[2])) if row else None

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        row = self._db.execute(
            "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return SignedCheckpoint(int(row[0]), bytes(row[1]), str(row[2])) if row else None

    def cosigned_size(self) -> int | None:
        row = self._db.execute("SELECT MAX(size) FROM cosignatures").fetchone()
        return None if row[0] is None else int(row[0])

    def checkpoint_signed_at(self, size: int) -> float | None:
        row = self._db.execute(
            "SELECT signed_at FROM checkpoints WHERE size = ?", (size,)
        ).fetchone()
        return float(row[0]) if row else None

    def cosignatures(self, size: int) -> list[Cosignature]:
        rows = self._db.execute(
            "SELECT witness, line, time FROM cosignatures WHERE size = ? ORDER BY witness", (size,)
        )
        return [Cosignature(bytes(w), str(ln), int(t)) for w, ln, t in rows]

    def cosignature_by(self, size: int, witness: bytes) -> Cosignature | None:
        row = self._db.execute(
            "SELECT line, time FROM cosignatures WHERE size = ? AND witness = ?", (size, witness)
        ).fetchone()
        return Cosignature(witness, str(row[0]), int(row[1])) if row else None

    def witnessed(self, node: bytes) -> Witnessed | None:
        row = self._db.execute(
            "SELECT size, root, note FROM witnessed WHERE node = ?", (node,)
        ).fetchone()
        return Witnessed(node, int(row[0]), bytes(row[1]), str(row[2])) if row else None

    def evidence(self) -> list[Evidence]:
        rows = self._db.execute(
            "SELECT node, kind, old_note, new_note, detail, at FROM evidence ORDER BY id"
        )
        return [
            Evidence(
                node=bytes(n), kind=str(k), old_note=o, new_note=str(w), detail=str(d), at=float(a)
            )
            for n, k, o, w, d, a in rows
        ]

    # flow (PROTOCOL.md 14)

    def flow_self(self) -> bytes | None:
        return flow.self_id(self._db)

    def flow_own_after(self, after: int, limit: int) -> list[FlowRow]:
        return flow.own_after(self._db, after, limit)

    def flow_own_last_seq(self) -> int:
        return flow.own_last_seq(self._db)

    def flow_after(self, rid: int, limit: int) -> list[FlowRow]:
        return flow.after_rid(self._db, rid, limit)

    def flow_latest(
        self, limit: int, since: float = 0.0, only: FlowFilter = EVERYTHING
    ) -> list[FlowRow]:
        return flow.latest(self._db, limit, since, only)

    def flow_last_rid(self) -> int:
        return flow.last_rid(self._db)

    def flow_counts(
        self, hour: float, minute: float, only: FlowFilter = EVERYTHING
    ) -> list[UnitCounts]:
        return flow.counts(self._db, hour, minute, only)

    def flow_latency_sample(
        self, since: float, per_unit: int, only: FlowFilter = EVERYTHING
    ) -> dict[bytes, list[float]]:
        return flow.latency_sample(self._db, since, per_unit, only)

    def flow_units(self) -> list[FlowUnit]:
        return flow.units(self._db)

    def flow_cursors(self) -> list[FlowCursor]:
        return flow.cursors(self._db)

    def flow_links(self, since: float, only: FlowFilter = EVERYTHING) -> list[LinkCount]:
        return flow.links(self._db, since, only)

    def flow_disagreements(
        self, since: float, grace: float, now: float, only: FlowFilter = EVERYTHING
    ) -> list[Disagreement]:
        return flow.disagreements(self._db, since, grace, now, only)

    def flow_totals(self, unit: bytes) -> list[tuple[str, bytes | None, str | None, int]]:
        return flow.totals(self._db, unit)

    def flow_latency_histogram(self, unit: bytes) -> LatencyHistogram:
        return flow.latency_histogram(self._db, unit)

    def flow_sent_totals(self) -> list[tuple[bytes, str, int]]:
        return flow.sent_totals(self._db)

    def flow_pending_links(self, hide: frozenset[str] = frozenset()) -> list[PendingLink]:
        return flow.pending_links(self._db, hide)


class SqliteUnit(_Reads):
    """Writes inside the store's open transaction; see :class:`node.storage.interface.Unit`."""

    def __init__(self, db: sqlite3.Connection, now: float) -> None:
        super().__init__(db)
        self._now = now

    @property
    def now(self) -> float:
        return self._now

    def append_audit(self, entry: AuditEntry) -> int:
        row, state = appended(self.audit_state(), entry)
        self._db.execute(
            "INSERT INTO audit (idx, entry, root) VALUES (?, ?, ?)",
            (row.index, row.entry, row.root),
        )
        self._db.execute(
            "INSERT OR REPLACE INTO audit_state (id, size, peaks) VALUES (0, ?, ?)",
            (state.size, b"".join(state.peaks)),
        )
        return row.index

    def set_audit_verified(self, verified: AuditVerified) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO audit_verified (id, size, peaks) VALUES (?, ?, ?)",
            [
                (i, state.size, b"".join(state.peaks))
                for i, state in enumerate((verified.prefix, verified.sweep))
            ],
        )

    # peers

    def put_peer(self, peer: PeerRecord) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO peers ({_PEER_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                peer.name,
                peer.node_id,
                peer.fingerprint,
                peer.card,
                peer.verified_by,
                peer.status,
                peer.added_at,
                peer.revoked_at,
                peer.revoke_reason,
                peer.revoke_since,
                peer.pending_card,
                peer.introduced_by,
            ),
        )

    # key lifecycle

    def put_revoked_key(self, key: RevokedKey) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO revoked_keys (node, key, reason, since, at, statement) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (key.node, key.key, key.reason, key.since, key.at, key.statement),
        )

    def enqueue_notice(self, peer: bytes, kind: str, statement: str) -> None:
        self._db.execute(
            "INSERT INTO key_notices (peer, kind, statement, status, next_attempt, queued_at) "
            "VALUES (?, ?, ?, 'queued', ?, ?)",
            (peer, kind, statement, self._now, self._now),
        )

    def mark_notice(
        self,
        notice_id: int,
        status: str,
        *,
        error: str | None,
        next_attempt: float,
        receipt: bytes | None = None,
    ) -> None:
        self._db.execute(
            "UPDATE key_notices SET status = ?, attempts = attempts + 1, last_error = ?, "
            "next_attempt = ?, receipt = COALESCE(?, receipt), "
            "delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END WHERE id = ?",
            (status, error, next_attempt, receipt, status, self._now, notice_id),
        )

    def add_key_event(self, peer: str, kind: str, outcome: str, detail: str) -> None:
        self._db.execute(
            "INSERT INTO key_events (at, peer, kind, outcome, detail) VALUES (?, ?, ?, ?, ?)",
            (self._now, peer, kind, outcome, detail[:300]),
        )
        self._db.execute(
            "DELETE FROM key_events WHERE id <= (SELECT MAX(id) FROM key_events) - 200"
        )

    def hold_outbox(self, peer: bytes, why: str) -> int:
        return self._db.execute(
            f"UPDATE outbox SET status = 'held', last_error = ? WHERE peer = ? AND status IN "
            f"{_UNDELIVERED}",
            (why, peer),
        ).rowcount

    def release_outbox(self, peer: bytes) -> int:
        return self._db.execute(
            "UPDATE outbox SET status = 'queued', last_error = NULL, next_attempt = ? "
            "WHERE peer = ? AND status = 'held'",
            (self._now, peer),
        ).rowcount

    def set_directory_seq(self, coordinator: bytes, seq: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO directories (coordinator, seq, at) VALUES (?, ?, ?)",
            (coordinator, seq, self._now),
        )

    def put_rotation_applied(self, node: bytes, seq: int) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO rotations_applied (node, seq, applied_at) VALUES (?, ?, ?)",
            (node, seq, int(self._now)),
        )

    def mark_suspect(self, sender: bytes, since: float, why: str) -> int:
        return self._db.execute(
            "UPDATE inbox SET suspect = ? WHERE sender = ? AND received_at >= ? "
            "AND suspect IS NULL",
            (why, sender, since),
        ).rowcount

    def delete_peer(self, name: str) -> bool:
        return self._db.execute("DELETE FROM peers WHERE name = ?", (name,)).rowcount > 0

    # replay table

    def mark_seen(self, sender: bytes, msg_id: bytes, expires: int) -> None:
        try:
            self._db.execute(
                "INSERT INTO seen (sender, id, expires) VALUES (?, ?, ?)", (sender, msg_id, expires)
            )
        except sqlite3.IntegrityError as exc:
            raise Replay("message id was already accepted") from exc

    def prune_flow(self, before: float, own_through: int | None, limit: int = 10_000) -> int:
        return flow.prune(self._db, before, own_through, limit)

    def prune_seen(self) -> int:
        return self._db.execute("DELETE FROM seen WHERE expires <= ?", (int(self._now),)).rowcount

    # inbox

    def insert_inbox(self, item: Accepted, receipt: bytes) -> None:
        flow.received(
            self._db,
            self._now,
            item.id,
            item.sender,
            item.type,
            item.priority,
            item.tlp,
            item.created,
            len(item.envelope),
        )
        self._db.execute(
            "INSERT INTO inbox (id, sender, type, created, expires, received_at, content_hash, "
            "envelope, receipt, refers_to, retracts, priority, tlp) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                item.id,
                item.sender,
                item.type,
                item.created,
                item.expires,
                self._now,
                item.content_hash,
                item.envelope,
                receipt,
                item.refers_to,
                item.retracts,
                _urgency(item.priority),
                item.tlp,
            ),
        )
        if item.retracts is not None:
            self._db.execute(
                "UPDATE inbox SET withdrawn_by = ? WHERE id = ? AND sender = ?",
                (item.id, item.retracts, item.sender),
            )
        self._db.execute(
            "UPDATE inbox SET withdrawn_by = (SELECT id FROM inbox WHERE sender = :s AND "
            "retracts = :i LIMIT 1) WHERE sender = :s AND id = :i AND withdrawn_by IS NULL",
            {"s": item.sender, "i": item.id},
        )

    def mark_read(self, sender: bytes, msg_id: bytes) -> None:
        self._db.execute(
            "UPDATE inbox SET read_at = ? WHERE sender = ? AND id = ? AND read_at IS NULL",
            (self._now, sender, msg_id),
        )

    def mark_acked(self, sender: bytes, msg_id: bytes, action: str) -> None:
        flow.acknowledged(self._db, self._now, sender, msg_id, action)
        self._db.execute(
            "UPDATE inbox SET acked_at = ?, ack_action = ?, read_at = COALESCE(read_at, ?) "
            "WHERE sender = ? AND id = ?",
            (self._now, action, self._now, sender, msg_id),
        )

    # outbox

    def enqueue(self, message: QueuedMessage, peers: Sequence[bytes]) -> None:
        m = message
        self._db.execute(
            "INSERT INTO messages (id, type, created, expires, content_hash, envelope, queued_at,"
            " priority, tlp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                m.id,
                m.type,
                m.created,
                m.expires,
                m.content_hash,
                m.envelope,
                self._now,
                m.priority,
                m.tlp,
            ),
        )
        self._db.executemany(
            "INSERT INTO outbox (msg_id, peer, status, next_attempt) VALUES (?, ?, 'queued', ?)",
            [(m.id, p, self._now) for p in peers],
        )
        flow.queued(self._db, self._now, m.id, m.type, m.priority, m.tlp, len(m.envelope), peers)

    def mark_expired(self, peer: bytes, msg_ids: Sequence[bytes]) -> None:
        flow.ended(self._db, self._now, "expired", peer, msg_ids, "")
        self._db.executemany(
            "UPDATE outbox SET status = 'expired', next_attempt = ? WHERE msg_id = ? "
            f"AND peer = ? AND status IN {_PENDING}",
            [(self._now, msg_id, peer) for msg_id in msg_ids],
        )

    def mark_delivered(self, peer: bytes, delivered: Sequence[tuple[bytes, bytes]]) -> None:
        flow.delivered(self._db, self._now, peer, [msg_id for msg_id, _ in delivered])
        self._db.executemany(
            "UPDATE outbox SET status = 'delivered', delivered_at = ?, receipt = ?, "
            "attempts = attempts + 1, last_error = NULL WHERE msg_id = ? AND peer = ?",
            [(self._now, receipt, msg_id, peer) for msg_id, receipt in delivered],
        )

    def mark_failed(self, peer: bytes, failures: Sequence[tuple[bytes, str, float]]) -> None:
        flow.failed(self._db, self._now, peer, [(msg_id, err) for msg_id, err, _ in failures])
        self._db.executemany(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?, "
            "next_attempt = ? WHERE msg_id = ? AND peer = ?",
            [(err, nxt, msg_id, peer) for msg_id, err, nxt in failures],
        )

    def defer(self, peer: bytes, until: float) -> int:
        return self._db.execute(
            f"UPDATE outbox SET next_attempt = ? WHERE peer = ? AND status IN {_PENDING} "
            "AND next_attempt < ?",
            (until, peer, until),
        ).rowcount

    def mark_rejected(self, peer: bytes, msg_id: bytes, error: str) -> None:
        flow.ended(self._db, self._now, "rejected", peer, [msg_id], error)
        self._db.execute(
            "UPDATE outbox SET status = 'rejected', attempts = attempts + 1, last_error = ?, "
            "next_attempt = ? WHERE msg_id = ? AND peer = ?",
            (error, self._now, msg_id, peer),
        )

    def requeue(self, msg_id: bytes, peers: Sequence[bytes]) -> int:
        return sum(
            self._db.execute(
                "UPDATE outbox SET status = 'queued', next_attempt = ? WHERE msg_id = ? "
                "AND peer = ? AND status IN ('failed', 'rejected')",
                (self._now, msg_id, peer),
            ).rowcount
            for peer in peers
        )

    def resume_inflight(self) -> int:
        return self._db.execute(
            "UPDATE outbox SET status = 'failed', last_error = COALESCE(last_error, "
            "'interrupted by a restart') WHERE status = 'delivering'"
        ).rowcount

    # flow (PROTOCOL.md 14)

    def set_flow_self(self, node_id: bytes) -> None:
        flow.set_self(self._db, node_id)

    def ingest_flow(
        self, unit: bytes, rows: Sequence[FlowRow], state: FlowUnit, keep: int | None = None
    ) -> int:
        added = flow.ingest(self._db, unit, rows)
        flow.put_unit(self._db, state)
        if keep is not None and added:
            flow.cap_unit(self._db, unit, keep)
        return added

    def put_flow_cursor(self, cursor: FlowCursor) -> None:
        flow.put_cursor(self._db, cursor)

    # own checkpoints and witnessing

    def add_checkpoint(self, checkpoint: SignedCheckpoint) -> None:
        self._db.execute(
            "INSERT INTO checkpoints (size, root, note, signed_at) VALUES (?, ?, ?, ?)",
            (checkpoint.size, checkpoint.root, checkpoint.note, self._now),
        )

    def prune_checkpoints(self, keep: int, spare: int | None = None) -> int:
        if keep < 2:
            raise NodeError(f"internal error: keep at least 2 checkpoints, not {keep}")
        others = keep - (1 if spare is not None and self.checkpoint_at(spare) else 0)
        row = self._db.execute(  # the oldest of the newest ``others``, ``spare`` aside
            "SELECT size FROM checkpoints WHERE size IS NOT ? ORDER BY size DESC LIMIT 1 OFFSET ?",
            (spare, others - 1),
        ).fetchone()
        if row is None:
            return 0
        args = (int(row[0]), spare)
        self._db.execute("DELETE FROM cosignatures WHERE size < ? AND size IS NOT ?", args)
        return self._db.execute(
            "DELETE FROM checkpoints WHERE size < ? AND size IS NOT ?", args
        ).rowcount

    def add_cosignature(self, size: int, cosignature: Cosignature) -> bool:
        c = cosignature
        return (
            self._db.execute(
                "INSERT OR IGNORE INTO cosignatures (size, witness, line, time) VALUES (?,?,?,?)",
                (size, c.witness, c.line, c.time),
            ).rowcount
            == 1
        )

    def put_witnessed(self, witnessed: Witnessed) -> None:
        w = witnessed
        self._db.execute(
            "INSERT OR REPLACE INTO witnessed (node, size, root, note, updated) VALUES (?,?,?,?,?)",
            (w.node, w.size, w.root, w.note, self._now),
        )

    def add_evidence(self, evidence: Evidence) -> bool:
        e = evidence
        if self._db.execute(
            "SELECT 1 FROM evidence WHERE node = ? AND new_note = ?", (e.node, e.new_note)
        ).fetchone():
            return False
        self._db.execute(
            "INSERT INTO evidence (node, kind, old_note, new_note, detail, at) "
            "VALUES (?,?,?,?,?,?)",
            (e.node, e.kind, e.old_note, e.new_note, e.detail, e.at),
        )
        return True


class SqliteStore(_Reads):
    """One node's database. Not shared between threads: the daemon gives it a thread of its own."""

    def __init__(self, path: Path) -> None:
        try:
            # Private from the first byte: SQLite gives the -wal and -shm files the same mode.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=5000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                db.close()
                raise NodeError(
                    f"database {path} has schema version {version}; this borderlink needs "
                    f"{SCHEMA_VERSION}",
                    hint="it comes from a development build: initialise a new home",
                )
            # executescript commits on its own; every statement in the schema is idempotent.
            db.executescript(SCHEMA)
            for table, column, definition in ADDED_COLUMNS:
                _add_column(db, table, column, definition)
            db.executescript(ON_ADDED_COLUMNS)
            db.executescript(AUDIT_INDEXES)
            _add_counters(db)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise NodeError(f"cannot open database {path}: {exc}") from exc
        super().__init__(db)
        self._in_unit = False

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def snapshot(self) -> Iterator[Reads]:
        if self._in_unit:
            raise NodeError("internal error: a snapshot was opened inside a unit of work")
        self._in_unit = True
        try:
            with _read_transaction(self._db):
                yield self
        finally:
            self._in_unit = False

    @contextmanager
    def unit(self, now: float) -> Iterator[Unit]:
        if self._in_unit:  # one connection, one transaction: nesting would be a silent no-op
            raise NodeError("internal error: a unit of work was opened inside another")
        self._db.execute("BEGIN IMMEDIATE")
        self._in_unit = True
        try:
            yield SqliteUnit(self._db, now)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._in_unit = False


class SqliteReader(_Reads):
    """A second connection to a node's database, read-only, for reads on a thread of their own.

    In WAL mode a reader neither waits for the writer nor makes it wait: it sees the last commit
    before each of its reads (or, in :meth:`snapshot`, before the snapshot began) while a unit is
    open on the writer's connection. ``query_only`` makes a write through it an error, not a
    second writer.
    """

    def __init__(self, path: Path) -> None:
        try:
            uri = f"file:{quote(str(path))}?mode=ro"
            db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA query_only=ON")
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA cache_size=-8192")  # 8 MiB: listings and status stay in memory
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.close()
                raise NodeError(f"internal error: database {path} is not in WAL mode")
        except (sqlite3.Error, OSError) as exc:
            raise NodeError(f"cannot open database {path} for reading: {exc}") from exc
        super().__init__(db)

    @contextmanager
    def snapshot(self) -> Iterator[Reads]:
        with _read_transaction(self._db):
            yield self

    def close(self) -> None:
        self._db.close()


@contextmanager
def _read_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """A deferred transaction that only reads: its first read fixes the state all later ones
    see (WAL), and it never takes the write lock."""
    db.execute("BEGIN")
    try:
        db.execute("SELECT COUNT(*) FROM audit_state").fetchone()  # the state is fixed here
        yield
    finally:
        db.execute("ROLLBACK")


def _add_counters(db: sqlite3.Connection) -> None:
    """Create the status counters and their triggers, filled from the rows, if a database of an
    earlier release lacks them: in one transaction, which a racing process waits for."""
    exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    if db.execute(exists, (COUNTERS_TABLE,)).fetchone():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if not db.execute(exists, (COUNTERS_TABLE,)).fetchone():
            for statement in _statements(COUNTERS):
                db.execute(statement)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _statements(script: str) -> list[str]:
    """``script`` split into whole statements (a trigger's body holds semicolons)."""
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return out


def _add_column(db: sqlite3.Connection, table: str, column: str, definition: str) -> None:
    """Add a column a database of an earlier release lacks (another process may race us)."""
    if column in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
        return
    try:
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    except sqlite3.OperationalError:
        if column not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
            raise


def _inbox_filter(
    only: InboxFilter, where: list[str], args: list[Any]
) -> tuple[list[str], list[Any]]:
    if only.types:
        where.append(f"type IN ({','.join('?' * len(only.types))})")
        args += only.types
    if only.sender is not None:
        where.append("sender = ?")
        args.append(only.sender)
    if only.priorities:
        where.append(f"priority IN ({','.join('?' * len(only.priorities))})")
        args += [_urgency(p) for p in only.priorities]
    return where, args


def _ids_between(db: sqlite3.Connection, table: str, prefix: str, limit: int) -> list[bytes]:
    """The distinct message ids in ``table`` whose hex starts with ``prefix`` (lowercase hex, at
    most 32 digits): a range on the id index, ``prefix`` padded with 0s and with fs."""
    low = bytes.fromhex((prefix + "0" * 32)[:32])
    high = bytes.fromhex((prefix + "f" * 32)[:32])
    rows = db.execute(
        f"SELECT DISTINCT id FROM {table} WHERE id BETWEEN ? AND ? ORDER BY id LIMIT ?",
        (low, high, limit),
    )
    return [bytes(i) for (i,) in rows]


def _peaks(packed: bytes) -> list[bytes]:
    return [packed[i : i + 32] for i in range(0, len(packed), 32)]


def _not_in(ids: Collection[bytes]) -> str:
    return f" AND o.msg_id NOT IN ({','.join('?' * len(ids))})" if ids else ""


def _peer(row: Sequence[Any]) -> PeerRecord:
    name, node_id, fingerprint, card, verified_by, status, added_at, revoked_at = row[:8]
    reason, since, pending, introduced = row[8:]
    return PeerRecord(
        revoke_reason=reason,
        revoke_since=since,
        pending_card=pending,
        introduced_by=introduced,
        name=str(name),
        node_id=bytes(node_id),
        fingerprint=str(fingerprint),
        card=str(card),
        verified_by=verified_by,
        status=status,
        added_at=int(added_at),
        revoked_at=None if revoked_at is None else int(revoked_at),
    )


def _inbox(r: Sequence[Any]) -> InboxRow:
    return InboxRow(
        id=bytes(r[0]),
        sender=bytes(r[1]),
        type=str(r[2]),
        created=int(r[3]),
        expires=int(r[4]),
        received_at=float(r[5]),
        content_hash=bytes(r[6]),
        refers_to=None if r[7] is None else bytes(r[7]),
        read_at=r[8],
        acked_at=r[9],
        ack_action=r[10],
        withdrawn_by=None if r[11] is None else bytes(r[11]),
        priority=_PRIORITIES[int(r[12])] if 0 <= int(r[12]) < len(_PRIORITIES) else "routine",
        suspect=r[13],
        tlp=r[14],
    )


def _inbox_order(row: InboxRow) -> tuple[int, float, bytes, bytes]:
    """A row's place in the listing, as ``_INBOX_ORDER`` sorts (all descending)."""
    return (_urgency(row.priority), row.received_at, row.sender, row.id)


def _urgency(priority: str) -> int:
    return _PRIORITIES.index(priority) if priority in _PRIORITIES else 0
