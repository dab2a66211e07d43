"""Sending: validate a message body, seal it for trusted recipients and queue it durably.

``send`` returns only once the message, its outbox entries and its ``message.queued`` audit entry
are committed in one unit, so an id the operator was shown survives kill -9. Acknowledging a
received message is sending a Feedback (PROTOCOL.md 9) and marking the inbox entry in a second
unit. Reads and writes storage through units; seals on the crypto thread; no HTTP.
"""

from __future__ import annotations

import functools

import msgspec
import structlog

from keys.trust import PeerRecord
from node.auditing import record
from node.delivery import Deliveries
from node.peer_info import parsed_card
from node.peers import trusted_by_name
from node.runtime import Clock, Run
from node.storage import QueuedMessage, Store
from protocol.envelope import Envelope, TypeName, seal
from protocol.errors import UsageError, ValidationError
from protocol.identity import Identity
from protocol.schemas import SCHEMA_VERSION, Feedback, Meta, decode_body, encode_body

log = structlog.get_logger("borderlink.node")

ACK_TTL = 3 * 86400


class Sender:
    def __init__(
        self,
        identity: Identity,
        store: Store,
        run_db: Run,
        run_cpu: Run,
        deliveries: Deliveries,
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
        kind: TypeName = type_name  # type: ignore[assignment]  # decode_body accepted it
        env = await self.run_cpu(
            functools.partial(
                seal, self.identity, idents, kind, encode_body(msg), now=int(now), ttl=ttl
            )
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
