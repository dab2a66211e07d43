"""Parsing never crashes: random and mutated bytes into the envelope, card and armor parsers.

Every input must yield a value or one of our errors (BorderlinkError); anything else is a bug.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keys.card import parse_card
from protocol.envelope import open_envelope, seal
from protocol.errors import BorderlinkError
from protocol.schemas import encode_body, template
from tests.conftest import NOW, directory, fixed_identity
from tests.unit.keys.test_card import card_for

ALICE, BOB = fixed_identity("alice"), fixed_identity("bob")
ENVELOPE = seal(
    ALICE, [BOB.public], "seizure-alert", encode_body(template("seizure-alert")), now=NOW, ttl=3600
).encode()
CARD = card_for(ALICE).armored()
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "byte"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        elif data:
            data[pos] = draw(st.integers(0, 255))
    return bytes(data)


def _open(data: bytes) -> None:
    try:
        open_envelope(data, BOB, sender_of=directory(ALICE), now=NOW)
    except BorderlinkError:
        pass


def _card(data: bytes | str) -> None:
    try:
        parse_card(data, now=NOW)
    except BorderlinkError:
        pass


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_into_envelope_parser(data: bytes) -> None:
    _open(data)


@FUZZ
@given(mutated(ENVELOPE))
def test_mutated_envelopes(data: bytes) -> None:
    _open(data)


@FUZZ
@given(st.one_of(st.binary(max_size=2048), st.text(max_size=2048)))
def test_random_input_into_card_parser(data: bytes | str) -> None:
    _card(data)


@FUZZ
@given(mutated(CARD.encode()))
def test_mutated_cards(data: bytes) -> None:
    _card(data)
