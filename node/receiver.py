"""Receiving a batch: verify and decrypt, store, and only then sign the receipt (PROTOCOL.md 11.3).

Exactly-once in the inbox: the replay table and inbox insert share the transaction that also
stores the receipt, and a re-delivered message (same id, sender and content hash) gets its
original receipt back, so a sender's retry after a lost answer is harmless.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import structlog

from keys.card import parse_card
from keys.trust import PeerRecord, require_trusted
from node.audit_store import event
from node.inbox_store import Accepted
from node.ratelimit import source_key
from node.store import Store
from protocol.batch import BatchResponse, ItemResult
from protocol.envelope import Opened, open_envelope
from protocol.errors import PeerRevoked, Rejected, Replay, TrustError, UnknownSender
from protocol.identity import Identity, PublicIdentity
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
        self.sampler = Sampler()

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
            known = self.store.inbox_lookup(op.sender, op.id)
            if known is not None and known[0] == op.content_hash:
                receipt = known[1]
                idx = by_receipt.setdefault(receipt, len(receipts))
                if idx == len(receipts):
                    receipts.append(receipt)
                results.append(ItemResult("duplicate", id=op.id, receipt=idx))
                continue
            # Same sender and id with other content, an id already opened offline from a sealed
            # file, or twice in this batch: a replay (ids are scoped by sender, PROTOCOL.md 6.2).
            if (
                known is not None
                or self.store.seen(op.sender, op.id)
                or any((a.sender, a.id) == (op.sender, op.id) for _, a in fresh)
            ):
                it.reason, it.detail = Replay.reason, "message id was already accepted"
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
        self._audit_rejections(items, results, source)
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

    def _audit_rejections(self, items: list[_Item], results: list[ItemResult], source: str) -> None:
        """Rejections by an authenticated sender are always audited. Unauthenticated junk is
        sampled per (source, reason): the 1st, 2nd, 4th, 8th... with the running count, so
        anonymous traffic cannot grow the permanent, witnessed log one entry per item."""
        entries = []
        for it, res in zip(items, results, strict=True):
            if res.outcome != "rejected":
                continue
            reason = res.reason or "rejected"
            detail = it.detail[:200]
            # Anyone can re-post a validly signed envelope (a replay proves who wrote it, not
            # who sent it now): replays are sampled like unauthenticated junk.
            if it.opened is None or reason == Replay.reason:
                n = self.sampler.count(f"{source_key(source)}|{reason}")
                if n & (n - 1):
                    continue
                detail = f"{n} so far from this source; last: {detail}"
            entries.append(
                event(
                    "message.rejected",
                    outcome=reason,
                    detail=detail,
                    peer_id=_claimed_sender(it.data),
                    source=source,
                    message_id=res.id.hex() if res.id else None,
                )
            )
        if entries:
            with self.store.transaction() as db:
                for entry in entries:
                    self.store.audit_append(db, entry)


class Sampler:
    """Counts per key, remembering a bounded number of keys (oldest forgotten first)."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self.counts: OrderedDict[str, int] = OrderedDict()
        self.max_keys = max_keys

    def count(self, key: str) -> int:
        n = self.counts.pop(key, 0) + 1
        self.counts[key] = n
        while len(self.counts) > self.max_keys:
            self.counts.popitem(last=False)
        return n


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
