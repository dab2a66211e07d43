"""What the node needs from its storage, as typed Protocols: reads, and units of work that write.

A backend implements :class:`Store`. Every change happens inside one :class:`Unit`: all of it is
durable when the ``with`` block returns and none of it when the block raises, so a message, its
outbox rows and its audit entry are never stored apart. Callers pass ``now`` when they open a unit
and every timestamp written in it (audit entries included) is that ``now``: storage never reads a
clock. Nothing here names a backend feature (no rowids, no PRAGMA, no cursors): the SQLite store in
``node/storage/sqlite.py`` is one implementation, a PostgreSQL one for a regional hub can be another.

Callers on the event loop never call these directly: they hand a function to ``run_db``
(``node/runtime.py``), which runs it on the node's one database thread; reads that may see a
state a moment old (listings, status, the background audit check) go to a :class:`Reader` on
``run_read``, the reader's own thread.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from keys.trust import PeerRecord
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
from protocol.audit import AuditEntry


class Reads(Protocol):
    """Everything the node reads. Outside a unit each call sees the latest committed state."""

    # peers -----------------------------------------------------------------------------------
    def peer_by_name(self, name: str) -> PeerRecord | None: ...
    def peer_by_id(self, node_id: bytes) -> PeerRecord | None: ...
    def peers(self) -> list[PeerRecord]:
        """All peers, trusted and revoked, ordered by name."""
        ...

    # replay table (PROTOCOL.md 6.2 step 9) ---------------------------------------------------
    def seen(self, sender: bytes, msg_id: bytes) -> bool:
        """Ids are scoped by sender: a peer that reuses another sender's id pre-empts nothing."""
        ...

    # inbox -----------------------------------------------------------------------------------
    def inbox_lookup(self, sender: bytes, msg_id: bytes) -> KnownMessage | None: ...
    def inbox_rows(
        self,
        *,
        unread: bool = False,
        limit: int = 50,
        after: InboxKey | None = None,
        only: InboxFilter | None = None,
    ) -> list[InboxRow]:
        """Most urgent first (flash, urgent, routine), newest first within a priority; only rows
        after ``after`` in that order (keyset paging), at most ``limit``; only those ``only``
        matches, if given (the cursor of a filtered page works on the same filter)."""
        ...

    def inbox_ids(self, prefix: str, limit: int = 1000) -> list[bytes]:
        """The distinct ids of inbox messages whose hex starts with ``prefix`` (lowercase hex),
        at most ``limit``, in id order: what an abbreviated id may mean."""
        ...

    def inbox_get(self, msg_id: bytes, sender: bytes | None = None) -> list[StoredMessage]:
        """Messages with this id (from ``sender`` if given): more than one means two senders used
        the same id, and the caller must ask which one is meant."""
        ...

    def inbox_stats(self) -> InboxStats: ...
    def inbox_usage(self, sender: bytes) -> SenderUsage:
        """What ``sender``'s messages in the inbox count and weigh (envelope bytes)."""
        ...

    def inbox_senders(self) -> list[SenderUsage]:
        """Every sender with messages in the inbox, by node id."""
        ...

    # outbox ----------------------------------------------------------------------------------
    def pending_peers(self) -> dict[bytes, float]:
        """Peer -> earliest next attempt, over entries still to deliver (queued or failed)."""
        ...

    def due(
        self, peer: bytes, now: float, limit: int, exclude: Collection[bytes] = ()
    ) -> list[DueMessage]:
        """Up to ``limit`` entries for ``peer`` still to deliver whose next attempt is at or
        before ``now``, oldest next attempt first, skipping the ids in ``exclude`` (in flight).
        Expired messages are included: the caller decides what to do with them."""
        ...

    def next_due(self, peer: bytes, exclude: Collection[bytes] = ()) -> float | None:
        """When the next entry for ``peer`` falls due, None if it has none to deliver."""
        ...

    def outbox_rows(
        self, msg_id: bytes | None = None, limit: int = 200, after: OutboxKey | None = None
    ) -> list[OutboxRow]:
        """Newest message first, then by peer; only entries after ``after`` in that order."""
        ...

    def outbox_ids(self, prefix: str, limit: int = 1000) -> list[bytes]:
        """The ids of this node's own messages whose hex starts with ``prefix``, as
        :meth:`inbox_ids`."""
        ...

    def outbox_peers(self, msg_id: bytes) -> list[bytes]:
        """The peers this node sent message ``msg_id`` to; empty if it is not one of its own."""
        ...

    def outbox_stats(self) -> OutboxStats: ...

    # audit log (PROTOCOL.md 12) --------------------------------------------------------------
    def audit_state(self) -> AuditState: ...
    def audit_rows(self, start: int = 0, end: int | None = None) -> list[AuditRow]:
        """Entries with ``start <= index < end`` (None: to the end), in index order."""
        ...

    def audit_find(self, start: int, limit: int, only: AuditFilter) -> list[AuditRow]:
        """At most ``limit`` entries from index ``start`` on, in index order, that ``only``
        matches: each filter served by an index, not a scan of the log."""
        ...

    def audit_verified(self) -> AuditVerified:
        """How far the background check recomputed the tree (empty: never)."""
        ...

    def checkpoints(self) -> list[SignedCheckpoint]:
        """The checkpoints this node signed and still keeps (a bounded number, see
        :meth:`Unit.prune_checkpoints`), smallest first. Not for request paths: O(kept)."""
        ...

    def checkpoint_at(self, size: int) -> SignedCheckpoint | None:
        """This node's kept checkpoint of exactly ``size`` entries: one indexed lookup."""
        ...

    def latest_checkpoint(self) -> SignedCheckpoint | None: ...
    def cosigned_size(self) -> int | None:
        """The size of the newest checkpoint with at least one cosignature, if any."""
        ...

    def checkpoint_signed_at(self, size: int) -> float | None:
        """When this node signed its kept checkpoint of ``size`` (its clock at the time)."""
        ...

    def cosignatures(self, size: int) -> list[Cosignature]:
        """Cosignatures received for this node's checkpoint of ``size``, by witness id."""
        ...

    def cosignature_by(self, size: int, witness: bytes) -> Cosignature | None:
        """``witness``'s cosignature of the checkpoint of ``size``, if stored: one lookup."""
        ...

    def witnessed(self, node: bytes) -> Witnessed | None: ...
    def revoked_keys(self, node: bytes | None = None) -> list[RevokedKey]:
        """Signing keys revoked by a signed revocation, this node's and its peers'."""
        ...

    def key_notices(self, peer: bytes | None = None, *, pending: bool = False) -> list[KeyNotice]:
        """This node's key statements queued for peers, oldest first (``pending``: queued)."""
        ...

    def key_events(self, limit: int = 20) -> list[KeyEvent]:
        """The latest key changes applied or refused, newest first."""
        ...

    def directory_seq(self, coordinator: bytes) -> int | None:
        """The sequence number of the last directory imported from ``coordinator`` (or, for
        this node's own id, the last it published)."""
        ...

    def rotations_applied(self, node: bytes) -> dict[int, int]:
        """When this node applied each of ``node``'s rotations it received (seq -> time): a
        link's own date is the sender's word, this one is not (keys.statements)."""
        ...

    def evidence(self) -> list[Evidence]:
        """Oldest first."""
        ...

    # flow (PROTOCOL.md 14): this node's own events and those its units reported
    def flow_self(self) -> bytes | None: ...
    def flow_own_after(self, after: int, limit: int) -> list[FlowRow]:
        """This node's own events after its seq ``after``, in seq order."""
        ...

    def flow_own_last_seq(self) -> int: ...
    def flow_after(self, rid: int, limit: int) -> list[FlowRow]:
        """Events stored after ``rid``, oldest first (a live feed)."""
        ...

    def flow_latest(
        self, limit: int, since: float = 0.0, only: FlowFilter = EVERYTHING
    ) -> list[FlowRow]: ...
    def flow_last_rid(self) -> int: ...
    def flow_counts(
        self, hour: float, minute: float, only: FlowFilter = EVERYTHING
    ) -> list[UnitCounts]: ...
    def flow_latency_sample(
        self, since: float, per_unit: int, only: FlowFilter = EVERYTHING
    ) -> dict[bytes, list[float]]: ...
    def flow_units(self) -> list[FlowUnit]: ...
    def flow_cursors(self) -> list[FlowCursor]: ...
    def flow_links(self, since: float, only: FlowFilter = EVERYTHING) -> list[LinkCount]: ...
    def flow_disagreements(
        self, since: float, grace: float, now: float, only: FlowFilter = EVERYTHING
    ) -> list[Disagreement]:
        """Deliveries since ``since`` that their recipient, reporting ``grace`` later, did
        not report as received."""
        ...

    def flow_totals(self, unit: bytes) -> list[tuple[str, bytes | None, str | None, int]]:
        """(event, peer, type, count) of ``unit``'s events, all time (pruned ones too)."""
        ...

    def flow_latency_histogram(self, unit: bytes) -> LatencyHistogram: ...
    def flow_sent_totals(self) -> list[tuple[bytes, str, int]]:
        """(peer, type, entries) of this node's outbox, all time."""
        ...

    def flow_pending_links(self, hide: frozenset[str] = frozenset()) -> list[PendingLink]:
        """Per peer: this node's entries still to deliver, and how they are failing; entries
        of messages whose TLP is in ``hide`` left out (unknown TLP counts as RED)."""
        ...


