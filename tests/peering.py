"""Peers for service tests: real (version 2) cards from the fixed test identities, valid around
``NOW``, each pinning the certificate ``make_certificate(identity, now=NOW)``."""

from __future__ import annotations

from keys.card import make_card
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
