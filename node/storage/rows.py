"""The rows the storage seam hands out and takes in: msgspec Structs, never backend cursors or tuples.

Times are Unix seconds as floats (``now`` as the caller passed it); message ids are 16 raw bytes,
node ids 32. Nothing here depends on how a backend stores them: a SQLite rowid or a PostgreSQL
sequence never leaks out (the audit log's ``index`` is the Merkle leaf index, PROTOCOL.md 12).
"""

from __future__ import annotations

import msgspec

from keys.trust import PeerRecord as PeerRecord  # re-exported: the peers table's row


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
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
    priority: str = "routine"  # meta.priority: routine | urgent | flash
    tlp: str | None = None  # meta.tlp: listings show it, flow events carry it (PROTOCOL.md 14)


class KnownMessage(msgspec.Struct, frozen=True):
    """What re-delivery of an accepted message needs: its content hash and original receipt."""

    content_hash: bytes
    receipt: bytes


class InboxRow(msgspec.Struct, frozen=True, kw_only=True):
    id: bytes
    sender: bytes
    type: str
    created: int
    expires: int
    received_at: float
    content_hash: bytes
    refers_to: bytes | None
    read_at: float | None
    acked_at: float | None
    ack_action: str | None
    withdrawn_by: bytes | None
    priority: str  # routine | urgent | flash; routine for messages stored before it was kept
    suspect: str | None = None  # why: its sender reported the signing key compromised
    tlp: str | None = None  # meta.tlp; None for messages stored before it was kept


class InboxFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which inbox rows a listing shows, besides unread ones: a field left empty matches every
    row, and a row must match every field."""

    types: tuple[str, ...] = ()  # any of these message types
    sender: bytes | None = None  # from this node id
    priorities: tuple[str, ...] = ()  # any of these priorities


class InboxKey(msgspec.Struct, frozen=True):
    """Where a row stands in the inbox listing (most urgent first, then newest): a page starts
    after the row with this key, so rows arriving meanwhile never shift it (keyset paging)."""

    priority: str
    received_at: float
    sender: bytes
    id: bytes


class SenderUsage(msgspec.Struct, frozen=True):
    """One sender's share of the inbox: what its quota counts, and what status shows."""

    sender: bytes
    messages: int
    unread: int
    bytes: int


class StoredMessage(msgspec.Struct, frozen=True):
    """An inbox row with the envelope as delivered (still encrypted to this node)."""

    row: InboxRow
    envelope: bytes


class InboxStats(msgspec.Struct, frozen=True):
    total: int
    unread: int


class QueuedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A sealed message as the outbox keeps it, once for all its recipients."""

    id: bytes
    type: str
    created: int
    expires: int
    content_hash: bytes
    envelope: bytes
    priority: str = "routine"  # meta.priority and meta.tlp, for flow events (PROTOCOL.md 14)
    tlp: str | None = None


class DueMessage(msgspec.Struct, frozen=True):
    """An outbox entry ready to try for one peer."""

    id: bytes
    envelope: bytes
    content_hash: bytes
    expires: int
    attempts: int


class OutboxRow(msgspec.Struct, frozen=True, kw_only=True):
    """Where one message stands for one recipient (PROTOCOL.md 11.4)."""

    id: bytes
    type: str
    created: int
    expires: int
    queued_at: float
    peer: bytes
    status: str  # queued | delivered | failed | expired | rejected
    attempts: int
    next_attempt: float
    last_error: str | None
    delivered_at: float | None


class OutboxKey(msgspec.Struct, frozen=True):
    """Where an entry stands in the outbox listing (newest message first, then by peer)."""

    queued_at: float
    id: bytes
    peer: bytes


class OutboxStats(msgspec.Struct, frozen=True):
    by_status: dict[str, int]
    oldest_undelivered: float | None  # queued_at of the oldest message still to deliver
    per_peer: dict[bytes, int]  # peer -> entries still to deliver


class AuditRow(msgspec.Struct, frozen=True):
    index: int
    entry: bytes  # the exact JSON bytes that are the Merkle leaf
    root: bytes  # the tree's root right after this entry was appended


class AuditState(msgspec.Struct, frozen=True):
    """The right edge of the audit tree: its size and peaks, enough to append in O(log n)."""

    size: int
    peaks: list[bytes]


class AuditFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which audit entries a listing shows: a field left empty matches every entry."""

    kind: str | None = None  # this kind, or ending in a dot, every kind it starts
    message_id: str | None = None  # lowercase hex
    since_ms: float | None = None  # timed at or after (Unix ms)


class AuditVerified(msgspec.Struct, frozen=True):
    """How far the node recomputed its audit tree from the entries themselves: ``prefix``, the
    entries verified so far (extended by those appended since, each round), and ``sweep``, how
    far the current pass re-checking that prefix from entry 0 has come (node/audit_ops.py)."""

    prefix: AuditState
    sweep: AuditState


class SignedCheckpoint(msgspec.Struct, frozen=True):
    size: int
    root: bytes
    note: str  # the signed note as this node signed it (PROTOCOL.md 12.2)


class Cosignature(msgspec.Struct, frozen=True):
    witness: bytes
    line: str
    time: int


class Witnessed(msgspec.Struct, frozen=True):
    """The newest checkpoint this node accepted from a peer's log (PROTOCOL.md 12.3)."""

    node: bytes
    size: int
    root: bytes
    note: str


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    """Two signed notes of one log that contradict each other, kept as proof."""

    node: bytes
    kind: str
    old_note: str | None
    new_note: str
    detail: str
    at: float


class RevokedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A signing key revoked by a signed revocation (PROTOCOL.md 13.3): this node's or a peer's."""

    node: bytes
    key: bytes
    reason: str
    since: int | None
    at: int
    statement: str  # the armored revocation, to pass on


class KeyNotice(msgspec.Struct, frozen=True, kw_only=True):
    """A key statement of this node's queued for one peer: delivered like a message."""

    id: int
    peer: bytes
    kind: str  # rotation | renewal | revocation
    statement: str
    status: str  # queued | delivered | refused
    attempts: int
    next_attempt: float
    last_error: str | None
    queued_at: float
    delivered_at: float | None


class KeyEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A key change this node applied or refused, as status shows the latest ones."""

    at: float
    peer: str
    kind: str
    outcome: str
    detail: str
