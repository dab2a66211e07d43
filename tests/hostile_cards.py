"""Cards a hostile peer could hand out (attack9 F2): validly signed by their own key, but pinning a
copy of another node's TLS certificate, which is public and so copied without its key."""

from __future__ import annotations

import base64

import msgspec

from keys.card import make_card
from keys.tls import make_certificate
from keys.trust import PeerRecord
from protocol.armor import armor
from protocol.identity import Identity
from protocol.labels import CARD_SIGNATURE_LABEL
from tests.conftest import NOW


def card_pinning(
    ident: Identity,
    name: str,
    cert: bytes,
    *,
    now: int = NOW,
    endpoint: str = "https://127.0.0.1:9",
) -> str:
    """The armored card of ``ident`` named ``name``, pinning ``cert`` instead of its own."""
    own = make_card(
        ident,
        name=name,
        unit_type="JAITF",
        country="HR",
        location="HRZAG",
        endpoints=[endpoint],
        valid_from=now - 60,
        valid_until=now + 30 * 86400,
        tls_cert=make_certificate(ident, now=now),
    )
    body = msgspec.json.decode(own.body_bytes)
    body["tls_cert"] = base64.b64encode(cert).decode()
    data = msgspec.json.encode(body)
    return armor("CARD", [data, ident.sign(CARD_SIGNATURE_LABEL + data)])


def stored_record(ident: Identity, name: str, card_text: str) -> PeerRecord:
    """A trusted peer record holding ``card_text`` as a table filled before PROTOCOL.md 3.5
    bound certificates to cards could hold it."""
    return PeerRecord(
        name=name,
        node_id=ident.node_id,
        fingerprint=ident.public.fingerprint,
        card=card_text,
        verified_by="fingerprint",
        added_at=NOW,
    )
