"""Trusted peers: adding a contact card (the trust decision of keys.trust), listing, removing and
revoking, each change in one unit with its audit entry.

A refusal is a fact worth keeping: a changed key or a wrong fingerprint is audited before the error
is raised, so the log shows the attempt whether the node ran (admin API) or not (node/local.py).
Reads and writes storage through units; no HTTP, no clock (``now`` is passed in).
"""

from __future__ import annotations

import msgspec

from keys.card import Card
from keys.statements import utc
from keys.trust import PeerRecord, decide_add
from node.auditing import record
from node.keychange import revoke_peer
from node.peer_info import parsed_card
from node.storage import Reads, Store
from protocol.errors import (
    BorderlinkError,
    FingerprintMismatch,
    PeerBlocked,
    PeerKeyChanged,
    PeerRevoked,
    Rejected,
    StatementRefused,
    TrustError,
    UnknownPeer,
)
from protocol.identity import PublicIdentity, normalize_fingerprint
from protocol.text import shown


class PeerKeys(msgspec.Struct, frozen=True):
    """A peer's public keys under the name this node knows it by (what sealing and checking an
    export need, and all that crosses the admin API for them)."""

    name: str
    sign_key: bytes
    enc_key: bytes
    origin: bytes | None = None  # the node id, when a rotation made it not the key's own

    @property
    def identity(self) -> PublicIdentity:
        return PublicIdentity(self.sign_key, self.enc_key, self.origin)


def trusted_by_name(
    reads: Reads, names: list[str], *, now: float | None = None
) -> list[PeerRecord]:
    """Names -> trusted peers, in order; an unknown, revoked or blocked name, or (given ``now``)
    one whose card expired, is refused (exit 4) with what to do."""
    out = []
    for name in names:
        peer = reads.peer_by_name(name)
        if peer is None:
            raise UnknownPeer(f"no peer named {shown(name)}")
        if peer.status == "blocked":
            raise PeerBlocked(blocked_line(peer), hint="")
        if peer.status != "trusted":
            why = f" ({peer.revoke_reason})" if peer.revoke_reason else ""
            raise PeerRevoked(f"peer {shown(name)} is revoked{why}")
        if now is not None:
            until = parsed_card(peer.card).body.valid_until
            if now >= until:
                raise TrustError(
                    f"the card of peer {shown(name)} expired on {utc(until)}; nothing is sent "
                    "under an expired card",
                    hint=f"ask {name} to run 'borderlink keys renew' (its renewal reaches you "
                    "by itself), or import its renewed card with 'borderlink peers add'",
                )
        out.append(peer)
    return out


def blocked_line(peer: PeerRecord) -> str:
    """The one line a send to a blocked peer fails with: the exact command to run."""
    pending = parsed_card(peer.pending_card) if peer.pending_card else None
    fp = pending.identity.fingerprint if pending else "?"
    return (
        f"peer {shown(peer.name)} changed its key and is blocked; compare the new fingerprint "
        f"with {shown(peer.name)} out of band, then run: borderlink peers verify {peer.name} "
        f'--fingerprint "{fp}"'
    )


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
    introduced_by: str | None = None
    revoke_reason: str | None = None
    key_seq: int = 0
    pending_fingerprint: str | None = None  # blocked: the changed key's


