"""A pin belongs to one node (PROTOCOL.md 3.5): keys.trust.decide_add refuses a card pinning the
certificate of another stored peer or of this node itself, naming who holds it (attack9 F2). The
cards here come from a table filled before certificates were bound to cards, so only this rule
stands in their way."""

from __future__ import annotations

import pytest

from keys.card import parse_card
from keys.tls import make_certificate
from keys.trust import decide_add
from protocol.errors import TrustError
from tests.conftest import NOW, fixed_identity
from tests.hostile_cards import card_pinning, stored_record
from tests.peering import peer_record

BELGRADE, ZAGREB = fixed_identity("belgrade"), fixed_identity("zagreb")
STOLEN = make_certificate(BELGRADE, now=NOW)


def test_a_card_pinning_another_peers_certificate_is_refused_naming_that_peer() -> None:
    card = parse_card(card_pinning(ZAGREB, "zagreb-jaitf", STOLEN), now=None)
    with pytest.raises(TrustError) as caught:
        decide_add(
            card,
            fingerprint=ZAGREB.public.fingerprint,
            trust_on_first_use=False,
            same_name=None,
            same_key=None,
            same_pin=peer_record(BELGRADE, "belgrade-accu"),
        )
    assert caught.value.message == (
        f"card 'zagreb-jaitf' pins the TLS certificate of peer 'belgrade-accu' ({card.tls_pin}); "
        "a pin belongs to one peer; card not added"
    )
    assert caught.value.exit_code == 4


def test_a_card_pinning_this_nodes_own_certificate_is_refused() -> None:
    card = parse_card(card_pinning(ZAGREB, "zagreb-jaitf", STOLEN), now=None)
    with pytest.raises(TrustError) as caught:
        decide_add(
            card,
            fingerprint=None,
            trust_on_first_use=True,
            same_name=None,
            same_key=None,
            own_pin=card.tls_pin,
        )
    assert "pins this node's own TLS certificate" in caught.value.message


def test_the_same_peers_newer_card_keeps_its_own_pin() -> None:
    old = peer_record(BELGRADE, "belgrade-accu")
    newer = parse_card(
        card_pinning(BELGRADE, "belgrade-accu", STOLEN, now=NOW + 3600), now=NOW + 3600
    )
    outcome = decide_add(
        newer,
        fingerprint=BELGRADE.public.fingerprint,
        trust_on_first_use=False,
        same_name=old,
        same_key=old,
        same_pin=stored_record(BELGRADE, "belgrade-accu", old.card),
    )
    assert outcome == ("updated", "fingerprint")