class Unit(Reads, Protocol):
    """One atomic, durable unit of work, opened with :meth:`Store.unit`. Reads inside it see its
    own writes. Not to be kept after its ``with`` block."""

    @property
    def now(self) -> float:
        """The time the caller opened the unit with; every timestamp written in it."""
        ...

    def append_audit(self, entry: AuditEntry) -> int:
        """Append an entry to the audit log (PROTOCOL.md 12.1); returns its index."""
        ...

    def set_audit_verified(self, verified: AuditVerified) -> None: ...

    # peers
    def put_peer(self, peer: PeerRecord) -> None:
        """Insert, or replace the peer of the same name."""
        ...

    def put_revoked_key(self, key: RevokedKey) -> None: ...
    def enqueue_notice(self, peer: bytes, kind: str, statement: str) -> None: ...
    def mark_notice(
        self,
        notice_id: int,
        status: str,
        *,
        error: str | None,
        next_attempt: float,
        receipt: bytes | None = None,
    ) -> None: ...
    def add_key_event(self, peer: str, kind: str, outcome: str, detail: str) -> None:
        """Keeps the latest 200."""
        ...

    def hold_outbox(self, peer: bytes, why: str) -> int:
        """Undelivered rows for ``peer`` -> held with ``why``; nothing is sent while held."""
        ...

    def release_outbox(self, peer: bytes) -> int:
        """Held rows for ``peer`` -> queued, due now."""
        ...

    def set_directory_seq(self, coordinator: bytes, seq: int) -> None: ...
    def put_rotation_applied(self, node: bytes, seq: int) -> None:
        """Record that ``node``'s rotation ``seq`` is applied now (the first time counts)."""
        ...

    def mark_suspect(self, sender: bytes, since: float, why: str) -> int:
        """Inbox rows from ``sender`` received since ``since`` -> suspect, with why."""
        ...

    def delete_peer(self, name: str) -> bool:
        """True if there was such a peer."""
        ...

    # replay table
    def mark_seen(self, sender: bytes, msg_id: bytes, expires: int) -> None:
        """The authoritative replay check: raises :class:`protocol.errors.Replay` if this
        sender's id was already accepted, even by a racing unit that passed :meth:`seen`."""
        ...

    def prune_flow(self, before: float, own_through: int | None, limit: int = 10_000) -> int:
        """Delete flow events older than ``before``, this node's own only up to seq
        ``own_through`` (sent to every coordinator), at most ``limit`` per unit; the metrics'
        totals keep counting them. Returns how many were deleted."""
        ...

    def prune_seen(self) -> int:
        """Forget ids whose message expired at or before ``now`` (an expired message is
        rejected before the replay table is consulted); returns how many."""
        ...

    # inbox
    def insert_inbox(self, item: Accepted, receipt: bytes) -> None:
        """Store a message received at ``now`` (after :meth:`mark_seen`). A retraction withdraws
        its target from the same sender, whichever of the two arrives first."""
        ...

    def mark_read(self, sender: bytes, msg_id: bytes) -> None: ...
    def mark_acked(self, sender: bytes, msg_id: bytes, action: str) -> None:
        """Acknowledged with ``action`` at ``now``; also read, if it was not."""
        ...

    # outbox
    def enqueue(self, message: QueuedMessage, peers: Sequence[bytes]) -> None:
        """The message, and one entry per recipient due at ``now``."""
        ...

    def mark_expired(self, peer: bytes, msg_ids: Sequence[bytes]) -> None: ...
    def mark_delivered(self, peer: bytes, delivered: Sequence[tuple[bytes, bytes]]) -> None:
        """(message id, verified receipt) pairs: delivered at ``now``, one more attempt."""
        ...

    def mark_failed(self, peer: bytes, failures: Sequence[tuple[bytes, str, float]]) -> None:
        """(message id, error in words, next attempt time): one more attempt, retried later."""
        ...

    def mark_rejected(self, peer: bytes, msg_id: bytes, error: str) -> None:
        """The peer refused the message for good: never retried."""
        ...

    def defer(self, peer: bytes, until: float) -> int:
        """The peer's link is down until its next try: every message waiting for it is due no
        sooner than ``until`` (no attempt counted, no error set); how many rows changed."""
        ...

    def requeue(self, msg_id: bytes, peers: Sequence[bytes]) -> int:
        """The entries of ``msg_id`` for ``peers`` that failed or were rejected become queued
        again, due at ``now`` (the operator asked to retry); returns how many."""
        ...

    def resume_inflight(self) -> int:
        """Entries an older version left ``delivering`` become ``failed``, due at once."""
        ...

    # own checkpoints and witnessing
    def add_checkpoint(self, checkpoint: SignedCheckpoint) -> None: ...
    def prune_checkpoints(self, keep: int, spare: int | None = None) -> int:
        """Delete checkpoints, and their cosignatures, until at most ``keep`` (at least 2)
        remain: the newest ones and, in place of the oldest of those, the one of size
        ``spare`` if it exists. Returns how many checkpoints were deleted."""
        ...

    def add_cosignature(self, size: int, cosignature: Cosignature) -> bool:
        """Insert this witness's cosignature of that size unless it has one already: the first
        one stands (PROTOCOL.md 12.3). True if it was inserted."""
        ...

    def put_witnessed(self, witnessed: Witnessed) -> None: ...
    def add_evidence(self, evidence: Evidence) -> bool:
        """Keep it once per offending note (``node``, ``new_note``); True if it was new."""
        ...

    def set_flow_self(self, node_id: bytes) -> None:
        """Name this node as the unit of its own flow events."""
        ...

    def ingest_flow(
        self, unit: bytes, rows: Sequence[FlowRow], state: FlowUnit, keep: int | None = None
    ) -> int:
        """A unit's reported events (those held already ignored) and its state if newer;
        how many events were new. With ``keep``, at most that many of the unit's events stay
        (its newest, by seq; the older rolled up and deleted)."""
        ...

    def put_flow_cursor(self, cursor: FlowCursor) -> None: ...


class Reader(Reads, Protocol):
    """Reads that may run on a thread of their own: the SQLite store's second, read-only
    connection (``open_reader``) serves the operator's listings, status and the background audit
    check, so none of them waits behind the writer's thread nor holds it up."""

    def snapshot(self) -> AbstractContextManager[Reads]:
        """Reads that all see one committed state, however many writes commit meanwhile."""
        ...

    def close(self) -> None: ...


class Store(Reader, Protocol):
    def unit(self, now: float) -> AbstractContextManager[Unit]:
        """Open a unit of work at time ``now``; it commits when the block ends without error."""
        ...

    def close(self) -> None: ...
