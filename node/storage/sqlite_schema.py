"""The SQLite schema of a node's database (version 2), and nothing else.

2: message ids scoped by sender (seen and inbox keys), inbox.retracts. Version 1 existed only in
development builds of this repository; such a database is refused, not silently misread. Every
statement is idempotent, so opening an existing database runs it again harmlessly.
"""

from __future__ import annotations

SCHEMA_VERSION = 2

# Columns added to a released version's tables, with the value rows stored before them get: a
# database without one gains it (ALTER TABLE) when opened, then the indexes that use them.
# inbox.priority: 0 routine, 1 urgent, 2 flash (meta.priority, kept when a message is stored).
# peers.revoke_reason .. introduced_by, inbox.suspect: key lifecycle (PROTOCOL.md 13).
# inbox.tlp: meta.tlp, kept when a message is stored; NULL (unknown) for rows stored before.
ADDED_COLUMNS = (
    ("inbox", "priority", "INTEGER NOT NULL DEFAULT 0"),
    ("inbox", "suspect", "TEXT"),
    ("inbox", "tlp", "TEXT"),
    ("peers", "revoke_reason", "TEXT"),
    ("peers", "revoke_since", "INTEGER"),
    ("peers", "pending_card", "TEXT"),
    ("peers", "introduced_by", "TEXT"),
    # messages.priority, .tlp: kept when a message is queued, for flow events (PROTOCOL.md 14).
    ("messages", "priority", "TEXT"),
    ("messages", "tlp", "TEXT"),
)
ON_ADDED_COLUMNS = """
CREATE INDEX IF NOT EXISTS inbox_listing ON inbox(priority, received_at, sender, id);
CREATE INDEX IF NOT EXISTS inbox_unread ON inbox(priority, received_at, sender, id)
    WHERE read_at IS NULL;
"""

SCHEMA = """
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
    priority     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sender, id)
);
CREATE INDEX IF NOT EXISTS inbox_id ON inbox(id);
CREATE INDEX IF NOT EXISTS inbox_retracts ON inbox(sender, retracts);
CREATE INDEX IF NOT EXISTS messages_queued ON messages(queued_at, id);
CREATE TABLE IF NOT EXISTS audit (
    idx   INTEGER PRIMARY KEY,
    entry BLOB NOT NULL,
    root  BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_state (
    id    INTEGER PRIMARY KEY CHECK (id = 0),
    size  INTEGER NOT NULL,
    peaks BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size      INTEGER PRIMARY KEY,
    root      BLOB NOT NULL,
    note      TEXT NOT NULL,
    signed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cosignatures (
    size    INTEGER NOT NULL,
    witness BLOB NOT NULL,
    line    TEXT NOT NULL,
    time    INTEGER NOT NULL,
    PRIMARY KEY (size, witness)
);
CREATE TABLE IF NOT EXISTS witnessed (
    node    BLOB PRIMARY KEY,
    size    INTEGER NOT NULL,
    root    BLOB NOT NULL,
    note    TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked_keys (
    node    BLOB NOT NULL,
    key     BLOB NOT NULL,
    reason  TEXT NOT NULL,
    since   INTEGER,
    at      INTEGER NOT NULL,
    statement TEXT NOT NULL,
    PRIMARY KEY (node, key)
);
CREATE TABLE IF NOT EXISTS key_notices (
    id           INTEGER PRIMARY KEY,
    peer         BLOB NOT NULL,
    kind         TEXT NOT NULL,
    statement    TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error   TEXT,
    queued_at    REAL NOT NULL,
    delivered_at REAL,
    receipt      BLOB
);
CREATE INDEX IF NOT EXISTS key_notices_due ON key_notices(peer, status, id);
CREATE TABLE IF NOT EXISTS key_events (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    peer    TEXT NOT NULL,
    kind    TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rotations_applied (
    node       BLOB NOT NULL,
    seq        INTEGER NOT NULL,
    applied_at INTEGER NOT NULL,
    PRIMARY KEY (node, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS directories (
    coordinator BLOB PRIMARY KEY,
    seq         INTEGER NOT NULL,
    at          REAL NOT NULL
);
-- Flow (PROTOCOL.md 14): this node's own events and those its units reported, one table, so a
-- coordinator's dashboard and a unit's show the same thing from the same rows. rid is the order
-- they were stored here (what the live feed follows), (unit, seq) the reporter's own order: a
-- replayed report inserts nothing. flow_self names this node (its events' unit).
CREATE TABLE IF NOT EXISTS flow_self (
    k  INTEGER PRIMARY KEY CHECK (k = 0),
    id BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS flow_events (
    rid        INTEGER PRIMARY KEY,
    unit       BLOB NOT NULL,
    seq        INTEGER NOT NULL,
    at         REAL NOT NULL,
    event      TEXT NOT NULL,
    msg_id     BLOB,
    type       TEXT,
    priority   TEXT,
    tlp        TEXT,
    peer       BLOB,
    recipients BLOB,
    size       TEXT,
    latency    REAL,
    reason     TEXT,
    action     TEXT,
    withheld   TEXT NOT NULL DEFAULT '',
    UNIQUE (unit, seq)
);
CREATE INDEX IF NOT EXISTS flow_msg ON flow_events(msg_id) WHERE msg_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS flow_at ON flow_events(at);
CREATE INDEX IF NOT EXISTS flow_peer ON flow_events(peer, event, at) WHERE peer IS NOT NULL;
CREATE TABLE IF NOT EXISTS flow_units (
    unit        BLOB PRIMARY KEY,
    state       BLOB NOT NULL,
    report_time REAL NOT NULL,
    received_at REAL NOT NULL,
    through     INTEGER NOT NULL,
    policy      BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS flow_rollup (
    unit  BLOB NOT NULL,
    event TEXT NOT NULL,
    peer  BLOB NOT NULL,  -- X'' for none
    type  TEXT NOT NULL,  -- '' for none
    count INTEGER NOT NULL,
    PRIMARY KEY (unit, event, peer, type)
);
CREATE TABLE IF NOT EXISTS flow_latency_rollup (
    unit   BLOB NOT NULL,
    bucket INTEGER NOT NULL,  -- index of the first LATENCY_BUCKETS bound it is under
    count  INTEGER NOT NULL,
    total  REAL NOT NULL,
    PRIMARY KEY (unit, bucket)
);
CREATE TABLE IF NOT EXISTS flow_pruned (
    unit    BLOB PRIMARY KEY,
    through INTEGER NOT NULL  -- this unit's events up to this seq were pruned
);
CREATE TABLE IF NOT EXISTS flow_cursors (
    coordinator   BLOB PRIMARY KEY,
    through       INTEGER NOT NULL,
    sent_at       REAL,
    failing_since REAL,
    last_error    TEXT
);
CREATE TABLE IF NOT EXISTS evidence (
    id       INTEGER PRIMARY KEY,
    node     BLOB NOT NULL,
    kind     TEXT NOT NULL,
    old_note TEXT,
    new_note TEXT NOT NULL,
    detail   TEXT NOT NULL,
    at       REAL NOT NULL
);
"""
