"""The inbox as the operator sees it: listings, a stored message opened again, acknowledgements.

Stored envelopes are still encrypted to this node; showing one opens it again (on the crypto
thread) at its creation time, which checks the signature once more without failing on expiry.
Showing marks it read and acknowledging sends a Feedback, each with its audit entry in a unit.
Views are plain JSON-ready dicts: the admin routes send them as they are. No HTTP.
"""

from __future__ import annotations

from typing import Any

import msgspec

from keys.card import parse_card
from keys.trust import PeerRecord
from node.auditing import record
from node.runtime import Clock, Run
from node.sending import Sender
from node.storage import InboxRow, Store, StoredMessage
from protocol.envelope import Opened, open_envelope
from protocol.errors import BorderlinkError, UnknownPeer, UsageError
from protocol.identity import Identity, PublicIdentity


class Inbox:
    def __init__(
        self,
        identity: Identity,
        store: Store,
        run_db: Run,
        run_cpu: Run,
        sender: Sender,
        clock: Clock,
    ) -> None:
        self.identity = identity
        self.store = store
        self.run_db = run_db
        self.run_cpu = run_cpu
        self.sender = sender
        self.clock = clock

    async def names(self) -> dict[bytes, str]:
        return {p.node_id: p.name for p in await self.run_db(self.store.peers)}

    async def listing(self, *, unread: bool) -> list[dict[str, Any]]:
        rows = await self.run_db(self.store.inbox_rows, unread=unread)
        names = await self.names()
        return [view(row, names) for row in rows]

    async def show(self, msg_id: bytes, from_name: str | None) -> dict[str, Any]:
        row, opened = await self._opened(msg_id, from_name)
        await self.run_db(self._shown, row, self.clock())
        out = view(row, await self.names())
        out["message"] = msgspec.to_builtins(opened.message)
        return out

    async def acknowledge(
        self, msg_id: bytes, from_name: str | None, action: str, details: str | None
    ) -> dict[str, Any]:
        row, opened = await self._opened(msg_id, from_name)
        rec = await self.run_db(self.store.peer_by_id, row.sender)
        if rec is None:
            raise UnknownPeer("the sender of that message is no longer a known peer")
        fb_id = await self.sender.acknowledge(rec, msg_id, opened.message.meta, action, details)
        return {"id": msg_id.hex(), "feedback_id": fb_id.hex(), "to": rec.name, "action": action}

    def _shown(self, row: InboxRow, now: float) -> None:
        with self.store.unit(now) as u:
            record(
                u,
                "message.shown",
                "operator",
                message_id=row.id.hex(),
                peer_id=row.sender.hex(),
            )
            u.mark_read(row.sender, row.id)

    async def _opened(self, msg_id: bytes, from_name: str | None) -> tuple[InboxRow, Opened]:
        sender_id = None
        if from_name is not None:
            peer = await self.run_db(self.store.peer_by_name, from_name)
            if peer is None:
                raise UnknownPeer(f"no peer named '{from_name}'")
            sender_id = peer.node_id
        found: list[StoredMessage] = await self.run_db(self.store.inbox_get, msg_id, sender_id)
        if not found:
            raise BorderlinkError(
                f"no message {msg_id.hex()} in the inbox",
                hint="list messages with 'borderlink inbox'",
            )
        if len(found) > 1:
            names = await self.names()
            who = ", ".join(names.get(m.row.sender, m.row.sender.hex()) for m in found)
            raise UsageError(
                f"message id {msg_id.hex()} was used by several senders ({who})",
                hint="say which with --from NAME",
            )
        row, envelope = found[0].row, found[0].envelope
        rec = await self.run_db(self.store.peer_by_id, row.sender)
        if rec is None:
            raise UnknownPeer("the sender of that message is no longer a known peer")
        opened = await self.run_cpu(_reopen, envelope, self.identity, rec, row.created)
        return row, opened


def _reopen(envelope: bytes, me: Identity, rec: PeerRecord, created: int) -> Opened:
    identity = parse_card(rec.card, now=None).identity

    def sender_of(_nid: bytes) -> PublicIdentity:
        return identity

    return open_envelope(envelope, me, sender_of=sender_of, now=created)


def view(row: InboxRow, names: dict[bytes, str]) -> dict[str, Any]:
    return {
        "id": row.id.hex(),
        "from": names.get(row.sender, row.sender.hex()),
        "type": row.type,
        "created": row.created,
        "expires": row.expires,
        "received_at": row.received_at,
        "refers_to": row.refers_to.hex() if row.refers_to else None,
        "read": row.read_at is not None,
        "acked": row.ack_action,
        "withdrawn_by": row.withdrawn_by.hex() if row.withdrawn_by else None,
    }
