"""SQLite storage for one node: peers, the replay table, outbox (outbox_store) and inbox.

SQLite in WAL mode with ``synchronous=FULL``: a transaction that returned is on disk, so anything
the node acknowledged survives kill -9 and power loss. Methods are synchronous and small; the
daemon runs them on one dedicated thread so the event loop never waits on fsync.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from keys.trust import PeerRecord
from node.audit_store import AUDIT_SCHEMA, AuditMixin
from node.inbox_store import InboxMixin
from node.outbox_store import OutboxMixin
from protocol.audit import AuditEntry
from protocol.errors import NodeError, Replay

# 2: message ids scoped by sender (seen and inbox keys), inbox.retracts. Version 1 existed only
# in development builds of this repository; such a database is refused, not silently misread.
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS peers (
    name        TEXT PRIMARY KEY,
    node_id     BLOB NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    card        TEXT NOT NULL,
    verified_by TEXT NOT NULL,
    status      TEXT NOT NULL,
    added_at    INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE TABLE IF NOT EXISTS seen (
    sender   BLOB NOT NULL,
    id       BLOB NOT NULL,
    expires  INTEGER NOT NULL,
    PRIMARY KEY (sender, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_expires ON seen(expires);
CREATE TABLE IF NOT EXISTS messages (
    id           BLOB PRIMARY KEY,
    type         TEXT NOT NULL,
    created      INTEGER NOT NULL,
    expires      INTEGER NOT NULL,
    content_hash BLOB NOT NULL,
    envelope     BLOB NOT NULL,
    queued_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    msg_id       BLOB NOT NULL REFERENCES messages(id),
    peer         BLOB NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error   TEXT,
    delivered_at REAL,
    receipt      BLOB,
    PRIMARY KEY (msg_id, peer)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(peer, status, next_attempt);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(peer, next_attempt)
    WHERE status IN ('queued', 'failed');
CREATE TABLE IF NOT EXISTS inbox (
    id           BLOB NOT NULL,
    sender       BLOB NOT NULL,
    type         TEXT NOT NULL,
    created      INTEGER NOT NULL,
    expires      INTEGER NOT NULL,
    received_at  REAL NOT NULL,
    content_hash BLOB NOT NULL,
    envelope     BLOB NOT NULL,
    receipt      BLOB NOT NULL,
    refers_to    BLOB,
    retracts     BLOB,
    read_at      REAL,
    acked_at     REAL,
    ack_action   TEXT,
    withdrawn_by BLOB,
    PRIMARY KEY (sender, id)
);
CREATE INDEX IF NOT EXISTS inbox_id ON inbox(id);
CREATE INDEX IF NOT EXISTS inbox_retracts ON inbox(sender, retracts);
"""

_PEER_COLUMNS = "name, node_id, fingerprint, card, verified_by, status, added_at, revoked_at"


class Store(OutboxMixin, InboxMixin, AuditMixin):
    """One node's database. Not shared between threads: the daemon gives it a thread of its own."""

    def __init__(self, path: Path) -> None:
        try:
            # Private from the first byte: SQLite gives the -wal and -shm files the same mode.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA busy_timeout=5000")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise NodeError(
                    f"database {path} has schema version {version}; this borderlink needs "
                    f"{SCHEMA_VERSION}",
                    hint="it comes from a development build: initialise a new home",
                )
            # executescript commits on its own; every statement in the schema is idempotent.
            self.db.executescript(_SCHEMA + AUDIT_SCHEMA)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise NodeError(f"cannot open database {path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable unit of work (BEGIN IMMEDIATE ... COMMIT)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # peers -----------------------------------------------------------------------------------

    def peer_by_name(self, name: str) -> PeerRecord | None:
        row = self.db.execute(
            f"SELECT {_PEER_COLUMNS} FROM peers WHERE name = ?", (name,)
        ).fetchone()
        return _peer(row) if row else None

    def peer_by_id(self, node_id: bytes) -> PeerRecord | None:
        row = self.db.execute(
            f"SELECT {_PEER_COLUMNS} FROM peers WHERE node_id = ?", (node_id,)
        ).fetchone()
        return _peer(row) if row else None

    def peers(self) -> list[PeerRecord]:
        rows = self.db.execute(f"SELECT {_PEER_COLUMNS} FROM peers ORDER BY name").fetchall()
        return [_peer(r) for r in rows]

    def put_peer(self, p: PeerRecord, audit: AuditEntry | None = None) -> None:
        with self.transaction() as db:
            if audit is not None:
                self.audit_append(db, audit)
            db.execute(
                f"INSERT OR REPLACE INTO peers ({_PEER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    p.name,
                    p.node_id,
                    p.fingerprint,
                    p.card,
                    p.verified_by,
                    p.status,
                    p.added_at,
                    p.revoked_at,
                ),
            )

    def remove_peer(self, name: str, audit: AuditEntry | None = None) -> bool:
        with self.transaction() as db:
            gone = db.execute("DELETE FROM peers WHERE name = ?", (name,)).rowcount > 0
            if gone and audit is not None:
                self.audit_append(db, audit)
            return gone

    # replay table (PROTOCOL.md 6.2 step 9) ---------------------------------------------------

    def seen(self, sender: bytes, msg_id: bytes) -> bool:
        """Ids are scoped by sender: a peer that reuses another sender's id pre-empts nothing."""
        row = self.db.execute("SELECT 1 FROM seen WHERE sender = ? AND id = ?", (sender, msg_id))
        return row.fetchone() is not None

    def mark_seen(self, db: sqlite3.Connection, sender: bytes, msg_id: bytes, expires: int) -> None:
        """Inside the caller's transaction, together with whatever else accepting a message stores.

        The primary key makes this the authoritative replay check: of two racing accepts of one
        id, the second fails here even if both passed :meth:`seen`.
        """
        try:
            db.execute(
                "INSERT INTO seen (sender, id, expires) VALUES (?, ?, ?)", (sender, msg_id, expires)
            )
        except sqlite3.IntegrityError as exc:
            raise Replay("message id was already accepted") from exc

    def prune_seen(self, now: int) -> int:
        """Ids can be forgotten once expired: an expired message is rejected before the table."""
        with self.transaction() as db:
            return db.execute("DELETE FROM seen WHERE expires <= ?", (now,)).rowcount


def _peer(row: tuple[object, ...]) -> PeerRecord:
    keys = _PEER_COLUMNS.split(", ")
    return PeerRecord(**dict(zip(keys, row, strict=True)))  # type: ignore[arg-type]
