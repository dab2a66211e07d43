"""Peers for service tests: real (version 2) cards from the fixed test identities, valid around
``NOW``, each pinning the certificate ``make_certificate(identity, now=NOW)``."""

from __future__ import annotations

from keys.card import Card, make_card
from keys.keyring import Keyring, rotate
from keys.tls import make_certificate
from keys.trust import PeerRecord, PeerStatus
from protocol.identity import Identity
from tests.conftest import NOW


def peer_record(
    ident: Identity, name: str, *, status: PeerStatus = "trusted", endpoints: int = 1
) -> PeerRecord:
    card = make_card(
        ident,
        name=name,
        unit_type="PCU",
        country="ME",
        location="MEBAR",
        endpoints=["https://127.0.0.1:1"][:endpoints],
        valid_from=NOW - 10,
        valid_until=NOW + 86400,
        tls_cert=make_certificate(ident, now=NOW),
    )
    return PeerRecord(
        name=name,
        node_id=ident.node_id,
        fingerprint=ident.public.fingerprint,
        card=card.armored(),
        verified_by="fingerprint",
        status=status,
        added_at=NOW,
    )


def rotated_card(
    card: Card, ring: Keyring, *, at: int, overlap: int = 7 * 86400, tls: bool = False
) -> tuple[Card, Keyring]:
    """``card`` rotated to fresh keys at ``at`` (as ``keys rotate`` does), with the keyring."""
    new_ring, link = rotate(ring, card, Identity.generate(), now=at, overlap=overlap)
    ident = new_ring.identity()
    body = card.body
    new = make_card(
        ident,
        name=body.name,
        unit_type=body.unit_type,
        country=body.country,
        location=body.location,
        endpoints=list(body.endpoints),
        valid_from=at,
        valid_until=body.valid_until,
        tls_cert=make_certificate(ident, now=at) if tls else None,
        seq=link.seq,
        rotations=[*body.rotations, link],
    )
    return new, new_ring
