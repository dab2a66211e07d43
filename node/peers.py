"""Trusted peers: adding a contact card (the trust decision of keys.trust), listing, removing and
revoking, each change in one unit with its audit entry.

A refusal is a fact worth keeping: a changed key or a wrong fingerprint is audited before the error
is raised, so the log shows the attempt whether the node ran (admin API) or not (node/local.py).
Reads and writes storage through units; no HTTP, no clock (``now`` is passed in).
"""

from __future__ import annotations

import msgspec

from keys.card import Card
from keys.trust import PeerRecord, decide_add
from node.auditing import record
from node.peer_info import parsed_card
from node.storage import Reads, Store
from protocol.errors import (
    BorderlinkError,
    PeerKeyChanged,
    PeerRevoked,
    Rejected,
    TrustError,
    UnknownPeer,
)
from protocol.identity import PublicIdentity
from protocol.text import shown


class PeerKeys(msgspec.Struct, frozen=True):
    """A peer's public keys under the name this node knows it by (what sealing and checking an
    export need, and all that crosses the admin API for them)."""

    name: str
    sign_key: bytes
    enc_key: bytes

    @property
    def identity(self) -> PublicIdentity:
        return PublicIdentity(self.sign_key, self.enc_key)


def trusted_by_name(reads: Reads, names: list[str]) -> list[PeerRecord]:
    """Names -> trusted peers, in order; an unknown or revoked name is refused (exit 4)."""
    out = []
    for name in names:
        peer = reads.peer_by_name(name)
        if peer is None:
            raise UnknownPeer(f"no peer named {shown(name)}")
        if peer.status != "trusted":
            raise PeerRevoked(f"peer {shown(name)} is revoked")
        out.append(peer)
    return out


class AddedPeer(msgspec.Struct, frozen=True):
    name: str
    outcome: str  # added | updated | unchanged
    verified_by: str  # fingerprint | tofu
    fingerprint: str
    node_id: str
    tls_pin: str | None = None  # None: a version 1 card, which pins no TLS certificate


class PeerRow(msgspec.Struct, frozen=True):
    """One known peer as ``borderlink peers list`` shows it, in this order."""

    name: str
    node_id: str
    fingerprint: str
    status: str
    verified_by: str
    unit_type: str | None
    location: str | None
    endpoints: list[str]
    valid_until: int | None
    tls_pin: str | None = None


class Revoked(msgspec.Struct, frozen=True):
    name: str
    already: bool  # it was revoked before: nothing changed


def add(
    store: Store,
    card: Card,
    *,
    me: bytes,
    fingerprint: str | None,
    trust_on_first_use: bool,
    actor: str,
    now: float,
    own_pin: str | None = None,
) -> AddedPeer:
    """Trust ``card`` (already parsed and checked at ``now``) if keys.trust.decide_add allows it;
    ``me`` is this node's id, ``own_pin`` its TLS pin. The decision reads the peers in the unit
    that writes, so two adds racing cannot both pass it."""
    identity = card.identity
    if identity.node_id == me:
        raise BorderlinkError("that is this node's own card")
    peer, peer_id = card.name, identity.node_id.hex()
    refused: TrustError | None = None
    with store.unit(now) as u:
        try:
            outcome, method = decide_add(
                card,
                fingerprint=fingerprint,
                trust_on_first_use=trust_on_first_use,
                same_name=u.peer_by_name(card.name),
                same_key=u.peer_by_id(identity.node_id),
                same_pin=_pinning(u, card.tls_pin, other_than=identity.node_id),
                own_pin=own_pin,
            )
        except TrustError as exc:
            kind = "peer.key_changed" if isinstance(exc, PeerKeyChanged) else "peer.added"
            record(
                u,
                kind,
                actor,
                outcome="refused",
                detail=exc.message[:200],
                peer=peer,
                peer_id=peer_id,
            )
            refused = exc
        else:
            if outcome != "unchanged":
                u.put_peer(
                    PeerRecord(
                        name=card.name,
                        node_id=identity.node_id,
                        fingerprint=identity.fingerprint,
                        card=card.armored(),
                        verified_by=method,
                        added_at=int(now),
                    )
                )
                record(
                    u,
                    "peer.added" if outcome == "added" else "peer.updated",
                    actor,
                    outcome=f"verified by {method}",
                    detail=identity.fingerprint,
                    peer=peer,
                    peer_id=peer_id,
                )
    if refused is not None:
        raise refused
    return AddedPeer(
        card.name, outcome, method, identity.fingerprint, identity.node_id.hex(), card.tls_pin
    )


def _pinning(reads: Reads, pin: str | None, *, other_than: bytes) -> PeerRecord | None:
    """A stored peer of another key whose card pins ``pin`` (trusted or revoked), if any."""
    if pin is None:
        return None
    for rec in reads.peers():
        if rec.node_id != other_than and rec.card and _pin_of(rec.card) == pin:
            return rec
    return None


def _pin_of(card_text: str) -> str | None:
    try:
        return parsed_card(card_text).tls_pin
    except Rejected:  # a stored card that no longer reads pins nothing we can compare
        return None


def listing(reads: Reads) -> list[PeerRow]:
    rows = []
    for p in reads.peers():
        body = parsed_card(p.card).body if p.card else None
        rows.append(
            PeerRow(
                name=p.name,
                node_id=p.node_id.hex(),
                fingerprint=p.fingerprint,
                status=p.status,
                verified_by=p.verified_by,
                unit_type=body.unit_type if body else None,
                location=body.location if body else None,
                endpoints=list(body.endpoints) if body else [],
                valid_until=body.valid_until if body else None,
                tls_pin=parsed_card(p.card).tls_pin if p.card else None,
            )
        )
    return rows


def remove(store: Store, name: str, *, actor: str, now: float) -> None:
    """Forget a trusted peer. A revoked one is kept: its record is the tombstone that keeps its
    key from being trusted again (PROTOCOL.md 4), so removing it would undo the revocation."""
    refused: TrustError | None = None
    with store.unit(now) as u:
        rec = u.peer_by_name(name)
        if rec is not None and rec.status == "revoked":
            record(
                u,
                "peer.removed",
                actor,
                outcome="refused",
                detail="peer is revoked",
                peer=name,
                peer_id=rec.node_id.hex(),
            )
            refused = PeerRevoked(
                f"peer '{name}' is revoked and revocation is permanent: its record is kept "
                "so its key is never trusted again"
            )
        elif u.delete_peer(name):
            record(u, "peer.removed", actor, peer=name)
        else:
            refused = UnknownPeer(f"no peer named '{name}'")
    if refused is not None:
        raise refused


def revoke(store: Store, name: str, *, actor: str, now: float) -> Revoked:
    """Revoke a peer's key for good: its messages are refused and it cannot be added again."""
    with store.unit(now) as u:
        rec = u.peer_by_name(name)
        if rec is None:
            raise UnknownPeer(f"no peer named '{name}'")
        if rec.status == "revoked":
            return Revoked(name, already=True)
        u.put_peer(msgspec.structs.replace(rec, status="revoked", revoked_at=int(now)))
        record(
            u,
            "peer.revoked",
            actor,
            peer=name,
            peer_id=rec.node_id.hex(),
            detail=rec.fingerprint,
        )
    return Revoked(name, already=False)
