"""Trust rules: fingerprint or explicit TOFU; a known name never silently changes key."""

from __future__ import annotations

import msgspec
import pytest

from keys.trust import PeerRecord, decide_add, require_trusted
from protocol.errors import (
    FingerprintMismatch,
    PeerKeyChanged,
    PeerRevoked,
    TrustError,
    UnknownSender,
    UsageError,
)
from tests.conftest import NOW, fixed_identity
from tests.unit.keys.test_card import card_for


def record(card, verified_by="fingerprint", status="trusted") -> PeerRecord:  # type: ignore[no-untyped-def]
    ident = card.identity
    return PeerRecord(
        name=card.name,
        node_id=ident.node_id,
        fingerprint=ident.fingerprint,
        card=card.armored(),
        verified_by=verified_by,
        status=status,
        added_at=NOW,
    )


def test_fingerprint_match_adds() -> None:
    card = card_for(fixed_identity("alice"))
    fp = card.identity.fingerprint.replace(" ", "")
    assert decide_add(
        card, fingerprint=fp, trust_on_first_use=False, same_name=None, same_key=None
    ) == ("added", "fingerprint")


def test_wrong_fingerprint_is_refused() -> None:
    card = card_for(fixed_identity("alice"))
    other = fixed_identity("mallory").public.fingerprint
    with pytest.raises(FingerprintMismatch, match="not added"):
        decide_add(card, fingerprint=other, trust_on_first_use=False, same_name=None, same_key=None)


def test_neither_or_both_verification_modes_is_a_usage_error() -> None:
    card = card_for(fixed_identity("alice"))
    with pytest.raises(UsageError):
        decide_add(card, fingerprint=None, trust_on_first_use=False, same_name=None, same_key=None)
    with pytest.raises(UsageError):
        decide_add(
            card,
            fingerprint=card.identity.fingerprint,
            trust_on_first_use=True,
            same_name=None,
            same_key=None,
        )


def test_changed_key_for_known_name_is_a_change_the_caller_must_block_or_verify() -> None:
    """Another key under a known name is never an update: decide_add says "changed", with the
    method, so node/peers.py blocks the peer (TOFU) or accepts a fingerprint compared out of
    band; a revoked name is refused outright."""
    old = card_for(fixed_identity("alice"))
    new = card_for(fixed_identity("mallory"))  # same name "bar-pcu", another key
    tofu = decide_add(
        new, fingerprint=None, trust_on_first_use=True, same_name=record(old), same_key=None
    )
    assert tofu == ("changed", "tofu")
    verified = decide_add(
        new,
        fingerprint=new.identity.fingerprint,
        trust_on_first_use=False,
        same_name=record(old),
        same_key=None,
    )
    assert verified == ("changed", "fingerprint")
    revoked = msgspec.structs.replace(record(old), status="revoked")
    with pytest.raises(PeerRevoked):
        decide_add(new, fingerprint=None, trust_on_first_use=True, same_name=revoked, same_key=None)


def test_same_key_under_a_second_name_is_refused() -> None:
    first = card_for(fixed_identity("alice"), name="bar-pcu")
    second = card_for(fixed_identity("alice"), name="bar-pcu-2")
    with pytest.raises(PeerKeyChanged, match="second name"):
        decide_add(
            second,
            fingerprint=None,
            trust_on_first_use=True,
            same_name=None,
            same_key=record(first),
        )


def test_revoked_peer_cannot_be_readded() -> None:
    card = card_for(fixed_identity("alice"))
    with pytest.raises(PeerRevoked):
        decide_add(
            card,
            fingerprint=card.identity.fingerprint,
            trust_on_first_use=False,
            same_name=record(card, status="revoked"),
            same_key=record(card, status="revoked"),
        )


def test_readding_same_card_is_unchanged_and_keeps_stronger_verification() -> None:
    card = card_for(fixed_identity("alice"))
    rec = record(card, verified_by="fingerprint")
    assert decide_add(
        card, fingerprint=None, trust_on_first_use=True, same_name=rec, same_key=rec
    ) == ("unchanged", "fingerprint")
    newer = card_for(
        fixed_identity("alice"), endpoints=["http://127.0.0.1:9000"], valid_from=NOW + 60
    )
    tofu = record(card, verified_by="tofu")
    assert decide_add(
        newer,
        fingerprint=newer.identity.fingerprint,
        trust_on_first_use=False,
        same_name=tofu,
        same_key=tofu,
    ) == ("updated", "fingerprint")


def test_regression_older_card_does_not_replace_a_newer_one() -> None:
    """A stale card, still validly signed by the peer's key, must not repoint its endpoints."""
    alice = fixed_identity("alice")
    current = card_for(alice, endpoints=["http://127.0.0.1:9000"], valid_from=NOW + 60)
    stale = card_for(alice, endpoints=["http://10.0.0.1:7443"], valid_from=NOW)
    same_age = card_for(alice, endpoints=["http://10.0.0.1:7443"], valid_from=NOW + 60)
    rec = record(current, verified_by="fingerprint")
    for old in (stale, same_age):
        for fp, tofu in ((None, True), (alice.public.fingerprint, False)):
            with pytest.raises(TrustError, match="not newer than the one already trusted") as exc:
                decide_add(
                    old, fingerprint=fp, trust_on_first_use=tofu, same_name=rec, same_key=rec
                )
            assert "valid from 2026-09-21 " in exc.value.message
            assert exc.value.message.endswith("; not updated")
    # a newer card by TOFU: the key is the one already verified by fingerprint, which stays recorded
    newest = card_for(alice, endpoints=["http://127.0.0.1:9001"], valid_from=NOW + 120)
    assert decide_add(
        newest, fingerprint=None, trust_on_first_use=True, same_name=rec, same_key=rec
    ) == ("updated", "fingerprint")


def test_require_trusted() -> None:
    card = card_for(fixed_identity("alice"))
    with pytest.raises(UnknownSender):
        require_trusted(None, card.identity.node_id)
    with pytest.raises(PeerRevoked):
        require_trusted(record(card, status="revoked"), card.identity.node_id)
    assert require_trusted(record(card), card.identity.node_id).name == "bar-pcu"
