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
CREATE INDEX IF NOT EXISTS inbox_by_sender ON inbox(sender, priority, received_at, id);
CREATE INDEX IF NOT EXISTS inbox_by_type ON inbox(type, priority, received_at, sender, id);
-- Covering what status and the flow view read of each entry still to deliver (its message's age
-- and TLP), so they touch this small index and not the rows, envelopes and all.
CREATE INDEX IF NOT EXISTS messages_age ON messages(id, queued_at, tlp);
"""

# What an audit entry's JSON says, as index expressions: ``audit log --kind/--message`` reads
# the matching entries through an index instead of decoding the whole log. NULL for an entry
# that is not JSON (a damaged one must still be storable, for ``audit verify`` to name it).
AUDIT_KIND = "(CASE WHEN json_valid(CAST(entry AS TEXT)) THEN json_extract(CAST(entry AS TEXT), '$.kind') END)"
AUDIT_MESSAGE = (
    "(CASE WHEN json_valid(CAST(entry AS TEXT)) "
    "THEN json_extract(CAST(entry AS TEXT), '$.message_id') END)"
)

AUDIT_TIME = "(CASE WHEN json_valid(CAST(entry AS TEXT)) THEN json_extract(CAST(entry AS TEXT), '$.time') END)"
AUDIT_INDEXES = f"""
CREATE INDEX IF NOT EXISTS audit_kind ON audit({AUDIT_KIND}, idx);
CREATE INDEX IF NOT EXISTS audit_message ON audit({AUDIT_MESSAGE}, idx);
CREATE INDEX IF NOT EXISTS audit_time ON audit({AUDIT_TIME}, idx);
"""

# Counts that status reads, kept by triggers in the same transaction as every write to the rows
# they count: delivered outbox entries and read inbox messages grow without bound, and counting
# them at each ``status`` read grew with the history (15 -> 81 ms from 10k to 65k messages). A
# database without them gains them when opened, filled from the rows once (COUNTERS, in the
# transaction that creates them: a write cannot fall between the fill and the triggers).
COUNTERS_TABLE = "outbox_counts"
COUNTERS = """
CREATE TABLE outbox_counts (
    peer   BLOB NOT NULL,
    status TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (peer, status)
) WITHOUT ROWID;
INSERT INTO outbox_counts (peer, status, n)
    SELECT peer, status, COUNT(*) FROM outbox GROUP BY peer, status;
CREATE TABLE inbox_counts (
    sender   BLOB PRIMARY KEY,
    messages INTEGER NOT NULL,
    unread   INTEGER NOT NULL,
    bytes    INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO inbox_counts (sender, messages, unread, bytes)
    SELECT sender, COUNT(*), COUNT(*) - COUNT(read_at), SUM(LENGTH(envelope))
    FROM inbox GROUP BY sender;
CREATE TRIGGER outbox_counted AFTER INSERT ON outbox BEGIN
    INSERT INTO outbox_counts (peer, status, n) VALUES (new.peer, new.status, 1)
        ON CONFLICT (peer, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER outbox_recounted AFTER UPDATE OF status, peer ON outbox
    WHEN old.status IS NOT new.status OR old.peer IS NOT new.peer BEGIN
    UPDATE outbox_counts SET n = n - 1 WHERE peer = old.peer AND status = old.status;
    INSERT INTO outbox_counts (peer, status, n) VALUES (new.peer, new.status, 1)
        ON CONFLICT (peer, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER outbox_uncounted AFTER DELETE ON outbox BEGIN
    UPDATE outbox_counts SET n = n - 1 WHERE peer = old.peer AND status = old.status;
END;
CREATE TRIGGER inbox_counted AFTER INSERT ON inbox BEGIN
    INSERT INTO inbox_counts (sender, messages, unread, bytes)
        VALUES (new.sender, 1, new.read_at IS NULL, LENGTH(new.envelope))
        ON CONFLICT (sender) DO UPDATE SET messages = messages + 1,
            unread = unread + excluded.unread, bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER inbox_recounted AFTER UPDATE OF read_at, envelope, sender ON inbox BEGIN
    UPDATE inbox_counts SET messages = messages - 1, unread = unread - (old.read_at IS NULL),
        bytes = bytes - LENGTH(old.envelope) WHERE sender = old.sender;
    INSERT INTO inbox_counts (sender, messages, unread, bytes)
        VALUES (new.sender, 1, new.read_at IS NULL, LENGTH(new.envelope))
        ON CONFLICT (sender) DO UPDATE SET messages = messages + 1,
            unread = unread + excluded.unread, bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER inbox_uncounted AFTER DELETE ON inbox BEGIN
    UPDATE inbox_counts SET messages = messages - 1, unread = unread - (old.read_at IS NULL),
        bytes = bytes - LENGTH(old.envelope) WHERE sender = old.sender;
END;
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
-- How far the node's background check recomputed the tree (node/audit_ops.py): id 0 is the
-- verified prefix (its size and right-edge peaks, extended by the entries appended since), id 1
-- the sweep that re-checks that prefix a bounded slice at a time, from 0, over and over.
CREATE TABLE IF NOT EXISTS audit_verified (
    id    INTEGER PRIMARY KEY CHECK (id IN (0, 1)),
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
