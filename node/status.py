"""The node's status report: its peers and how delivery to each stands, queue depths, each sender's
share of the inbox, the audit log and what witnessing found (``borderlink status``, GET /v1/status
on the admin API).

Read-only. Storage is read once, in one snapshot (a read transaction on the node's reader
connection, its own thread: status never waits behind the writer); every count is one a trigger
keeps or one over the undelivered entries alone, so what status costs does not grow with the
history (node/storage/sqlite_schema.py COUNTERS). Link states come from
the delivery workers' owner and witnessing outcomes from the witness, each through a narrow
Protocol, so this module never reaches into a worker. :func:`report` is pure (a snapshot and the
time in, the report out). No HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import msgspec

from keys.card import Card
from keys.statements import utc
from keys.trust import PeerRecord
from node.delivery import LinkState
from node.peer_info import parsed_card
from node.peers import blocked_line
from node.runtime import Clock, Run
from node.storage import Evidence, InboxStats, OutboxStats, Reader, Reads
from node.storage.flow_rows import PendingLink
from node.storage.rows import KeyEvent, KeyNotice, RevokedKey, SenderUsage

# The report's field order is the JSON's: the CLI and scripts read it.


class PeerStatus(msgspec.Struct, frozen=True):
    name: str
    node_id: str
    link: str  # up | down | unknown | idle
    in_flight: int
    queued: int  # entries still to deliver to it
    retrying: int = 0  # of those, the ones whose last attempt failed
    failing_since: float | None = None  # its first failure since the last delivery to it
    next_retry: float | None = None
    last_error: str | None = None  # why the latest attempt failed, in words


class AuditStatus(msgspec.Struct, frozen=True):
    size: int
    checkpoint_size: int
    cosignatures: int
    witnessing: dict[str, str]  # peer name -> the last round's outcome there


class Misbehaviour(msgspec.Struct, frozen=True):
    peer: str
    kind: str
    detail: str
    at: float


class SenderInbox(msgspec.Struct, frozen=True):
    """One sender's messages in this node's inbox (what its quota counts)."""

    name: str  # the peer's name, or its node id if it is no longer a peer
    node_id: str
    messages: int
    unread: int
    bytes: int


class InboxStatus(msgspec.Struct, frozen=True):
    total: int
    unread: int
    senders: list[SenderInbox]  # by node id


class KeysStatus(msgspec.Struct, frozen=True):
    """This node's key and card, and what needs a custodian: expiring or expired cards (its own
    and its peers'), blocked or revoked peers, key statements not yet delivered, and the latest
    key changes applied or refused (PROTOCOL.md 13)."""

    seq: int
    valid_until: int
    revoked: str | None
    warnings: list[str]
    undelivered_statements: dict[str, int]  # peer name -> this node's statements queued for it
    events: list[KeyEvent]


EXPIRY_WARNING = 30 * 86400


class CryptoStatus(msgspec.Struct, frozen=True):
    """Where the node's cryptography runs: ``processes`` workers configured (``[node]
    crypto_processes``), ``running`` of them started (they start at the first busy moment unless
    ``crypto_start = "start"``), and ``failing`` once workers died at every call in a row: the
    node then keeps the cryptography on its one crypto thread until it is restarted, and says so
    here rather than only once in its log (attack review of issue 12, F2)."""

    processes: int
    running: int
    failing: bool


class Report(msgspec.Struct, frozen=True):
    node: str
    node_id: str
    up: bool
    listen: str
    uptime: float
    peers: list[PeerStatus]
    outbox: dict[str, int]  # status -> entries
    audit: AuditStatus
    misbehaviour: list[Misbehaviour]
    inbox: InboxStatus
    oldest_undelivered_age: float | None
    keys: KeysStatus | None = None
    next_retry: float | None = None  # the soonest retry of any failed delivery
    crypto: CryptoStatus | None = None


class Snapshot(msgspec.Struct, frozen=True):
    """What status reads from storage, all at once."""

    names: dict[bytes, str]  # every peer, trusted or revoked, by node id
    outbox: OutboxStats
    inbox: InboxStats
    audit_size: int
    checkpoint_size: int
    cosignatures: int  # received for the latest checkpoint
    evidence: list[Evidence]
    senders: list[SenderUsage] = msgspec.field(default_factory=list)
    peers: list[PeerRecord] = msgspec.field(default_factory=list)
    revoked: list[RevokedKey] = msgspec.field(default_factory=list)  # this node's keys
    notices: list[KeyNotice] = msgspec.field(default_factory=list)  # queued ones
    key_events: list[KeyEvent] = msgspec.field(default_factory=list)
    pending: list[PendingLink] = msgspec.field(default_factory=list)


def snapshot(reads: Reads, me: bytes = b"") -> Snapshot:
    """Runs on the reader's thread, in a snapshot (:func:`snapshot_of`)."""
    latest = reads.latest_checkpoint()
    peers = reads.peers()
    return Snapshot(
        peers=peers,
        revoked=reads.revoked_keys(me),
        notices=reads.key_notices(pending=True),
        key_events=reads.key_events(10),
        names={p.node_id: p.name for p in peers},
        outbox=reads.outbox_stats(),
        inbox=reads.inbox_stats(),
        audit_size=reads.audit_state().size,
        checkpoint_size=latest.size if latest else 0,
        cosignatures=len(reads.cosignatures(latest.size)) if latest else 0,
        evidence=reads.evidence(),
        senders=reads.inbox_senders(),
        pending=reads.flow_pending_links(),
    )


