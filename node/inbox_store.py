"""Inbox tables: messages received, kept as their encrypted envelopes.

The inbox stores the envelope as delivered (still encrypted to this node), never the plaintext: a
copy of node.db without the keystore passphrase reveals who sent what kind of message when, not
what it says. ``inbox show`` decrypts again with the node's key.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from node.outbox_store import _dicts
from protocol.audit import AuditEntry
from protocol.errors import Replay


class _Db(Protocol):
    db: sqlite3.Connection

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def audit_append(self, db: sqlite3.Connection, entry: AuditEntry) -> int: ...


@dataclass(frozen=True)
class Accepted:
    """One verified message ready to store (the receiver fills it after open_envelope)."""

    id: bytes
    sender: bytes
    type: str
    created: int
    expires: int
    content_hash: bytes
    envelope: bytes
    refers_to: bytes | None = None  # Feedback / Retraction target
    retracts: bytes | None = None


_INBOX_COLUMNS = (
    "id, sender, type, created, expires, received_at, content_hash, refers_to, read_at, "
    "acked_at, ack_action, withdrawn_by"
)


class InboxMixin:
    def inbox_lookup(self: _Db, sender: bytes, msg_id: bytes) -> tuple[bytes, bytes] | None:
        """(content hash, receipt) of a message accepted from ``sender``, for idempotent
        re-delivery. Ids are scoped by sender: another peer cannot pre-empt one."""
        row = self.db.execute(
            "SELECT content_hash, receipt FROM inbox WHERE sender = ? AND id = ?", (sender, msg_id)
        ).fetchone()
        return (bytes(row[0]), bytes(row[1])) if row else None

    def accept(
        self: _Db, items: Sequence[Accepted], receipt: bytes, now: float, source: str | None = None
    ) -> None:
        """Store messages, replay-table entries, receipt and audit entries in one transaction."""
        from node.audit_store import event

        with self.transaction() as db:
            for it in items:
                self.audit_append(
                    db,
                    event(
                        "message.received",
                        message_id=it.id.hex(),
                        peer_id=it.sender.hex(),
                        outcome=it.type,
                        source=source,
                        hashes={
                            "content": it.content_hash.hex(),
                            "receipt": hashlib.sha256(receipt).hexdigest(),
                        },
                    ),
                )
                if it.retracts is not None:
                    self.audit_append(
                        db,
                        event(
                            "message.retracted",
                            message_id=it.retracts.hex(),
                            peer_id=it.sender.hex(),
                            detail=f"by {it.id.hex()}",
                        ),
                    )
                try:
                    db.execute(
                        "INSERT INTO seen (sender, id, expires) VALUES (?, ?, ?)",
                        (it.sender, it.id, it.expires),
                    )
                except sqlite3.IntegrityError as exc:
                    raise Replay("message id was already accepted") from exc
                db.execute(
                    "INSERT INTO inbox (id, sender, type, created, expires, received_at, "
                    "content_hash, envelope, receipt, refers_to, retracts) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        it.id,
                        it.sender,
                        it.type,
                        it.created,
                        it.expires,
                        now,
                        it.content_hash,
                        it.envelope,
                        receipt,
                        it.refers_to,
                        it.retracts,
                    ),
                )
                # A retraction withdraws its target from the same sender, whichever arrives first.
                if it.retracts is not None:
                    db.execute(
                        "UPDATE inbox SET withdrawn_by = ? WHERE id = ? AND sender = ?",
                        (it.id, it.retracts, it.sender),
                    )
                db.execute(
                    "UPDATE inbox SET withdrawn_by = (SELECT id FROM inbox WHERE sender = :s AND "
                    "retracts = :i LIMIT 1) WHERE sender = :s AND id = :i AND withdrawn_by IS NULL",
                    {"s": it.sender, "i": it.id},
                )

    def inbox_rows(self: _Db, *, unread: bool = False, limit: int = 500) -> list[dict[str, Any]]:
        where = "WHERE read_at IS NULL" if unread else ""
        cur = self.db.execute(
            f"SELECT {_INBOX_COLUMNS} FROM inbox {where} ORDER BY received_at DESC LIMIT ?",
            (limit,),
        )
        return list(_dicts(cur))

    def inbox_get(
        self: _Db, msg_id: bytes, sender: bytes | None = None
    ) -> list[tuple[dict[str, Any], bytes]]:
        """Rows with this id (from ``sender`` if given): more than one means two senders used
        the same id, and the caller must ask which one is meant."""
        if sender is None:
            cur = self.db.execute(
                f"SELECT {_INBOX_COLUMNS}, envelope FROM inbox WHERE id = ?", (msg_id,)
            )
        else:
            cur = self.db.execute(
                f"SELECT {_INBOX_COLUMNS}, envelope FROM inbox WHERE id = ? AND sender = ?",
                (msg_id, sender),
            )
        return [(row, bytes(row.pop("envelope"))) for row in _dicts(cur)]

    def inbox_mark_read(
        self: _Db, sender: bytes, msg_id: bytes, now: float, actor: str = "node"
    ) -> None:
        from node.audit_store import event

        with self.transaction() as db:
            self.audit_append(
                db, event("message.shown", actor, message_id=msg_id.hex(), peer_id=sender.hex())
            )
            db.execute(
                "UPDATE inbox SET read_at = ? WHERE sender = ? AND id = ? AND read_at IS NULL",
                (now, sender, msg_id),
            )

    def inbox_mark_acked(
        self: _Db,
        sender: bytes,
        msg_id: bytes,
        action: str,
        now: float,
        feedback_id: bytes | None = None,
    ) -> None:
        from node.audit_store import event

        with self.transaction() as db:
            self.audit_append(
                db,
                event(
                    "message.acknowledged",
                    message_id=msg_id.hex(),
                    peer_id=sender.hex(),
                    outcome=action,
                    detail=f"feedback {feedback_id.hex()}" if feedback_id else None,
                ),
            )
            db.execute(
                "UPDATE inbox SET acked_at = ?, ack_action = ?, read_at = COALESCE(read_at, ?) "
                "WHERE sender = ? AND id = ?",
                (now, action, now, sender, msg_id),
            )

    def inbox_stats(self: _Db) -> dict[str, int]:
        total, unread = self.db.execute(
            "SELECT COUNT(*), COUNT(*) - COUNT(read_at) FROM inbox"
        ).fetchone()
        return {"total": int(total), "unread": int(unread)}
