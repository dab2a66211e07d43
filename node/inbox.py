"""The inbox as the operator sees it: listings, a stored message opened again, acknowledgements.

A listing is most urgent first (flash, urgent, routine), newest first within a priority, in pages
that start after a cursor (node/sending.py :class:`Page`): a flood of routine messages can neither
push a flash alert off the first page nor hide one between two pages.

Stored envelopes are still encrypted to this node; showing one opens it again (on the crypto
thread) at its creation time, which checks the signature once more without failing on expiry.
Showing marks it read (``message.shown``) in a unit; acknowledging sends a Feedback through
:class:`node.sending.Sender`. Reads and writes storage through units; no HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from keys.statements import retired_signers
from keys.trust import PeerRecord
from node.auditing import record
from node.message_ids import resolve
from node.peer_info import parsed_card
from node.runtime import Run
from node.sending import Page, Sender, cursor, from_cursor, page_limit, paged, peer_names
from node.storage import InboxRow, Reads, Store
from node.storage.rows import InboxFilter, InboxKey
from protocol.envelope import Opened, open_envelope
from protocol.errors import BorderlinkError, UnknownPeer, UsageError
from protocol.identity import Identity, PublicIdentity
from protocol.schemas import MESSAGE_TYPES, Message
from protocol.text import shown


class InboxView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One received message as ``borderlink inbox`` lists it (JSON in this order); ``message``,
    the opened body, only when it is shown."""

    id: str
    sender: str = msgspec.field(name="from")  # the peer's name, or its node id if forgotten
    type: str
    priority: str  # routine | urgent | flash
    tlp: str | None  # meta.tlp (RED .. CLEAR); None for messages stored before it was kept
    created: int
    expires: int
    received_at: float
    refers_to: str | None
    read: bool
    acked: str | None  # the action it was acknowledged with
    withdrawn_by: str | None  # the retraction that withdrew it
    suspect: str | None = None  # its sender's key was reported compromised since before it came
    message: Message | None = None


class Acknowledged(msgspec.Struct, frozen=True):
    id: str
    feedback_id: str
    to: str
    action: str


def inbox_view(row: InboxRow, names: dict[bytes, str]) -> InboxView:
    return InboxView(
        id=row.id.hex(),
        sender=names.get(row.sender, row.sender.hex()),
        type=row.type,
        priority=row.priority,
        tlp=row.tlp,
        created=row.created,
        expires=row.expires,
        received_at=row.received_at,
        refers_to=row.refers_to.hex() if row.refers_to else None,
        read=row.read_at is not None,
        acked=row.ack_action,
        withdrawn_by=row.withdrawn_by.hex() if row.withdrawn_by else None,
        suspect=row.suspect,
    )


_INBOX = "i"


def _inbox_cursor(row: InboxRow) -> str:
    return cursor(_INBOX, InboxKey(row.priority, row.received_at, row.sender, row.id))


class Wanted(msgspec.Struct, frozen=True, kw_only=True):
    """Which messages a listing shows, as the operator names them; empty matches all."""

    types: tuple[str, ...] = ()
    sender: str | None = None  # a peer's name
    priorities: tuple[str, ...] = ()


PRIORITIES = ("flash", "urgent", "routine")  # most urgent first, as listings sort


def _filter(store: Reads, wanted: Wanted) -> InboxFilter:
    for p in wanted.priorities:
        if p not in PRIORITIES:
            raise UsageError(f"priority must be one of {', '.join(PRIORITIES)}, not {shown(p)}")
    for t in wanted.types:
        if t not in MESSAGE_TYPES:
            raise UsageError(f"type must be one of {', '.join(MESSAGE_TYPES)}, not {shown(t)}")
    sender = None
    if wanted.sender is not None:
        peer = store.peer_by_name(wanted.sender)
        if peer is None:
            raise UnknownPeer(
                f"no peer named {shown(wanted.sender)}", hint="'borderlink peers list' names them"
            )
        sender = peer.node_id
    return InboxFilter(types=wanted.types, sender=sender, priorities=wanted.priorities)


def _listing(
    store: Reads, unread: bool, limit: int, after: InboxKey | None, wanted: Wanted
) -> Page[InboxView]:
    only = _filter(store, wanted)
    found = store.inbox_rows(unread=unread, limit=limit + 1, after=after, only=only)
    rows, nxt = paged(found, limit, _inbox_cursor)
    names = peer_names(store)
    return Page([inbox_view(row, names) for row in rows], nxt)


@dataclass(frozen=True)
class _Found:
    row: InboxRow
    envelope: bytes
    sender: PeerRecord


