"""Receiving a batch: verify and decrypt, store, and only then sign the receipt (PROTOCOL.md 11.3).

Exactly-once in the inbox: the replay table and inbox insert share the unit that also stores the
receipt, and a re-delivered message (same id, sender and content hash) gets its original receipt
back, so a sender's retry after a lost answer is harmless. Reads and writes storage through units
on the database thread, opens envelopes on the crypto thread; no HTTP (the peer routes call it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from keys.card import parse_card
from keys.trust import PeerRecord, require_trusted
from node.auditing import record
from node.rejections import Rejections
from node.runtime import Clock, Run, wall_clock
from node.storage import Accepted, Store, Unit
from protocol.batch import BatchResponse, ItemResult, classify_arrival
from protocol.envelope import Opened, decode_envelope, open_envelope
from protocol.errors import PeerRevoked, Rejected, Replay, TrustError, UnknownSender
from protocol.identity import Identity, PublicIdentity
from protocol.receipt import receipt_digest, sign_receipt
from protocol.schemas import Feedback, Retraction

log = structlog.get_logger("borderlink.receive")


@dataclass
class _Item:
    data: bytes
    opened: Opened | None = None
    reason: str | None = None
    detail: str = ""


class Receiver:
    def __init__(
        self,
        me: Identity,
        store: Store,
        run_db: Run,
        run_cpu: Run,
        rejections: Rejections,
        clock: Clock = wall_clock,
    ) -> None:
        self.me = me
        self.store = store
        self.run_db = run_db
        self.run_cpu = run_cpu
        self.rejections = rejections
        self.clock = clock
        self._cards: dict[str, PublicIdentity] = {}

    def _identity(self, record: PeerRecord) -> PublicIdentity:
        ident = self._cards.get(record.card)
        if ident is None:
            ident = self._cards[record.card] = parse_card(record.card, now=None).identity
        return ident

    def _open_all(self, items: list[_Item], peers: dict[bytes, PeerRecord], now: int) -> None:
        def sender_of(node_id: bytes) -> PublicIdentity:
            try:
                return self._identity(require_trusted(peers.get(node_id), node_id))
            except PeerRevoked as exc:  # the wire does not tell revoked from unknown
                raise UnknownSender(exc.message) from exc

        for it in items:
            try:
                it.opened = open_envelope(it.data, self.me, sender_of=sender_of, now=now)
            except Rejected as exc:
                it.reason, it.detail = exc.reason, exc.message
            except TrustError as exc:
                it.reason, it.detail = "unknown_sender", exc.message

    async def receive(self, envelopes: list[bytes], *, source: str) -> BatchResponse:
        peers = {p.node_id: p for p in await self.run_db(self.store.peers)}
        items = [_Item(e) for e in envelopes]
        await self.run_cpu(self._open_all, items, peers, int(self.clock()))
        return await self.run_db(self._store_and_sign, items, source)

    def _store_and_sign(self, items: list[_Item], source: str) -> BatchResponse:
        """Runs on the database thread: duplicate check, one unit, receipt."""
        now = self.clock()
        results: list[ItemResult] = []
        receipts: list[bytes] = []
        fresh: list[tuple[int, Accepted]] = []
        by_receipt: dict[bytes, int] = {}
        for it in items:
            op = it.opened
            if op is None:
                results.append(ItemResult("rejected", reason=it.reason))
                continue
            known = self.store.inbox_lookup(op.sender, op.id)
            arrival = classify_arrival(
                op.content_hash,
                known.content_hash if known else None,
                seen=known is None and self.store.seen(op.sender, op.id),
                earlier_in_batch=any((a.sender, a.id) == (op.sender, op.id) for _, a in fresh),
            )
            if arrival == "duplicate" and known is not None:
                idx = by_receipt.setdefault(known.receipt, len(receipts))
                if idx == len(receipts):
                    receipts.append(known.receipt)
                results.append(ItemResult("duplicate", id=op.id, receipt=idx))
                continue
            if arrival == "replay":
                it.reason, it.detail = Replay.reason, "message id was already accepted"
                results.append(ItemResult("rejected", id=op.id, reason=Replay.reason))
                continue
            fresh.append((len(results), _accepted(op, it.data)))
            results.append(ItemResult("accepted", id=op.id))
        signed: list[tuple[list[Accepted], bytes]] = []
        for sender in {a.sender for _, a in fresh}:
            group = [(i, a) for i, a in fresh if a.sender == sender]
            receipt = sign_receipt(
                self.me, sender, [(a.id, a.content_hash) for _, a in group], now=int(now)
            )
            signed.append(([a for _, a in group], receipt))
            receipts.append(receipt)
            for i, _ in group:
                results[i].receipt = len(receipts) - 1
        # One unit per sender's receipt: a replay raised by the authoritative check in one
        # rolls back only that sender's messages, as before.
        for accepted, receipt in signed:
            with self.store.unit(now) as u:
                _store(u, accepted, receipt, source)
        if any(r.outcome == "rejected" for r in results):
            with self.store.unit(now) as u:
                self._audit_rejections(u, items, results, source)
        for it, res in zip(items, results, strict=True):
            if res.outcome == "rejected":
                log.warning(
                    "message.rejected",
                    reason=res.reason,
                    detail=it.detail[:200],
                    source=source,
                    claimed_sender=_claimed_sender(it.data),
                )
            else:
                log.info(
                    "message.received",
                    outcome=res.outcome,
                    message_id=res.id.hex() if res.id else None,
                    source=source,
                )
        return BatchResponse(results, receipts)

    def _audit_rejections(
        self, unit: Unit, items: list[_Item], results: list[ItemResult], source: str
    ) -> None:
        for it, res in zip(items, results, strict=True):
            if res.outcome != "rejected":
                continue
            self.rejections.note(
                unit,
                res.reason or "rejected",
                it.detail[:200],
                source=source,
                claimed_sender=_claimed_sender(it.data),
                message_id=res.id.hex() if res.id else None,
                # Anyone can re-post a validly signed envelope (a replay proves who wrote it, not
                # who sent it now): replays are sampled like unauthenticated junk.
                authenticated=it.opened is not None and res.reason != Replay.reason,
            )


def _store(unit: Unit, accepted: Sequence[Accepted], receipt: bytes, source: str) -> None:
    """Messages, replay-table entries and their audit entries, in the caller's unit."""
    for it in accepted:
        record(
            unit,
            "message.received",
            message_id=it.id.hex(),
            peer_id=it.sender.hex(),
            outcome=it.type,
            source=source,
            hashes={"content": it.content_hash.hex(), "receipt": receipt_digest(receipt)},
        )
        if it.retracts is not None:
            record(
                unit,
                "message.retracted",
                message_id=it.retracts.hex(),
                peer_id=it.sender.hex(),
                detail=f"by {it.id.hex()}",
            )
        unit.mark_seen(it.sender, it.id, it.expires)
        unit.insert_inbox(it, receipt)


def _accepted(op: Opened, data: bytes) -> Accepted:
    refers_to = retracts = None
    msg = op.message
    if isinstance(msg, Feedback):
        refers_to = bytes.fromhex(msg.refers_to)
    elif isinstance(msg, Retraction):
        refers_to = retracts = bytes.fromhex(msg.retracts)
    return Accepted(
        id=op.id,
        sender=op.sender,
        type=op.type,
        created=op.created,
        expires=op.expires,
        content_hash=op.content_hash,
        envelope=data,
        refers_to=refers_to,
        retracts=retracts,
    )


def _claimed_sender(data: bytes) -> str | None:
    try:
        return decode_envelope(data).sender.hex()
    except Rejected:
        return None
