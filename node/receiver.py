"""Receiving a batch: verify and decrypt, store, and only then sign the receipt (PROTOCOL.md 11.3).

Exactly-once in the inbox: the replay table and inbox insert share the unit that also stores the
receipt, and a re-delivered message (same id, sender and content hash) gets its original receipt
back, so a sender's retry after a lost answer is harmless; it is not opened again (11.3), nor are
identical envelopes of one batch opened more than once. Reads and writes storage through units
on the database thread, opens envelopes through ``run_cpu`` (the crypto workers, given the
sender's keys as data: :func:`open_batch`); no HTTP (the peer routes call it). Requests that
finish opening while a commit is under way are stored together in the next one (group commit):
one fsync for all, each answered only once the commit holding its messages is done.

Before any cryptography, an envelope whose sender is not the peer the TLS channel authenticated
is refused (``channel_mismatch``). After opening, a fresh message is refused, and nothing of it
stored, when its sender's share of the inbox is used up (``quota_exceeded``, [limits]
max_inbox_per_sender and max_inbox_bytes_per_sender) or when it is Feedback about a message this
node did not send to that sender, or a Retraction of a message this node wrote
(``foreign_reference``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from keys.trust import PeerRecord, require_trusted
from node.auditing import record
from node.config import Limits
from node.peer_info import older_signers, parsed_card
from node.rejections import Rejections
from node.runtime import Clock, Run, WorkerLost, in_process, wall_clock
from node.storage import Accepted, Reads, Store, Unit
from node.storage.rows import RevokedKey
from protocol.batch import BatchResponse, ItemResult, classify_arrival
from protocol.envelope import Envelope, Opened, decode_envelope, open_envelope
from protocol.errors import (
    ChannelMismatch,
    ForeignReference,
    KeyRetired,
    QuotaExceeded,
    Rejected,
    Replay,
    TrustError,
    UnknownSender,
)
from protocol.identity import Identity, PublicIdentity
from protocol.receipt import receipt_digest, sign_receipt
from protocol.schemas import Feedback, Retraction

log = structlog.get_logger("borderlink.receive")

# Refusals of a signed envelope that are still sampled in the audit log, per sender: anyone can
# re-post a signed envelope (replay), and a peer could otherwise grow the log at will by
# re-posting one it is refused for, since nothing of a refused one is stored: over its quota, or
# Feedback or a Retraction about a message it may not refer to (attack9 F4).
_SAMPLED = frozenset({Replay.reason, QuotaExceeded.reason, ForeignReference.reason})


@dataclass(frozen=True)
class Quota:
    """How much of this node's inbox one sender may hold ([limits] in node/config.py)."""

    messages: int
    bytes: int

    @classmethod
    def of(cls, limits: Limits) -> Quota:
        return cls(limits.max_inbox_per_sender, limits.max_inbox_bytes_per_sender)


# Envelopes opened per call. The crypto workers are one queue for every peer: in chunks, another
# peer's request waits behind a few of these, not behind whole 256-envelope batches (attack9 F3);
# one request keeps at most one chunk per worker in flight.
OPEN_CHUNK = 16
MAX_OLD_KEYS = 4  # replaced keys tried on a signature that fails: a bound on the cost of junk
UNAVAILABLE = "unavailable"  # a worker died holding the envelope: the sender retries it


@dataclass(frozen=True)
class SenderKeys:
    """What ``open_envelope`` asks of a sender, computed before opening (on the database
    thread) so a worker process gets plain data: its trusted identity, or why it has none;
    its replaced signing keys, each with the refusal (KeyRetired's words) if one signed."""

    identity: PublicIdentity | None
    refusal: str = ""
    older: tuple[tuple[bytes, str | None], ...] = ()


Outcome = Opened | tuple[str, str]  # the opened message, or (reason, detail)


@in_process
def open_batch(
    envelopes: list[bytes], me: Identity, senders: Mapping[bytes, SenderKeys], now: int
) -> list[Outcome]:
    """Verify and decrypt each envelope with ``senders`` as the only source of trust; the same
    answer, reason and words, in a worker process as on the crypto thread."""

    def sender_of(node_id: bytes) -> PublicIdentity:
        keys = senders.get(node_id)
        if keys is None:
            require_trusted(None, node_id)  # raises UnknownSender in the words it always has
            raise AssertionError  # pragma: no cover - require_trusted(None) always raises
        if keys.identity is None:  # the wire does not tell revoked from unknown
            raise UnknownSender(keys.refusal)
        return keys.identity

    def older_keys(node_id: bytes) -> list[tuple[bytes, Rejected | None]]:
        keys = senders.get(node_id)
        if keys is None:
            return []
        return [(k, None if why is None else KeyRetired(why)) for k, why in keys.older]

    out: list[Outcome] = []
    for data in envelopes:
        try:
            out.append(open_envelope(data, me, sender_of=sender_of, now=now, older_keys=older_keys))
        except Rejected as exc:
            out.append((exc.reason, exc.message))
        except TrustError as exc:
            out.append(("unknown_sender", exc.message))
    return out


