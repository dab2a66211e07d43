"""The node's side of the offline flow (``borderlink seal`` / ``open``): whom a file may be sealed
for, and the bookkeeping of opening one (sender lookup, the replay table, the audit entry).

A sealed file reaches the node by hand, not through the peer API, yet it is the same message: its id
goes into the same replay table (PROTOCOL.md 6.2 step 9), so a file opened once is refused the
second time, and a file is audited as ``message.opened`` or ``message.rejected`` as a delivery would
be. Reads and writes storage through units on the database thread, opens envelopes on the crypto
thread; no HTTP, no clock of its own.
"""

from __future__ import annotations

import msgspec

from keys.trust import PeerRecord, require_trusted
from node.auditing import record
from node.peer_info import older_signers, parsed_card
from node.peers import PeerKeys, trusted_by_name
from node.runtime import Clock, Run
from node.storage import Reads, Store, Unit
from node.storage.rows import RevokedKey
from protocol.envelope import Opened, open_envelope
from protocol.errors import BorderlinkError, Rejected, Replay, TrustError
from protocol.identity import Identity, PublicIdentity


class OpenedFile(msgspec.Struct, frozen=True):
    """A sealed file opened and accepted: what ``borderlink open`` shows, in this order."""

    id: str
    type: str
    sender: str
    sender_node_id: str
    sender_fingerprint: str
    verified_by: str
    recipients: list[str]
    created: int
    expires: int
    message: dict[str, object]


def recipients(reads: Reads, names: list[str]) -> list[PeerKeys]:
    """Names -> trusted peers' keys; an unknown or revoked name is refused (exit 4)."""
    out = []
    for peer in trusted_by_name(reads, names):
        identity = parsed_card(peer.card).identity
        out.append(PeerKeys(peer.name, identity.sign_key, identity.enc_key, identity.origin))
    return out


def _open(
    data: bytes,
    me: Identity,
    peers: dict[bytes, PeerRecord],
    revoked: dict[bytes, RevokedKey],
    now: int,
) -> Opened:
    """Verify and decrypt against a snapshot of the peers; the replay table is consulted after,
    inside the unit that records the id (the check open_envelope would make last, made once)."""

    def sender_of(node_id: bytes) -> PublicIdentity:
        return parsed_card(require_trusted(peers.get(node_id), node_id).card).identity

    def older_keys(node_id: bytes) -> list[tuple[bytes, Rejected | None]]:
        rec = peers.get(node_id)
        return [] if rec is None else older_signers(rec, revoked, now)

    return open_envelope(data, me, sender_of=sender_of, now=now, older_keys=older_keys)


def _refused(store: Store, exc: BorderlinkError, *, source: str, actor: str, now: float) -> None:
    with store.unit(now) as u:
        _note_refusal(u, exc, source=source, actor=actor)


def _note_refusal(unit: Unit, exc: BorderlinkError, *, source: str, actor: str) -> None:
    record(
        unit,
        "message.rejected",
        actor,
        outcome=getattr(exc, "reason", "unknown_sender"),  # a revoked sender is not "unknown"
        detail=exc.message[:200],
        source=source,
    )


def _accept(
    store: Store, opened: Opened, sender: PeerRecord, *, source: str, actor: str, now: float
) -> OpenedFile:
    replay: Replay | None = None
    with store.unit(now) as u:
        if u.seen(opened.sender, opened.id):
            replay = Replay("message id was already accepted")
            _note_refusal(u, replay, source=source, actor=actor)
        else:
            u.mark_seen(opened.sender, opened.id, opened.expires)
            record(
                u,
                "message.opened",
                actor,
                message_id=opened.id.hex(),
                peer=sender.name,
                peer_id=opened.sender.hex(),
                outcome=opened.type,
                source=source,
                hashes={"content": opened.content_hash.hex()},
            )
    if replay is not None:
        raise replay
    return OpenedFile(
        id=opened.id.hex(),
        type=opened.type,
        sender=sender.name,
        sender_node_id=opened.sender.hex(),
        sender_fingerprint=sender.fingerprint,
        verified_by=sender.verified_by,
        recipients=[r.hex() for r in opened.recipients],
        created=opened.created,
        expires=opened.expires,
        message=msgspec.to_builtins(opened.message),
    )


async def open_sealed(
    envelope: bytes,
    *,
    me: Identity,
    store: Store,
    run_db: Run,
    run_cpu: Run,
    clock: Clock,
    source: str,
    actor: str,
) -> OpenedFile:
    """Open a sealed file's envelope addressed to ``me``; a refusal is audited, then raised."""
    peers = {p.node_id: p for p in await run_db(store.peers)}
    revoked = {r.key: r for r in await run_db(store.revoked_keys)}
    now = clock()
    try:
        opened = await run_cpu(_open, envelope, me, peers, revoked, int(now))
    except (Rejected, TrustError) as exc:
        await run_db(_refused, store, exc, source=source, actor=actor, now=now)
        raise
    return await run_db(
        _accept, store, opened, peers[opened.sender], source=source, actor=actor, now=now
    )