def _find(store: Store, msg_id: bytes, from_name: str | None) -> _Found:
    """The one stored message with this id (from the peer named ``from_name`` if given)."""
    sender_id = None
    if from_name is not None:
        peer = store.peer_by_name(from_name)
        if peer is None:
            raise UnknownPeer(f"no peer named '{from_name}'")
        sender_id = peer.node_id
    found = store.inbox_get(msg_id, sender_id)
    if not found:
        raise BorderlinkError(
            f"no message {msg_id.hex()} in the inbox", hint="list messages with 'borderlink inbox'"
        )
    if len(found) > 1:
        names = peer_names(store)
        who = ", ".join(names.get(m.row.sender, m.row.sender.hex()) for m in found)
        raise UsageError(
            f"message id {msg_id.hex()} was used by several senders ({who})",
            hint="say which with --from NAME",
        )
    row, envelope = found[0].row, found[0].envelope
    rec = store.peer_by_id(row.sender)
    if rec is None:
        raise UnknownPeer("the sender of that message is no longer a known peer")
    return _Found(row, envelope, rec)


def _reopen(envelope: bytes, me: Identity, rec: PeerRecord, created: int) -> Opened:
    """A stored message, opened again to show it: it was checked when it came, so any key the
    sender's chain holds may have signed it (it may predate a rotation), and this node's
    decryption keys as they were when it was created open it."""
    card = parsed_card(rec.card)
    identity = card.identity
    older = [(old.key, None) for old in retired_signers(card)]

    def sender_of(_nid: bytes) -> PublicIdentity:
        return identity

    return open_envelope(
        envelope, me, sender_of=sender_of, now=created, older_keys=lambda _nid: older
    )


class Inbox:
    """Acknowledging is sending, so the inbox works with the sender's identity, storage, threads
    and clock rather than a second copy of each. Listings and id lookups read through ``reads``
    on ``run_read`` (the node's reader connection and thread: a listing never waits behind the
    writer); by default, the sender's store on its thread."""

    def __init__(
        self, sender: Sender, *, reads: Reads | None = None, run_read: Run | None = None
    ) -> None:
        self.sender = sender
        self.identity = sender.identity
        self.store = sender.store
        self.run_db = sender.run_db
        self.run_cpu = sender.run_cpu
        self.clock = sender.clock
        self.reads: Reads = reads if reads is not None else sender.store
        self.run_read: Run = run_read if run_read is not None else sender.run_db

    async def listing(
        self,
        *,
        unread: bool,
        limit: int = 50,
        after: str | None = None,
        wanted: Wanted | None = None,
    ) -> Page[InboxView]:
        """Most urgent first, then newest; only those not yet shown with ``unread``, only those
        ``wanted`` names; ``limit`` messages from the one after the cursor ``after``."""
        key = None if after is None else from_cursor(_INBOX, after, InboxKey)
        return await self.run_read(
            _listing, self.reads, unread, page_limit(limit), key, wanted or Wanted()
        )

    async def resolve(self, text: str) -> bytes:
        """The inbox message id ``text`` means: a full id, or a unique prefix of one."""
        return await self.run_read(resolve, text, self.reads.inbox_ids, "the inbox")

    async def show(self, msg_id: bytes, from_name: str | None) -> InboxView:
        """The message opened again, with its body; marks it read."""
        found, opened = await self._opened(msg_id, from_name)
        await self.run_db(self._shown, found.row, self.clock())
        view = inbox_view(found.row, await self.run_db(peer_names, self.store))
        return msgspec.structs.replace(view, message=opened.message)

    async def acknowledge(
        self, msg_id: bytes, from_name: str | None, action: str, details: str | None
    ) -> Acknowledged:
        """Send the sender a Feedback with ``action`` and mark the message acknowledged."""
        found, opened = await self._opened(msg_id, from_name)
        meta = opened.message.meta
        fb_id = await self.sender.acknowledge(found.sender, msg_id, meta, action, details)
        return Acknowledged(msg_id.hex(), fb_id.hex(), found.sender.name, action)

    async def _opened(self, msg_id: bytes, from_name: str | None) -> tuple[_Found, Opened]:
        found = await self.run_db(_find, self.store, msg_id, from_name)
        opened = await self.run_cpu(
            _reopen, found.envelope, self.identity, found.sender, found.row.created
        )
        return found, opened

    def _shown(self, row: InboxRow, now: float) -> None:
        with self.store.unit(now) as u:
            record(
                u, "message.shown", "operator", message_id=row.id.hex(), peer_id=row.sender.hex()
            )
            u.mark_read(row.sender, row.id)
