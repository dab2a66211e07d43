"""Contact cards: round trip, tamper and forgery attacks, field rules, validity window."""

from __future__ import annotations

import base64

import msgspec
import pytest

from keys.card import Card, check_valid_at, make_card, parse_card
from protocol.armor import armor
from protocol.errors import BadSignature, Expired, Malformed, ValidationError
from protocol.identity import Identity
from protocol.labels import CARD_SIGNATURE_LABEL
from tests.conftest import NOW, fixed_identity

YEAR = 365 * 86400


def card_for(ident: Identity, name: str = "bar-pcu", **over: object) -> Card:
    args: dict[str, object] = {
        "name": name,
        "unit_type": "PCU",
        "country": "ME",
        "location": "MEBAR",
        "endpoints": ["http://127.0.0.1:7443"],
        "valid_from": NOW,
        "valid_until": NOW + YEAR,
    }
    args.update(over)
    return make_card(ident, **args)  # type: ignore[arg-type]


def test_round_trip() -> None:
    card = card_for(fixed_identity("alice"))
    parsed = parse_card(card.armored(), now=NOW + 10)
    assert parsed == card
    assert parsed.identity == fixed_identity("alice").public


def test_every_flipped_byte_of_the_armored_card_is_rejected() -> None:
    text = card_for(fixed_identity("alice")).armored()
    body_start = text.index("\n") + 1
    end = text.index("-----END")
    for i in range(body_start, end):
        if text[i] in "\n=":
            continue
        ch = "A" if text[i] != "A" else "B"
        tampered = text[:i] + ch + text[i + 1 :]
        with pytest.raises((Malformed, BadSignature)):
            parse_card(tampered, now=NOW)


def test_card_resigned_by_another_key_is_a_forgery() -> None:
    """Mallory copies Alice's card body (her keys, her name) and signs it with his own key."""
    alice_card = card_for(fixed_identity("alice"))
    forged_sig = fixed_identity("mallory").sign(CARD_SIGNATURE_LABEL + alice_card.body_bytes)
    forged = armor("CARD", [alice_card.body_bytes, forged_sig])
    with pytest.raises(BadSignature):
        parse_card(forged, now=NOW)


def test_swapped_encryption_key_breaks_the_signature() -> None:
    alice_card = card_for(fixed_identity("alice"))
    body = msgspec.json.decode(alice_card.body_bytes)
    body["enc_key"] = base64.b64encode(fixed_identity("mallory").public.enc_key).decode()
    tampered = armor("CARD", [msgspec.json.encode(body), alice_card.signature])
    with pytest.raises(BadSignature):
        parse_card(tampered, now=NOW)


def test_low_order_encryption_key_in_a_signed_card_is_refused() -> None:
    ident = fixed_identity("alice")
    card = card_for(ident)
    body = msgspec.json.decode(card.body_bytes)
    body["enc_key"] = base64.b64encode(bytes(32)).decode()
    raw = msgspec.json.encode(body)
    text = armor("CARD", [raw, ident.sign(CARD_SIGNATURE_LABEL + raw)])
    with pytest.raises(Malformed, match="low-order"):
        parse_card(text, now=NOW)


def test_expired_card_is_refused() -> None:
    card = card_for(fixed_identity("alice"))
    with pytest.raises(Expired, match="expired"):
        parse_card(card.armored(), now=NOW + YEAR)


def test_a_parsed_card_is_checked_again_for_its_time_alone() -> None:
    """What the running node does with its own card (parsed once, the time at each call): the
    same refusals as a full parse at that time, the last second of validity still valid."""
    card = parse_card(card_for(fixed_identity("alice")).armored(), now=None)
    check_valid_at(card, NOW + YEAR - 1)
    check_valid_at(card, NOW - 300)
    with pytest.raises(Expired, match="expired"):
        check_valid_at(card, NOW + YEAR)
    with pytest.raises(Malformed, match="not valid yet"):
        check_valid_at(card, NOW - 301)


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("name", "Bar PCU", "name"),
        ("country", "XX", "country"),
        ("location", "RSBEG", "location"),
        ("endpoints", ["ftp://x"], "endpoints[0]"),
        ("unit_type", "army", "unit_type"),
    ],
)
def test_invalid_fields_name_the_path(field: str, value: object, path: str) -> None:
    with pytest.raises(ValidationError) as err:
        card_for(fixed_identity("alice"), **{field: value})
    assert err.value.path == path


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "-----BEGIN BORDERLINK CARD-----\n!!!\n-----END BORDERLINK CARD-----\n",
        "-----BEGIN BORDERLINK CARD-----\nAAAA\n-----END BORDERLINK CARD-----\n",
        "x" * 100_000,
    ],
)
def test_garbage_is_malformed(text: str) -> None:
    with pytest.raises(Malformed):
        parse_card(text, now=NOW)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "bar-pcu\n"),
        ("country", "ME\n"),
        ("location", "MEBAR\n"),
        ("endpoints", ["http://127.0.0.1:7443\n"]),
    ],
)
def test_regression_trailing_newline_in_card_fields(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        card_for(fixed_identity("alice"), **{field: value})