def sender_keys(
    rec: PeerRecord | None, node_id: bytes, revoked: Mapping[bytes, RevokedKey], now: int
) -> SenderKeys:
    try:
        trusted = require_trusted(rec, node_id)
    except TrustError as exc:
        return SenderKeys(None, exc.message)
    older = older_signers(trusted, revoked, now, limit=MAX_OLD_KEYS)
    return SenderKeys(
        parsed_card(trusted.card).identity,
        older=tuple((k, None if why is None else why.message) for k, why in older),
    )


@dataclass
class _Item:
    data: bytes
    env: Envelope | None = None  # the header, decoded before any cryptography
    opened: Opened | None = None
    reason: str | None = None
    detail: str = ""
    stored: bytes | None = None  # the receipt of this very message, already in the inbox
    same_as: _Item | None = None  # an earlier item of the batch with the same bytes

    def copy_from(self, first: _Item) -> None:
        self.env, self.opened, self.stored = first.env, first.opened, first.stored
        self.reason, self.detail = first.reason, first.detail


@dataclass
class _Job:
    """One request's items waiting for the next group commit, and where its answer goes."""

    items: list[_Item]
    source: str
    answer: asyncio.Future[BatchResponse]


class Receiver:
    def __init__(
        self,
        me: Identity,
        store: Store,
        run_db: Run,
        run_cpu: Run,
        rejections: Rejections,
        clock: Clock = wall_clock,
        *,
        quota: Quota | None = None,
        parallel: int = 1,
        reads: Reads | None = None,
        run_read: Run | None = None,
    ) -> None:
        self.me = me
        # The look before opening (peer table, stored re-deliveries) reads a moment-old state
        # on the reader's own connection, so a request's crypto need not wait behind the
        # group commit of the request before it (issue 12); the authoritative duplicate and
        # replay checks stay in the writer's unit (_decide_and_store).
        self.reads: Reads = reads if reads is not None else store
        self.run_read: Run = run_db if run_read is None else run_read
        self.quota = quota or Quota.of(Limits())
        self.store = store
        self.run_db = run_db
        self.run_cpu = run_cpu
        self.rejections = rejections
        self.clock = clock
        self.parallel = max(1, parallel)  # run_cpu calls that make progress at once
        self._queue: list[_Job] = []  # stores waiting for the next group commit
        self._committer: asyncio.Task[None] | None = None
        self.commits = 0  # group commits made (tests count them against requests)

    async def receive(self, envelopes: list[bytes], *, source: str, peer: bytes) -> BatchResponse:
        """``peer`` is the node id the TLS channel authenticated: only its own envelopes are
        opened, every other one is refused before any cryptography.

        What costs a peer nothing cannot cost this node much either (attack9 F3): identical
        envelopes in a batch are opened once, a re-delivery of a message already in the inbox
        is answered from its header alone, and the rest is opened in chunks of
        :data:`OPEN_CHUNK`, at most one per crypto worker at a time."""
        items = [_Item(e) for e in envelopes]
        firsts: dict[bytes, _Item] = {}
        for it in items:
            first = firsts.setdefault(it.data, it)
            if first is not it:
                it.same_as = first
            else:
                _check_channel(it, peer)
        distinct = [it for it in items if it.same_as is None and it.reason is None]
        senders = await self.run_read(self._before_opening, distinct, peer)
        to_open = [it for it in distinct if it.stored is None]
        chunks = [to_open[i : i + OPEN_CHUNK] for i in range(0, len(to_open), OPEN_CHUNK)]
        for w in range(0, len(chunks), self.parallel):
            wave = chunks[w : w + self.parallel]
            now = int(self.clock())
            await asyncio.gather(*(self._open(chunk, senders, now) for chunk in wave))
        for it in items:
            if it.same_as is not None:
                it.copy_from(it.same_as)
        return await self._commit(items, source)

    async def _open(self, chunk: list[_Item], senders: dict[bytes, SenderKeys], now: int) -> None:
        try:
            outcomes = await self.run_cpu(
                open_batch, [it.data for it in chunk], self.me, senders, now
            )
        except WorkerLost as exc:
            for it in chunk:
                it.reason, it.detail = UNAVAILABLE, exc.message
            return
        for it, out in zip(chunk, outcomes, strict=True):
            if isinstance(out, tuple):
                it.reason, it.detail = out
            else:
                it.opened = out

    async def _commit(self, items: list[_Item], source: str) -> BatchResponse:
        """Store and sign in the next group commit: the requests that are waiting when the
        database thread is free share one fsync'd transaction, and each is answered only once
        the commit that holds its messages is done."""
        job = _Job(items, source, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_queued(), name="group-commit")
        return await asyncio.shield(job.answer)

    async def _commit_queued(self) -> None:
        while self._queue:
            jobs, self._queue = self._queue, []
            try:
                answers = await self.run_db(self._store_group, [(j.items, j.source) for j in jobs])
            except Exception as exc:  # each request hears of it (a 500), none waits for ever
                for j in jobs:
                    if not j.answer.done():
                        j.answer.set_exception(exc)
                continue
            except asyncio.CancelledError:
                for j in jobs:
                    j.answer.cancel()
                raise
            for j, answer in zip(jobs, answers, strict=True):
                if j.answer.done():
                    continue
                if isinstance(answer, Exception):
                    j.answer.set_exception(answer)
                else:
                    j.answer.set_result(answer)

    def _before_opening(self, items: list[_Item], peer: bytes) -> dict[bytes, SenderKeys]:
        """Runs on the reader's thread: the peer table, and which envelopes re-deliver a message
        already in the inbox (PROTOCOL.md 11.3). Such a one is answered ``duplicate`` with its
        stored receipt and not opened: its header (sender, id, the signed recipients and times)
        and payload are byte for byte those of a message verified when it was accepted, which
        the content hash (5.7) says without a key. Only the sender's own channel can ask (the
        lookup is for ``peer``, whose envelopes alone got here), so this tells nobody else which
        ids are stored; one expired, not for this node or from a peer no longer trusted is
        opened, and so refused, as any other."""
        rec = self.reads.peer_by_id(peer)
        now = self.clock()
        revoked = {r.key: r for r in self.reads.revoked_keys(peer)}
        senders = {peer: sender_keys(rec, peer, revoked, int(now))}
        if rec is None or rec.status != "trusted":
            return senders
        for it in items:
            env = it.env
            if env is None or now >= env.expires:
                continue
            known = self.reads.inbox_lookup(peer, env.id)
            if known is None or not any(s.to == self.me.node_id for s in env.slots):
                continue
            if known.content_hash == env.content_hash():
                it.stored = known.receipt
        return senders

    def _store_group(self, jobs: list[tuple[list[_Item], str]]) -> list[BatchResponse | Exception]:
        """Runs on the database thread: every waiting request's messages, receipts and audit
        entries in one unit (one fsync). Each request is decided after the ones before it in
        the unit, whose writes its reads see, so exactly-once holds across requests as within
        one. Should the authoritative replay check of the inbox refuse a message all the same,
        the unit rolls back and each request is stored on its own, one unit per sender's
        receipt, as without grouping."""
        now = self.clock()
        answers: list[BatchResponse | Exception] = []
        try:
            with self.store.unit(now) as u:
                answers = [self._decide_and_store(items, source, now, u) for items, source in jobs]
        except Exception as exc:
            # A replay, or anything one request met (a bug, a database error): no request may
            # fail another's, so each is decided and stored on its own, and fails alone
            # (attack review of h12, F3).
            if not isinstance(exc, Replay):
                log.warning("receive.group_failed", error=str(exc)[:200], requests=len(jobs))
            answers = []
            for items, source in jobs:
                try:
                    answers.append(self._decide_and_store(items, source, now, None))
                except Exception as alone:  # this request's own error: its own 500
                    answers.append(alone)
        self.commits += 1
        for (items, source), answer in zip(jobs, answers, strict=True):
            if isinstance(answer, BatchResponse):
                _log_batch(items, answer, source)
        return answers

    def _decide_and_store(
        self, items: list[_Item], source: str, now: float, unit: Unit | None
    ) -> BatchResponse:
        """Duplicate check, receipts, and their writes in ``unit`` (None: one unit per sender's
        receipt, so a replay refused in one rolls back only that sender's messages)."""
        results: list[ItemResult] = []
        receipts: list[bytes] = []
        fresh: list[tuple[int, Accepted]] = []
        by_receipt: dict[bytes, int] = {}
        shares = _Shares(self.store, self.quota)
        for it in items:
            if it.stored is not None and it.env is not None:
                idx = by_receipt.setdefault(it.stored, len(receipts))
                if idx == len(receipts):
                    receipts.append(it.stored)
                results.append(ItemResult("duplicate", id=it.env.id, receipt=idx))
                continue
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
            try:
                self._check_reference(op)
                shares.take(op.sender, len(it.data))
            except Rejected as exc:
                it.reason, it.detail = exc.reason, exc.message
                results.append(ItemResult("rejected", id=op.id, reason=exc.reason))
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
        noted = any(r.outcome == "rejected" and r.reason != UNAVAILABLE for r in results)
        if unit is not None:
            for accepted, receipt in signed:
                _store(unit, accepted, receipt, source)
            if noted:
                self._audit_rejections(unit, items, results, source)
        else:
            for accepted, receipt in signed:
                with self.store.unit(now) as u:
                    _store(u, accepted, receipt, source)
            if noted:
                with self.store.unit(now) as u:
                    self._audit_rejections(u, items, results, source)
        return BatchResponse(results, receipts)

    def _audit_rejections(
        self, unit: Unit, items: list[_Item], results: list[ItemResult], source: str
    ) -> None:
        for it, res in zip(items, results, strict=True):
            if res.outcome != "rejected" or res.reason == UNAVAILABLE:
                continue
            opened = it.opened
            self.rejections.note(
                unit,
                res.reason or "rejected",
                it.detail[:200],
                source=source,
                claimed_sender=_claimed_sender(it.data),
                message_id=res.id.hex() if res.id else None,
                # Anyone can re-post a validly signed envelope (a replay proves who wrote it, not
                # who sent it now): replays are sampled like unauthenticated junk, and so are
                # the other refusals a peer can repeat at will (_SAMPLED), counted per sender.
                authenticated=opened is not None and res.reason not in _SAMPLED,
                sender=opened.sender.hex() if opened is not None else None,
            )

    def _check_reference(self, op: Opened) -> None:
        """Feedback only from a recipient of the message it is about; no retraction of a
        message this node wrote (a peer retracts only its own, PROTOCOL.md 11.4)."""
        msg = op.message
        if isinstance(msg, Feedback):
            if op.sender not in self.store.outbox_peers(bytes.fromhex(msg.refers_to)):
                raise ForeignReference(
                    f"feedback about message {msg.refers_to}, which this node did not send to "
                    "its sender"
                )
        elif isinstance(msg, Retraction) and self.store.outbox_peers(bytes.fromhex(msg.retracts)):
            raise ForeignReference(f"retraction of message {msg.retracts}, sent by this node")


