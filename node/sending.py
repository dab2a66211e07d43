"""Sending: validate a message body, seal it for trusted recipients, queue it durably, and show
where each queued message stands (the outbox).

``send`` returns only once the message, its outbox entries and its ``message.queued`` audit entry
are committed in one unit, so an id the operator was shown survives kill -9. Acknowledging a
received message is sending a Feedback (PROTOCOL.md 9) and marking the inbox entry in a second
unit. Reads and writes storage through units; seals on the crypto thread; wakes delivery through
a narrow Protocol; no HTTP.
"""

from __future__ import annotations

from typing import Protocol, cast

import msgspec
import structlog

from keys.trust import PeerRecord
from node.auditing import record
from node.peer_info import parsed_card
from node.peers import trusted_by_name
from node.runtime import Clock, Run
from node.storage import OutboxRow, QueuedMessage, Reads, Store
from protocol.envelope import Envelope, TypeName, seal
from protocol.errors import UsageError, ValidationError
from protocol.identity import Identity
from protocol.schemas import SCHEMA_VERSION, Feedback, Meta, decode_body, encode_body

log = structlog.get_logger("borderlink.node")

ACK_TTL = 3 * 86400
DONE = frozenset({"delivered", "expired", "rejected"})  # never attempted again


class Delivering(Protocol):
    """Who delivers queued messages (node/delivery.py ``Deliveries``)."""

    async def ensure(self, rec: PeerRecord) -> None: ...


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


def _outbox(reads: Reads, msg_id: bytes | None) -> list[OutboxView]:
    names = peer_names(reads)
    return [outbox_view(row, names) for row in reads.outbox_rows(msg_id)]


class Sender:
    def __init__(
        self,
        identity: Identity,
        store: Store,
        run_db: Run,
        run_cpu: Run,
        deliveries: Delivering,
        clock: Clock,
    ) -> None:
        self.identity = identity
        self.store = store
        self.run_db = run_db
        self.run_cpu = run_cpu
        self.deliveries = deliveries
        self.clock = clock

    async def send(
        self, to: list[str], type_name: str, body: bytes, ttl: int, priority: str | None = None
    ) -> bytes:
        """Validate, seal, and queue durably; returns once the message would survive kill -9."""
        recipients = await self.run_db(trusted_by_name, self.store, to)
        msg = decode_body(type_name, body)
        if priority is not None:
            if priority not in ("routine", "urgent", "flash"):
                raise ValidationError("priority", "must be routine, urgent or flash")
            msg = msgspec.structs.replace(
                msg, meta=msgspec.structs.replace(msg.meta, priority=priority)
            )
        idents = [parsed_card(r.card).identity for r in recipients]
        now = self.clock()
        kind = cast(TypeName, type_name)  # decode_body accepted it
        env = await self.run_cpu(
            seal, self.identity, idents, kind, encode_body(msg), now=int(now), ttl=ttl
        )
        await self.run_db(self._queue, env, type_name, recipients, now)
        log.info(
            "message.queued",
            message_id=env.id.hex(),
            type=type_name,
            to=[r.name for r in recipients],
        )
        for r in recipients:
            await self.deliveries.ensure(r)
        return env.id

    async def outbox(self, msg_id: bytes | None = None) -> list[OutboxView]:
        """Newest message first, then by peer; one message's entries if ``msg_id`` is given."""
        return await self.run_db(_outbox, self.store, msg_id)

    def _queue(
        self, env: Envelope, type_name: str, recipients: list[PeerRecord], now: float
    ) -> None:
        content_hash = env.content_hash()
        with self.store.unit(now) as u:
            record(
                u,
                "message.queued",
                "operator",
                message_id=env.id.hex(),
                outcome=type_name,
                detail="to " + ",".join(r.name for r in recipients),
                hashes={"content": content_hash.hex()},
            )
            u.enqueue(
                QueuedMessage(
                    id=env.id,
                    type=type_name,
                    created=env.created,
                    expires=env.expires,
                    content_hash=content_hash,
                    envelope=env.encode(),
                ),
                [r.node_id for r in recipients],
            )

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