class VerifiedPeer(msgspec.Struct, frozen=True):
    name: str
    outcome: str  # verified | unchanged
    fingerprint: str
    was: str  # how it stood before: tofu | introduced | blocked | fingerprint


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
        except (TrustError, StatementRefused) as exc:
            if isinstance(exc, StatementRefused):
                exc = TrustError(f"card not added: {exc.message}")
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
            known = u.peer_by_name(card.name)
            if outcome == "changed" and known is not None and method != "fingerprint":
                u.put_peer(
                    msgspec.structs.replace(known, status="blocked", pending_card=card.armored())
                )
                u.hold_outbox(known.node_id, f"peer '{card.name}' changed its key: blocked")
                record(
                    u,
                    "peer.key_changed",
                    actor,
                    outcome="blocked",
                    detail=f"{known.fingerprint} -> {identity.fingerprint}",
                    peer=peer,
                    peer_id=peer_id,
                )
                blocked = msgspec.structs.replace(known, pending_card=card.armored())
                refused = PeerBlocked(blocked_line(blocked), hint="")
            elif outcome == "changed" and known is not None:
                u.delete_peer(card.name)
                u.put_peer(
                    PeerRecord(
                        name=card.name,
                        node_id=identity.node_id,
                        fingerprint=identity.fingerprint,
                        card=card.armored(),
                        verified_by="fingerprint",
                        added_at=int(now),
                    )
                )
                record(
                    u,
                    "peer.key_changed",
                    actor,
                    outcome="verified by fingerprint",
                    detail=f"{known.fingerprint} -> {identity.fingerprint}",
                    peer=peer,
                    peer_id=peer_id,
                )
            elif outcome == "updated" and known is not None:
                if card.body.sign_key != parsed_card(known.card).body.sign_key:
                    u.put_rotation_applied(known.node_id, card.seq)
                u.put_peer(
                    msgspec.structs.replace(
                        known,
                        card=card.armored(),
                        fingerprint=identity.fingerprint,
                        verified_by=method,
                    )
                )
                record(
                    u,
                    "peer.updated",
                    actor,
                    outcome=f"verified by {method}",
                    detail=identity.fingerprint,
                    peer=peer,
                    peer_id=peer_id,
                )
            elif outcome != "unchanged":
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
        card.name,
        "updated" if outcome == "changed" else outcome,
        method,
        identity.fingerprint,
        identity.node_id.hex(),
        card.tls_pin,
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
                introduced_by=p.introduced_by,
                revoke_reason=p.revoke_reason,
                key_seq=parsed_card(p.card).seq if p.card else 0,
                pending_fingerprint=(
                    parsed_card(p.pending_card).identity.fingerprint if p.pending_card else None
                ),
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
        revoke_peer(u, rec, reason="custodian", since=None, now=now, by="this node's custodian")
        record(
            u,
            "peer.revoked",
            actor,
            peer=name,
            peer_id=rec.node_id.hex(),
            detail=rec.fingerprint,
        )
    return Revoked(name, already=False)


def verify(store: Store, name: str, fingerprint: str, *, actor: str, now: float) -> VerifiedPeer:
    """A custodian compared ``fingerprint`` out of band: a blocked peer's new key is accepted,
    a TOFU or introduced peer becomes verified. A wrong fingerprint changes nothing."""
    given = normalize_fingerprint(fingerprint)
    refused: TrustError | None = None
    with store.unit(now) as u:
        rec = u.peer_by_name(name)
        if rec is None:
            raise UnknownPeer(f"no peer named {shown(name)}")
        if rec.status == "revoked":
            raise PeerRevoked(f"peer {shown(name)} is revoked; revocation is permanent")
        pending = parsed_card(rec.pending_card) if rec.pending_card else None
        target = pending if pending is not None else parsed_card(rec.card)
        actual = target.identity.fingerprint
        was = "blocked" if rec.status == "blocked" else rec.verified_by
        if given != actual:
            record(
                u,
                "peer.verified",
                actor,
                outcome="refused",
                detail=f"fingerprint given does not match {actual}",
                peer=name,
                peer_id=rec.node_id.hex(),
            )
            refused = FingerprintMismatch(
                f"the fingerprint of {shown(name)}'s "
                f"{'new ' if pending else ''}key is {actual}, not the one given; nothing changed"
            )
        elif was == "fingerprint":
            return VerifiedPeer(name, "unchanged", actual, was)
        else:
            if pending is not None:
                u.delete_peer(name)
                u.put_peer(
                    PeerRecord(
                        name=name,
                        node_id=pending.node_id,
                        fingerprint=actual,
                        card=pending.armored(),
                        verified_by="fingerprint",
                        added_at=int(now),
                    )
                )
            else:
                u.put_peer(msgspec.structs.replace(rec, verified_by="fingerprint"))
            if pending is None or pending.node_id == rec.node_id:
                u.release_outbox(rec.node_id)  # rows sealed to another node's key stay held
            record(
                u,
                "peer.verified",
                actor,
                outcome=f"verified by fingerprint (was {was})",
                detail=actual,
                peer=name,
                peer_id=(pending.node_id if pending else rec.node_id).hex(),
            )
    if refused is not None:
        raise refused
    return VerifiedPeer(name, "verified", actual, was)
