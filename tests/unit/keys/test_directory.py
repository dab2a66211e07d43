"""Signed directories (PROTOCOL.md 13.8): round trip, forgery and tamper, validity, structure, and
the decisions before an import: which signer may introduce units, which sequence number."""

from __future__ import annotations

import base64

import msgspec
import pytest

from keys.card import Card
from keys.directory import (
    MAX_DIRECTORY_CARDS,
    Directory,
    DirectoryBody,
    check_coordinator,
    check_sequence,
    make_directory,
    parse_directory,
    signed_bytes,
    verify_directory,
)
from keys.trust import PeerRecord
from protocol.armor import armor
from protocol.errors import StatementRefused, ValidationError
from protocol.identity import Identity
from protocol.labels import DIRECTORY_LABEL
from tests.conftest import NOW, fixed_identity
from tests.unit.keys.test_card import card_for

DAY = 86400
COORD = fixed_identity("coordinator")


def coord_card(ident: Identity = COORD, unit_type: str = "coordinator") -> Card:
    return card_for(ident, "skopje-coord", unit_type=unit_type, country="MK", location="MKSKP")


def units() -> list[Card]:
    return [
        card_for(fixed_identity("bel"), "belgrade-accu", country="RS", location="RSBEG"),
        card_for(fixed_identity("zag"), "zagreb-jaitf", country="HR", location="HRZAG"),
    ]


def directory(seq: int = 1, ident: Identity = COORD, **over: int) -> Directory:
    args = {"seq": seq, "issued_at": NOW, "valid_until": NOW + 30 * DAY}
    args.update(over)
    return make_directory(ident, units(), **args)


def reason(exc: pytest.ExceptionInfo[StatementRefused]) -> str:
    return exc.value.reason


def peer(card: Card, verified_by: str = "fingerprint", status: str = "trusted") -> PeerRecord:
    return PeerRecord(
        name=card.name,
        node_id=card.node_id,
        fingerprint=card.identity.fingerprint,
        card=card.armored(),
        verified_by=verified_by,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        added_at=NOW,
    )


def resigned(body: dict[str, object], ident: Identity = COORD) -> str:
    """A body of our own making, signed properly: the structure is what is tested."""
    body_bytes = msgspec.json.encode(body)
    return armor("DIRECTORY", [body_bytes, ident.sign(DIRECTORY_LABEL + body_bytes)])


def good_body(**over: object) -> dict[str, object]:
    body: dict[str, object] = msgspec.to_builtins(directory().body)
    body.update(over)
    return body


def test_round_trip() -> None:
    d = directory()
    parsed = parse_directory(d.armored(), now=NOW + 10)
    assert parsed == d
    assert parsed.coordinator == COORD.node_id and parsed.seq == 1
    assert parsed.body.cards == [c.armored() for c in units()]
    verify_directory(parsed, coord_card())


def test_body_is_the_documented_json_and_signature_input() -> None:
    """docs/directory-section.md: members in this order, no white space, the label first."""
    d = directory()
    body = d.body_bytes
    assert body.startswith(b'{"format":"borderlink-directory","version":1,"coordinator":"')
    keys = list(msgspec.json.decode(body))
    assert keys == ["format", "version", "coordinator", "seq", "issued_at", "valid_until", "cards"]
    coordinator = base64.b64encode(COORD.node_id).decode()
    assert f'"coordinator":"{coordinator}"'.encode() in body
    assert signed_bytes(body) == b"borderlink/1 directory\n" + body
    COORD.public.verifier().verify(d.signature, b"borderlink/1 directory\n" + body)
    lines = d.armored().splitlines()
    assert lines[0] == "-----BEGIN BORDERLINK DIRECTORY-----"
    assert lines[-1] == "-----END BORDERLINK DIRECTORY-----"
    assert lines[-2].startswith("=")


def test_signed_by_another_key_is_bad_signature() -> None:
    """Mallory copies the coordinator's body and signs it himself."""
    d = directory()
    forged = armor(
        "DIRECTORY", [d.body_bytes, fixed_identity("mallory").sign(signed_bytes(d.body_bytes))]
    )
    parsed = parse_directory(forged, now=NOW)  # the structure is fine: no key here
    with pytest.raises(StatementRefused) as exc:
        verify_directory(parsed, coord_card())
    assert reason(exc) == "bad_signature" and exc.value.peer == "skopje-coord"


def test_a_directory_of_another_node_is_not_this_coordinators() -> None:
    mallory = fixed_identity("mallory")
    with pytest.raises(StatementRefused) as exc:
        verify_directory(directory(ident=mallory), coord_card())
    assert reason(exc) == "unknown_coordinator"


def test_every_flipped_character_is_refused() -> None:
    text = directory().armored()
    start, end = text.index("\n") + 1, text.index("-----END")
    step = max(1, (end - start) // 400)  # a few hundred positions across body and signature
    for i in range(start, end, step):
        if text[i] in "\n=":
            continue
        tampered = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]
        with pytest.raises(StatementRefused) as exc:
            verify_directory(parse_directory(tampered, now=NOW), coord_card())
        assert reason(exc) in ("malformed", "bad_signature")