@dataclass
class _Shares:
    """Each sender's share of the inbox while a batch is stored: what is there plus what this
    batch added, read once per sender."""

    store: Store
    quota: Quota
    used: dict[bytes, tuple[int, int]] = field(default_factory=dict)

    def take(self, sender: bytes, size: int) -> None:
        if sender not in self.used:
            usage = self.store.inbox_usage(sender)
            self.used[sender] = (usage.messages, usage.bytes)
        n, total = self.used[sender]
        if n + 1 > self.quota.messages or total + size > self.quota.bytes:
            raise QuotaExceeded(
                f"the sender holds {n} messages ({total} bytes) in this inbox; the quota is "
                f"{self.quota.messages} messages and {self.quota.bytes} bytes"
            )
        self.used[sender] = (n + 1, total + size)


def _check_channel(item: _Item, peer: bytes) -> None:
    """Refuse an envelope not sent as ``peer`` by its header alone (no cryptography yet)."""
    try:
        item.env = decode_envelope(item.data)
    except Rejected as exc:
        item.reason, item.detail = exc.reason, exc.message
        return
    sender = item.env.sender
    if sender != peer:
        item.reason = ChannelMismatch.reason
        item.detail = f"envelope from {sender.hex()} on the channel of {peer.hex()}"


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
        priority=msg.meta.priority,
        tlp=msg.meta.tlp,
    )


def _claimed_sender(data: bytes) -> str | None:
    try:
        return decode_envelope(data).sender.hex()
    except Rejected:
        return None


def _log_batch(items: list[_Item], answer: BatchResponse, source: str) -> None:
    """One line per batch at info (counts per outcome); one per message at debug; a refusal
    still one warning each, with its reason (the operator looks for those)."""
    counts = Counter(r.outcome for r in answer.results)
    for it, res in zip(items, answer.results, strict=True):
        if res.outcome == "rejected":
            log.warning(
                "message.rejected",
                reason=res.reason,
                detail=it.detail[:200],
                source=source,
                claimed_sender=_claimed_sender(it.data),
            )
        else:
            log.debug(
                "message.received",
                outcome=res.outcome,
                message_id=res.id.hex() if res.id else None,
                source=source,
            )
    log.info(
        "batch.received",
        source=source,
        accepted=counts["accepted"],
        duplicate=counts["duplicate"],
        rejected=counts["rejected"],
    )
