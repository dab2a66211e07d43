"""Receiving a batch: verify and decrypt, store, and only then sign the receipt (PROTOCOL.md 11.3).

Exactly-once in the inbox: the replay table and inbox insert share the transaction that also
stores the receipt, and a re-delivered message (same id, sender and content hash) gets its
original receipt back, so a sender's retry after a lost answer is harmless.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import structlog

from keys.card import parse_card
from keys.identity import Identity, PublicIdentity
from keys.trust import PeerRecord, require_trusted
from node.audit_store import event
from node.inbox_store import Accepted
from node.store import Store
from protocol.batch import BatchResponse, ItemResult
from protocol.envelope import Opened, open_envelope
from protocol.errors import PeerRevoked, Rejected, Replay, TrustError, UnknownSender
from protocol.receipt import sign_receipt
from protocol.schemas import Feedback, Retraction

log = structlog.get_logger("borderlink.receive")
RunDb = Callable[..., Awaitable[Any]]


@dataclass
class _Item:
    data: bytes
    opened: Opened | None = None
    reason: str | None = None
    detail: str = ""


class Receiver:
    def __init__(
        self, me: Identity, store: Store, run_db: RunDb, run_cpu: Callable[..., Awaitable[Any]]
    ) -> None:
        self.me = me
        self.store = store
        self.run_db = run_db
        self.run_cpu = run_cpu
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
        await self.run_cpu(self._open_all, items, peers, int(time.time()))
        return await self.run_db(self._store_and_sign, items, source)

    def _store_and_sign(self, items: list[_Item], source: str) -> BatchResponse:
        """Runs on the database thread: duplicate check, one transaction, receipt."""
        now = time.time()
        results: list[ItemResult] = []
        receipts: list[bytes] = []
        fresh: list[tuple[int, Accepted]] = []
        by_receipt: dict[bytes, int] = {}
        for it in items:
            op = it.opened
            if op is None:
                results.append(ItemResult("rejected", reason=it.reason))
                continue
            known = self.store.inbox_lookup(op.id)
            if known is not None:
                sender, content_hash, receipt = known
                if sender == op.sender and content_hash == op.content_hash:
                    idx = by_receipt.setdefault(receipt, len(receipts))
                    if idx == len(receipts):
                        receipts.append(receipt)
                    results.append(ItemResult("duplicate", id=op.id, receipt=idx))
                else:
                    it.reason, it.detail = Replay.reason, "message id was already accepted"
                    results.append(ItemResult("rejected", id=op.id, reason=Replay.reason))
                continue
            if any(a.id == op.id for _, a in fresh):
                results.append(ItemResult("rejected", id=op.id, reason=Replay.reason))
                continue
            fresh.append((len(results), _accepted(op, it.data)))
            results.append(ItemResult("accepted", id=op.id))
        if fresh:
            senders = {a.sender for _, a in fresh}
            for sender in senders:
                group = [(i, a) for i, a in fresh if a.sender == sender]
                receipt = sign_receipt(
                    self.me, sender, [(a.id, a.content_hash) for _, a in group], now=int(now)
                )
                self.store.accept([a for _, a in group], receipt, now, source)
                receipts.append(receipt)
                for i, _ in group:
                    results[i].receipt = len(receipts) - 1
        rejected = [
            (it, res) for it, res in zip(items, results, strict=True) if res.outcome == "rejected"
        ]
        if rejected:
            with self.store.transaction() as db:
                for it, res in rejected:
                    self.store.audit_append(
                        db,
                        event(
                            "message.rejected",
                            outcome=res.reason,
                            detail=it.detail[:200],
                            peer_id=_claimed_sender(it.data),
                            source=source,
                            message_id=res.id.hex() if res.id else None,
                        ),
                    )
        for it, res in zip(items, results, strict=True):
            if res.outcome == "rejected":
                log.warning(
                    "message.rejected",
                    reason=res.reason,
                    detail=it.detail,
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
    from protocol.envelope import decode_envelope

    try:
        return decode_envelope(data).sender.hex()
    except Rejected:
        return None


__all__ = ["Executor", "Receiver"]
