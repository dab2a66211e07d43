"""Audit log storage: append-only entries, the tree's right edge, signed checkpoints, cosignatures,
and what this node witnessed of its peers' logs (PROTOCOL.md 12).

Appends run inside the caller's transaction, so an event and its audit entry commit together (a
queued message is never missing from the log, nor logged without being queued). Each append costs
O(log n): the tree's right-edge peaks are kept in ``audit_state``.
"""

from __future__ import annotations

import getpass
import sqlite3
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import msgspec

from protocol.audit import AuditEntry, encode_entry, origin_of
from protocol.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint
from protocol.errors import AuditError
from protocol.identity import Identity
from protocol.merkle import MerkleAccumulator, leaf_hash, root_from_leaf_hashes
from protocol.signednote import parse_note

AUDIT_SCHEMA = """
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


class _Db(Protocol):
    db: sqlite3.Connection

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def event(kind: str, actor: str = "node", **fields: Any) -> AuditEntry:
    return AuditEntry(time=int(time.time() * 1000), actor=actor, kind=kind, **fields)


class AuditMixin:
    def audit_append(self: _Db, db: sqlite3.Connection, entry: AuditEntry) -> int:
        """Append inside the caller's transaction; returns the entry's index."""
        data = encode_entry(entry)
        row = db.execute("SELECT size, peaks FROM audit_state WHERE id = 0").fetchone()
        acc = MerkleAccumulator()
        if row is not None:
            peaks = bytes(row[1])
            acc = MerkleAccumulator.restore(
                int(row[0]), [peaks[i : i + 32] for i in range(0, len(peaks), 32)]
            )
        idx = acc.size
        acc.append(leaf_hash(data))
        db.execute("INSERT INTO audit (idx, entry, root) VALUES (?, ?, ?)", (idx, data, acc.root()))
        db.execute(
            "INSERT OR REPLACE INTO audit_state (id, size, peaks) VALUES (0, ?, ?)",
            (acc.size, b"".join(acc.peaks)),
        )
        return idx

    def audit(self: _Db, entry: AuditEntry) -> int:
        with self.transaction() as db:
            return AuditMixin.audit_append(self, db, entry)  # type: ignore[arg-type]

    def audit_rows(self: _Db) -> list[tuple[int, bytes, bytes]]:
        rows = self.db.execute("SELECT idx, entry, root FROM audit ORDER BY idx").fetchall()
        return [(int(i), bytes(e), bytes(r)) for i, e, r in rows]

    def audit_size(self: _Db) -> int:
        row = self.db.execute("SELECT size FROM audit_state WHERE id = 0").fetchone()
        return int(row[0]) if row else 0

    def leaf_hashes(self: _Db, size: int | None = None, start: int = 0) -> list[bytes]:
        """Leaf hashes of entries ``start`` to ``size`` (exclusive; None: to the end)."""
        end = size if size is not None else 2**62
        rows = self.db.execute(
            "SELECT entry FROM audit WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        ).fetchall()
        return [leaf_hash(bytes(r[0])) for r in rows]

    # own checkpoints ------------------------------------------------------------------------

    def own_checkpoints(self: _Db) -> list[tuple[int, bytes, str]]:
        rows = self.db.execute("SELECT size, root, note FROM checkpoints ORDER BY size").fetchall()
        return [(int(s), bytes(r), str(n)) for s, r, n in rows]

    def latest_checkpoint(self: _Db) -> tuple[int, bytes, str] | None:
        row = self.db.execute(
            "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return (int(row[0]), bytes(row[1]), str(row[2])) if row else None

    def sign_checkpoint(
        self: _Db,
        identity: Identity,
        actor: str = "node",
        force: bool = False,
        full: bool = True,
    ) -> tuple[str, bool]:
        """Sign a checkpoint of the current log unless the latest one already covers it.

        Never signs a tree that does not extend the latest signed one (PROTOCOL.md 12.2). With
        ``full`` the whole tree is recomputed from the entries, O(n); without, the roots recorded
        at append time are compared, O(log n), and the node runs the full check at start and
        every ``audit.full_check_interval``. Returns (note, whether it is new).
        """
        with self.transaction() as db:
            latest = AuditMixin.latest_checkpoint(self)  # type: ignore[arg-type]
            size = AuditMixin.audit_size(self)  # type: ignore[arg-type]
            if latest is not None and latest[0] == size:
                return latest[2], False
            if latest is not None and not force and _only_witnessing(db, latest[0]):
                # Entries about witnessing alone do not call for a new checkpoint: otherwise two
                # nodes witnessing each other would extend each other's logs forever.
                return latest[2], False
            if latest is not None:
                try:
                    prefix = _prefix_root(self, db, latest[0], full)
                except AuditError:
                    prefix = b""
                if size < latest[0] or prefix != latest[1]:
                    raise AuditError(
                        f"refusing to sign: the audit log no longer extends the checkpoint of size "
                        f"{latest[0]} signed before; run 'borderlink audit verify'"
                    )
            # The publication is itself logged, then the checkpoint covers that entry too.
            AuditMixin.audit_append(
                self,
                db,
                event(
                    "checkpoint.published",
                    actor,  # type: ignore[arg-type]
                    outcome=f"size {size + 1}",
                ),
            )
            size += 1
            root = _prefix_root(self, db, size, full)
            origin = origin_of(identity.node_id)
            note = sign_checkpoint(Checkpoint(origin, size, root), origin, identity.signing_key)
            db.execute(
                "INSERT INTO checkpoints (size, root, note, signed_at) VALUES (?, ?, ?, ?)",
                (size, root, note, time.time()),
            )
            return note, True

    def add_cosignature(
        self: _Db, size: int, witness: bytes, line: str, ts: int, peer: str | None = None
    ) -> None:
        with self.transaction() as db:
            AuditMixin.audit_append(
                self,
                db,
                event(  # type: ignore[arg-type]
                    "checkpoint.cosigned", peer=peer, peer_id=witness.hex(), outcome=f"size {size}"
                ),
            )
            db.execute(
                "INSERT OR REPLACE INTO cosignatures (size, witness, line, time) VALUES (?,?,?,?)",
                (size, witness, line, ts),
            )

    def cosignatures(self: _Db, size: int) -> list[tuple[bytes, str, int]]:
        rows = self.db.execute(
            "SELECT witness, line, time FROM cosignatures WHERE size = ? ORDER BY witness", (size,)
        ).fetchall()
        return [(bytes(w), str(ln), int(t)) for w, ln, t in rows]

    def cosigned_note(self: _Db) -> str | None:
        """The latest checkpoint with every cosignature line received for it appended."""
        latest = AuditMixin.latest_checkpoint(self)  # type: ignore[arg-type]
        if latest is None:
            return None
        lines = [ln for _, ln, _ in AuditMixin.cosignatures(self, latest[0])]  # type: ignore[arg-type]
        return latest[2] + "".join(ln if ln.endswith("\n") else ln + "\n" for ln in lines)

    # witnessing peers' logs -------------------------------------------------------------------

    def witnessed(self: _Db, node: bytes) -> tuple[Checkpoint, str] | None:
        row = self.db.execute("SELECT note FROM witnessed WHERE node = ?", (node,)).fetchone()
        if row is None:
            return None
        note = str(row[0])
        return parse_checkpoint(parse_note(note).text), note

    def record_witnessed(self: _Db, node: bytes, cp: Checkpoint, note: str, peer: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO witnessed (node, size, root, note, updated) VALUES (?,?,?,?,?)",
                (node, cp.size, cp.root_hash, note, time.time()),
            )
            AuditMixin.audit_append(
                self,
                db,
                event(  # type: ignore[arg-type]
                    "checkpoint.received",
                    peer=peer,
                    peer_id=node.hex(),
                    outcome=f"size {cp.size}",
                    hashes={"root": cp.root_hash.hex()},
                ),
            )

    def record_evidence(
        self: _Db,
        node: bytes,
        kind: str,
        old_note: str | None,
        new_note: str,
        detail: str,
        peer: str,
    ) -> bool:
        """Keep both signed notes as evidence, once per offending note; True if it was new."""
        with self.transaction() as db:
            if db.execute(
                "SELECT 1 FROM evidence WHERE node = ? AND new_note = ?", (node, new_note)
            ).fetchone():
                return False
            db.execute(
                "INSERT INTO evidence (node, kind, old_note, new_note, detail, at) "
                "VALUES (?,?,?,?,?,?)",
                (node, kind, old_note, new_note, detail, time.time()),
            )
            AuditMixin.audit_append(
                self,
                db,
                event(  # type: ignore[arg-type]
                    "checkpoint.inconsistent",
                    peer=peer,
                    peer_id=node.hex(),
                    outcome=kind,
                    detail=detail,
                ),
            )
            return True

    def evidence(self: _Db) -> list[dict[str, Any]]:
        cur = self.db.execute(
            "SELECT node, kind, old_note, new_note, detail, at FROM evidence ORDER BY id"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur]


def _prefix_root(store: Any, db: sqlite3.Connection, size: int, full: bool) -> bytes:
    """Root of the first ``size`` entries as recorded at append time; with ``full``, also
    recomputed from the entries themselves, refusing when the two differ."""
    row = db.execute("SELECT root FROM audit WHERE idx = ?", (size - 1,)).fetchone()
    recorded = bytes(row[0]) if row else b""
    if full and root_from_leaf_hashes(AuditMixin.leaf_hashes(store, size)) != recorded:
        raise AuditError(
            f"refusing to sign: the first {size} audit entries no longer give the root recorded "
            "when they were appended; run 'borderlink audit verify'"
        )
    return recorded


_WITNESSING = frozenset({"checkpoint.received", "checkpoint.cosigned", "checkpoint.published"})


def _only_witnessing(db: sqlite3.Connection, since: int) -> bool:
    rows = db.execute("SELECT entry FROM audit WHERE idx >= ?", (since,)).fetchall()
    return all(msgspec.json.decode(bytes(r[0]))["kind"] in _WITNESSING for r in rows)


def entries_json(rows: Sequence[tuple[int, bytes, bytes]]) -> list[dict[str, Any]]:
    out = []
    for idx, data, _root in rows:
        d = msgspec.json.decode(data)
        d["index"] = idx
        out.append(d)
    return out
