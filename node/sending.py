"""Sending: validate a message body, seal it for trusted recipients, queue it durably, show where
each queued message stands (the outbox, in pages) and queue a failed delivery again.

``send`` returns only once the message, its outbox entries and its ``message.queued`` audit entry
are committed in one unit, so an id the operator was shown survives kill -9; ``send_batch`` does
the same for up to 10,000 messages in one unit (all or none), after checking every body, with the
recipients and their cards read once; bodies are checked and sealed a chunk at a time on the
crypto runner (node/outgoing.py, node/batches.py). Acknowledging a received message is sending a
Feedback (PROTOCOL.md 9) and marking the inbox entry in a second unit. Listings come in pages
(:class:`Page`) that start after an opaque cursor: the key of the last row shown (keyset paging),
so rows arriving meanwhile neither repeat nor hide one. Reads and writes storage through units;
seals on the crypto runner; wakes delivery through a narrow Protocol; no HTTP.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar, cast

import msgspec
import structlog

from keys.statements import utc
from keys.trust import PeerRecord
from node.auditing import record
from node.batches import check_batch
from node.message_ids import resolve
from node.outgoing import (
    Prepared,
    Refused,
    check_priority,
    check_sealable,
    in_chunks,
    outbox_message,
    prepare,
    prepared,
    sealed,
)
from node.peer_info import parsed_card
from node.peers import trusted_by_name
from node.runtime import Clock, Run
from node.storage import OutboxRow, QueuedMessage, Reads, Store
from node.storage.rows import OutboxKey
from protocol.envelope import TypeName, seal
from protocol.errors import BorderlinkError, TrustError, UsageError, ValidationError
from protocol.identity import Identity
from protocol.schemas import SCHEMA_VERSION, Feedback, Meta, encode_body
from protocol.schemas.codec import check_type_name
from protocol.text import shown

log = structlog.get_logger("borderlink.node")

ACK_TTL = 3 * 86400
DONE = frozenset({"delivered", "expired", "rejected"})  # never attempted again
RETRYABLE = frozenset({"failed", "rejected"})  # what 'outbox retry' queues again
MAX_PAGE = 1000  # rows in one page of a listing

T = TypeVar("T")
K = TypeVar("K")


class Page(msgspec.Struct, Generic[T], frozen=True):
    """One page of a listing: ``next`` is the cursor of the page after it, None on the last."""

    items: list[T]
    next: str | None


def page_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"--limit takes 1 to {MAX_PAGE} rows, not {limit}")
    return limit


def cursor(tag: str, key: object) -> str:
    """An opaque cursor for ``key`` (a listing's sort key), tagged with the listing it is for."""
    return tag + base64.urlsafe_b64encode(msgspec.msgpack.encode(key)).decode().rstrip("=")


def from_cursor(tag: str, text: str, key_type: type[K]) -> K:
    """The key in a cursor :func:`cursor` made for this listing; a usage error for anything else."""
    bad = UsageError(
        f"--after takes the cursor a listing printed after 'more:', not {shown(text)}",
        hint="start again without --after",
    )
    if not text.startswith(tag):
        raise bad
    body = text[len(tag) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        return msgspec.msgpack.decode(raw, type=key_type)
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise bad from None


def paged(rows: list[T], limit: int, key: Callable[[T], str]) -> tuple[list[T], str | None]:
    """The first ``limit`` of ``rows`` (read with one more than ``limit``) and the next cursor."""
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], key(rows[limit - 1])


class Requeued(msgspec.Struct, frozen=True):
    """What ``outbox retry`` queued again: the message and the peers (by name) it goes to."""

    id: str
    to: list[str]


class Delivering(Protocol):
    """Who delivers queued messages (node/delivery.py ``Deliveries``)."""

    async def ensure(self, rec: PeerRecord, *, now: bool = False) -> None: ...


class OutboxView(msgspec.Struct, frozen=True, kw_only=True):
    """One message for one recipient as ``borderlink outbox`` shows it (JSON in this order)."""

    id: str
    type: str
    created: int
    expires: int
    queued_at: float
    peer: str  # the peer's name, or its node id if it is no longer a peer
    status: str
    attempts: int
    next_attempt: float | None  # None once the entry is done
    last_error: str | None
    delivered_at: float | None


def peer_names(reads: Reads) -> dict[bytes, str]:
    return {p.node_id: p.name for p in reads.peers()}


def outbox_view(row: OutboxRow, names: dict[bytes, str]) -> OutboxView:
    return OutboxView(
        id=row.id.hex(),
        type=row.type,
        created=row.created,
        expires=row.expires,
        queued_at=row.queued_at,
        peer=names.get(row.peer, row.peer.hex()),
        status=row.status,
        attempts=row.attempts,
        next_attempt=None if row.status in DONE else row.next_attempt,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
    )


_OUTBOX = "o"


def _outbox_cursor(row: OutboxRow) -> str:
    return cursor(_OUTBOX, OutboxKey(row.queued_at, row.id, row.peer))


def _outbox(
    reads: Reads, msg_id: bytes | None, limit: int, after: OutboxKey | None
) -> Page[OutboxView]:
    names = peer_names(reads)
    rows, nxt = paged(reads.outbox_rows(msg_id, limit + 1, after), limit, _outbox_cursor)
    return Page([outbox_view(row, names) for row in rows], nxt)


class Sender:
    def __init__(
        self,
        identity: Identity,
        store: Store,
        run_db: Run,
        run_cpu: Run,
        deliveries: Delivering,
        clock: Clock,
        *,
        reads: Reads | None = None,
        run_read: Run | None = None,
    ) -> None:
        """``reads`` on ``run_read``: the node's reader connection and thread, so an outbox
        listing never waits behind deliveries on the writer's thread (the store by default)."""
        self.identity = identity
        self.store = store
        self.run_db = run_db
        self.run_cpu = run_cpu
        self.deliveries = deliveries
        self.clock = clock
        self.reads: Reads = reads if reads is not None else store
        self.run_read: Run = run_read if run_read is not None else run_db

    async def send(
        self, to: list[str], type_name: str, body: bytes, ttl: int, priority: str | None = None
    ) -> bytes:
        """Validate, seal, and queue durably; returns once the message would survive kill -9."""
        recipients = await self.run_db(self._recipients, to, self.clock())
        check_priority(priority)
        body_ = prepare(type_name, body, priority)
        idents = [parsed_card(r.card).identity for r in recipients]
        now = self.clock()
        kind = cast(TypeName, type_name)  # checked by prepare
        env = await self.run_cpu(
            seal, self.identity, idents, kind, body_.body, now=int(now), ttl=ttl
        )
        queued = outbox_message(env, body_)
        await self.run_db(self._queue, [queued], recipients, now)
        log.info(
            "message.queued",
            message_id=queued.id.hex(),
            type=type_name,
            to=[r.name for r in recipients],
        )
        for r in recipients:
            await self.deliveries.ensure(r)
        return queued.id

    async def send_batch(
        self,
        to: list[str],
        type_name: str,
        bodies: Sequence[bytes],
        ttl: int,
        priority: str | None = None,
    ) -> list[bytes]:
        """Validate every body, seal them all, then queue them in one unit; their ids in the
        order of ``bodies``, returned once all would survive kill -9. One bad body refuses the
        batch (its index in the error's path: ``bodies[3].meta.tlp``) and nothing is queued.

        The recipients are looked up and their cards read once for the batch; validating and
        sealing run on the crypto runner a chunk at a time (node/batches.py), so a batch of
        thousands never holds it for long; the database thread sees one commit."""
        check_batch(len(bodies), sum(len(b) for b in bodies))
        check_type_name(type_name)
        check_priority(priority)
        recipients = await self.run_db(self._recipients, to, self.clock())
        idents = [parsed_card(r.card).identity for r in recipients]
        check_sealable(idents, ttl)

        async def validate(first: int, part: Sequence[bytes]) -> list[Prepared]:
            done = await self.run_cpu(prepared, type_name, part, priority, first)
            if isinstance(done, Refused):
                raise done.error()
            return done

        ready = await in_chunks(validate, bodies)
        now = self.clock()

        async def seal_part(_first: int, part: Sequence[Prepared]) -> list[QueuedMessage]:
            return await self.run_cpu(
                sealed, self.identity, idents, type_name, part, now=int(now), ttl=ttl
            )

        queued = await in_chunks(seal_part, ready)
        await self.run_db(self._queue, queued, recipients, now)
        log.info(
            "messages.queued",
            count=len(queued),
            type=type_name,
            to=[r.name for r in recipients],
        )
        for r in recipients:
            await self.deliveries.ensure(r)
        return [q.id for q in queued]

    def _recipients(self, to: list[str], now: float) -> list[PeerRecord]:
        """The trusted, unexpired peers named, if this node's own key may still sign."""
        me = self.identity.public
        for rev in self.store.revoked_keys(self.identity.node_id):
            if rev.key == me.sign_key:
                raise TrustError(
                    f"this node's key was revoked ({rev.reason}) on {utc(rev.at)}: nothing can "
                    "be sent with it",
                    hint="set up a new node with 'borderlink init --home NEW_HOME' and have "
                    "your peers or coordinator introduce it",
                )
        return trusted_by_name(self.store, to, now=now)

    async def outbox(
        self, msg_id: bytes | None = None, *, limit: int = 50, after: str | None = None
    ) -> Page[OutboxView]:
        """Newest message first, then by peer; one message's entries if ``msg_id`` is given;
        ``limit`` entries from the one after the cursor ``after``."""
        key = None if after is None else from_cursor(_OUTBOX, after, OutboxKey)
        return await self.run_read(_outbox, self.reads, msg_id, page_limit(limit), key)

    async def resolve(self, text: str) -> bytes:
        """The id of this node's own message ``text`` means: a full id, or a unique prefix."""
        return await self.run_read(resolve, text, self.reads.outbox_ids, "the outbox")

    async def retry(self, msg_id: bytes, to: str | None = None) -> Requeued:
        """Queue the failed or rejected deliveries of a message again (only the one to the peer
        named ``to`` if given), due now, and wake their workers."""
        requeued = await self.run_db(self._requeue, msg_id, to, self.clock())
        log.info("message.requeued", message_id=msg_id.hex(), to=[r.name for r in requeued])
        for r in requeued:
            await self.deliveries.ensure(r, now=True)
        return Requeued(msg_id.hex(), [r.name for r in requeued])

    def _requeue(self, msg_id: bytes, to: str | None, now: float) -> list[PeerRecord]:
        rows = self.store.outbox_rows(msg_id, limit=MAX_PAGE)
        if not rows:
            raise BorderlinkError(
                f"no message {msg_id.hex()} in the outbox",
                hint="list messages with 'borderlink outbox'",
            )
        if to is not None:
            [peer] = trusted_by_name(self.store, [to])
            rows = [r for r in rows if r.peer == peer.node_id]
            if not rows:
                raise BorderlinkError(f"message {msg_id.hex()} was not sent to {shown(to)}")
        peers = {p.node_id: p for p in self.store.peers() if p.status == "trusted"}
        due = [r for r in rows if r.status in RETRYABLE and r.peer in peers and r.expires > now]
        if not due:
            names = peer_names(self.store)
            stand = ", ".join(f"{r.status} to {names.get(r.peer, r.peer.hex())}" for r in rows)
            raise BorderlinkError(
                f"nothing to retry: message {msg_id.hex()} is {stand}",
                hint="only failed or rejected deliveries of unexpired messages to trusted peers "
                "are retried",
            )
        recipients = [peers[r.peer] for r in due]
        with self.store.unit(now) as u:
            record(
                u,
                "message.requeued",
                "operator",
                message_id=msg_id.hex(),
                outcome=",".join(sorted({r.status for r in due})),
                detail="to " + ",".join(p.name for p in recipients),
            )
            u.requeue(msg_id, [p.node_id for p in recipients])
        return recipients

    def _queue(
        self, messages: list[QueuedMessage], recipients: list[PeerRecord], now: float
    ) -> None:
        """Every message, its outbox entries and its audit entry in one unit: all or none."""
        detail = "to " + ",".join(r.name for r in recipients)
        peers = [r.node_id for r in recipients]
        with self.store.unit(now) as u:
            for m in messages:
                record(
                    u,
                    "message.queued",
                    "operator",
                    message_id=m.id.hex(),
                    outcome=m.type,
                    detail=detail,
                    hashes={"content": m.content_hash.hex()},
                )
                u.enqueue(m, peers)

    async def acknowledge(
        self, sender: PeerRecord, msg_id: bytes, meta: Meta, action: str, details: str | None
    ) -> bytes:
        """Send the Feedback for a received message, then mark it acknowledged; the feedback id."""
        fb = Feedback(
            meta=Meta(
                schema_version=SCHEMA_VERSION,
                priority="routine",
                tlp=meta.tlp,
                handling=meta.handling,
                source_reliability="A",
                info_accuracy=1,
                in_reply_to=msg_id.hex(),
            ),
            refers_to=msg_id.hex(),
            action=action,  # type: ignore[arg-type]  # encode_body validates it
            details=details,
        )
        try:
            body = encode_body(fb)
        except ValidationError as exc:
            raise UsageError(f"cannot acknowledge: {exc.message}") from exc
        fb_id = await self.send([sender.name], "feedback", body, ACK_TTL)
        await self.run_db(self._acked, sender, msg_id, action, fb_id, self.clock())
        return fb_id

    def _acked(
        self, sender: PeerRecord, msg_id: bytes, action: str, fb_id: bytes, now: float
    ) -> None:
        with self.store.unit(now) as u:
            record(
                u,
                "message.acknowledged",
                message_id=msg_id.hex(),
                peer_id=sender.node_id.hex(),
                outcome=action,
                detail=f"feedback {fb_id.hex()}",
            )
            u.mark_acked(sender.node_id, msg_id, action)