def snapshot_of(reader: Reader, me: bytes = b"") -> Snapshot:
    """:func:`snapshot` in one read transaction: every part from the same committed state."""
    with reader.snapshot() as reads:
        return snapshot(reads, me)


class Links(Protocol):
    def link(self, node_id: bytes) -> LinkState: ...


class Outcomes(Protocol):
    def outcomes(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Running:
    """Which node this is and since when it runs, as status shows it."""

    name: str
    node_id: bytes
    started: float
    listen: Callable[[], str]  # HOST:PORT, known once the peer API is bound
    card: Callable[[], Card] | None = None  # this node's card now (it changes on rotation)
    crypto: Callable[[], CryptoStatus] | None = None


def keys_status(card: Card, snap: Snapshot, now: float) -> KeysStatus:
    warnings = []
    body = card.body
    revoked = next((r for r in snap.revoked if r.key == body.sign_key), None)
    if revoked is not None:
        warnings.append(
            f"this node's key was REVOKED ({revoked.reason}) on {utc(revoked.at)}: it sends "
            "nothing more; a new node needs 'borderlink init' in a new home, verified again"
        )
    elif now >= body.valid_until:  # a revoked key is not renewed: no advice to try
        warnings.append(
            f"this node's card EXPIRED on {utc(body.valid_until)}: peers refuse it; run "
            "'borderlink keys renew'"
        )
    elif body.valid_until - now < EXPIRY_WARNING:
        warnings.append(
            f"this node's card expires on {utc(body.valid_until)} (in "
            f"{int((body.valid_until - now) // 86400)} days): run 'borderlink keys renew'"
        )
    for p in snap.peers:
        if p.status == "blocked":
            warnings.append(blocked_line(p))
            continue
        if p.status != "trusted":
            continue
        body_of_peer = parsed_card(p.card).body
        if body_of_peer.unit_type == "coordinator" and p.verified_by != "fingerprint":
            warnings.append(
                f"coordinator '{p.name}' was not verified by fingerprint: no flow reports go to "
                f"it until 'borderlink peers verify {p.name} --fingerprint \"...\"' (or it is "
                "named in [flow] report_to)"
            )
        until = body_of_peer.valid_until
        if now >= until:
            warnings.append(
                f"the card of peer '{p.name}' EXPIRED on {utc(until)}: nothing is sent to it"
            )
        elif until - now < EXPIRY_WARNING:
            warnings.append(
                f"the card of peer '{p.name}' expires on {utc(until)} (in "
                f"{int((until - now) // 86400)} days)"
            )
    names = {p.node_id: p.name for p in snap.peers}
    pending: dict[str, int] = {}
    for n in snap.notices:
        name = names.get(n.peer, n.peer.hex()[:16])
        pending[name] = pending.get(name, 0) + 1
    for e in snap.key_events:
        if e.outcome not in ("applied", "announced", "delivered") and now - e.at < 86400:
            warnings.append(f"key statement {e.kind} from/to '{e.peer}': {e.outcome}: {e.detail}")
    return KeysStatus(
        seq=card.seq,
        valid_until=body.valid_until,
        revoked=revoked.reason if revoked else None,
        warnings=warnings,
        undelivered_statements=pending,
        events=snap.key_events,
    )


def report(
    me: Running,
    snap: Snapshot,
    links: Callable[[bytes], LinkState],
    witnessing: dict[str, str],
    now: float,
) -> Report:
    peers = []
    pending = {p.peer: p for p in snap.pending}
    for nid, name in snap.names.items():
        state, p = links(nid), pending.get(nid)
        peers.append(
            PeerStatus(
                name,
                nid.hex(),
                state.link,
                state.in_flight,
                snap.outbox.per_peer.get(nid, 0),
                retrying=p.failing if p else 0,
                failing_since=p.failing_since if p and p.failing else None,
                next_retry=p.next_retry if p and p.failing else None,
                last_error=p.last_error if p and p.failing else None,
            )
        )
    retries = [p.next_retry for p in peers if p.next_retry is not None]
    oldest = snap.outbox.oldest_undelivered
    return Report(
        node=me.name,
        node_id=me.node_id.hex(),
        up=True,
        listen=me.listen(),
        uptime=round(now - me.started, 1),
        peers=peers,
        outbox=snap.outbox.by_status,
        audit=AuditStatus(snap.audit_size, snap.checkpoint_size, snap.cosignatures, witnessing),
        misbehaviour=[
            Misbehaviour(snap.names.get(e.node, e.node.hex()), e.kind, e.detail, e.at)
            for e in snap.evidence
        ],
        inbox=InboxStatus(
            snap.inbox.total,
            snap.inbox.unread,
            [
                SenderInbox(
                    snap.names.get(s.sender, s.sender.hex()),
                    s.sender.hex(),
                    s.messages,
                    s.unread,
                    s.bytes,
                )
                for s in snap.senders
            ],
        ),
        oldest_undelivered_age=round(now - oldest, 1) if oldest else None,
        keys=keys_status(me.card(), snap, now) if me.card is not None else None,
        next_retry=min(retries) if retries else None,
        crypto=me.crypto() if me.crypto is not None else None,
    )


class Status:
    def __init__(
        self,
        me: Running,
        reads: Reader,
        run_read: Run,
        links: Links,
        witness: Outcomes,
        clock: Clock,
    ) -> None:
        self.me = me
        self.reads = reads
        self.run_read = run_read
        self.links = links
        self.witness = witness
        self.clock = clock

    async def report(self) -> Report:
        snap = await self.run_read(snapshot_of, self.reads, self.me.node_id)
        return report(self.me, snap, self.links.link, self.witness.outcomes(), self.clock())