def test_a_card_added_to_a_signed_directory_breaks_its_signature() -> None:
    d = directory()
    body = msgspec.to_builtins(d.body)
    body["cards"].append(card_for(fixed_identity("mallory"), "mallory").armored())
    tampered = armor("DIRECTORY", [msgspec.json.encode(body), d.signature])
    with pytest.raises(StatementRefused) as exc:
        verify_directory(parse_directory(tampered, now=NOW), coord_card())
    assert reason(exc) == "bad_signature"


def test_expired() -> None:
    d = directory()
    parse_directory(d.armored(), now=NOW + 30 * DAY - 1)
    for now in (NOW + 30 * DAY, NOW + 31 * DAY):
        with pytest.raises(StatementRefused) as exc:
            parse_directory(d.armored(), now=now)
        assert reason(exc) == "expired" and "expired on" in exc.value.message
    parse_directory(d.armored(), now=None)  # a stored one is not checked against the clock


def test_issued_in_the_future_is_malformed() -> None:
    d = directory(issued_at=NOW + 3600, valid_until=NOW + 30 * DAY)
    parse_directory(d.armored(), now=NOW + 3600 - 300)  # within the clock skew
    with pytest.raises(StatementRefused) as exc:
        parse_directory(d.armored(), now=NOW)
    assert reason(exc) == "malformed" and "in the future" in exc.value.message


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"format": "borderlink-card"}, "format"),
        ({"version": 2}, "version"),
        ({"seq": 0}, "seq"),
        ({"coordinator": base64.b64encode(b"x" * 31).decode()}, "coordinator"),
        ({"valid_until": NOW}, "valid_until"),
        ({"extra": 1}, "extra"),
        ({"cards": "not a list"}, "cards"),
        ({"cards": ["x" * 20000]}, "cards"),
    ],
)
def test_structure_is_checked(over: dict[str, object], words: str) -> None:
    with pytest.raises(StatementRefused) as exc:
        parse_directory(resigned(good_body(**over)), now=NOW)
    assert reason(exc) == "malformed" and words in exc.value.message


def test_at_most_500_cards() -> None:
    card = units()[0].armored()
    parse_directory(resigned(good_body(cards=[card] * MAX_DIRECTORY_CARDS)), now=NOW)
    with pytest.raises(StatementRefused) as exc:
        parse_directory(resigned(good_body(cards=[card] * (MAX_DIRECTORY_CARDS + 1))), now=NOW)
    assert reason(exc) == "malformed"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        directory().armored().replace("DIRECTORY", "CARD"),
        directory().armored().replace("\n=", "\n=AAAA\n="),  # two signature lines
        armor("DIRECTORY", [b"{}"]),  # no signature
        armor("DIRECTORY", [directory().body_bytes, b"short"]),
    ],
)
def test_not_a_directory_is_malformed(text: str) -> None:
    with pytest.raises(StatementRefused) as exc:
        parse_directory(text, now=NOW)
    assert reason(exc) == "malformed"


def test_too_large_is_malformed() -> None:
    with pytest.raises(StatementRefused) as exc:
        parse_directory("A" * (1024 * 1024 + 1), now=NOW)
    assert reason(exc) == "malformed" and "larger than" in exc.value.message


def test_only_a_verified_trusted_coordinator_introduces() -> None:
    card = coord_card()
    check_coordinator(peer(card), card)
    cases = [
        (None, None, "unknown_coordinator"),
        (peer(card, status="revoked"), card, "unknown_coordinator"),
        (peer(card, status="blocked"), card, "unknown_coordinator"),
        (peer(card, verified_by="tofu"), card, "not_a_coordinator"),
        (peer(card, verified_by="introduced"), card, "not_a_coordinator"),
    ]
    pcu = coord_card(fixed_identity("pcu"), unit_type="PCU")
    cases.append((peer(pcu), pcu, "not_a_coordinator"))
    for rec, c, why in cases:
        with pytest.raises(StatementRefused) as exc:
            check_coordinator(rec, c)
        assert reason(exc) == why, (rec, why)


def test_a_tofu_coordinator_is_told_how_to_verify() -> None:
    card = coord_card()
    with pytest.raises(StatementRefused) as exc:
        check_coordinator(peer(card, verified_by="tofu"), card)
    assert "trusted on first use" in exc.value.message
    assert exc.value.hint is not None and "peers verify skopje-coord" in exc.value.hint


def test_rollback_decision() -> None:
    check_sequence(directory(seq=1), None, name="skopje-coord")  # the first one
    check_sequence(directory(seq=5), 4, name="skopje-coord")
    check_sequence(directory(seq=9), 4, name="skopje-coord")  # numbers may be skipped
    for seq, last in ((4, 4), (3, 4), (1, 7)):
        with pytest.raises(StatementRefused) as exc:
            check_sequence(directory(seq=seq), last, name="skopje-coord")
        assert reason(exc) == "directory_rollback"
        assert f"seq {seq}" in exc.value.message and f"seq {last}" in exc.value.message


def test_make_directory_keeps_to_the_limits() -> None:
    with pytest.raises(ValidationError, match="seq"):
        make_directory(COORD, units(), seq=0, issued_at=NOW, valid_until=NOW + DAY)
    with pytest.raises(StatementRefused):
        make_directory(COORD, units(), seq=1, issued_at=NOW, valid_until=NOW)


def test_body_type_is_strict() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"coordinator":"","seq":1}', type=DirectoryBody)
