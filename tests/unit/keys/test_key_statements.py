"""Key statements as attacks (PROTOCOL.md 13): each forged, replayed or out-of-order rotation,
renewal or revocation is refused with its own reason; a peer that applies them stores nothing
when it refuses and audits every refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from keys.card import Card, CardBody, Rotation, make_card, parse_card, rotation_signed_bytes
from keys.keyring import Keyring, decode_keyring, encode_keyring
from keys.statements import (
    decide_card,
    make_revocation,
    parse_revocation,
    revocation_effect,
    split_certificate,
)
from keys.trust import PeerRecord
from node.keychange import apply_statement
from node.storage.sqlite import open_store
from protocol.errors import BadSignature, StatementRefused
from protocol.identity import Identity, node_id_of
from tests.conftest import NOW, fixed_identity
from tests.peering import rotated_card
from tests.unit.keys.test_card import YEAR, card_for

DAY = 86400


def _ring(ident: Identity) -> Keyring:
    return decode_keyring(ident.secret_bytes())


def _rotated(card: Card, ring: Keyring, *, at: int, overlap: int = 7 * DAY) -> tuple[Card, Keyring]:
    return rotated_card(card, ring, at=at, overlap=overlap)


def _renewed(card: Card, ident: Identity, *, seq: int, until: int) -> Card:
    body = card.body
    return make_card(
        ident,
        name=body.name,
        unit_type=body.unit_type,
        country=body.country,
        location=body.location,
        endpoints=list(body.endpoints),
        valid_from=NOW + 10,
        valid_until=until,
        seq=seq,
        rotations=list(body.rotations),
    )


@pytest.fixture
def chain() -> tuple[Card, Card, Card]:
    """A node's card at seq 0, after one rotation, after two."""
    alice = fixed_identity("alice")
    c0 = card_for(alice)
    c1, r1 = _rotated(c0, _ring(alice), at=NOW + 100)
    c2, _ = _rotated(c1, r1, at=NOW + 200)
    return c0, c1, c2


def _decide(known: Card, new: Card) -> str:
    return decide_card(known, new, known_text=known.armored(), new_text=new.armored())


def test_13_1_the_node_id_stays_through_rotations(chain: tuple[Card, Card, Card]) -> None:
    c0, c1, c2 = chain
    assert c0.node_id == c1.node_id == c2.node_id == node_id_of(c0.body.sign_key)
    assert c2.identity.node_id == c0.node_id and c2.identity.sign_key != c0.body.sign_key
    assert parse_card(c2.armored(), now=NOW + 300) == c2  # the chain checks from the card alone
    assert _decide(c0, c1) == "rotated" and _decide(c1, c2) == "rotated"
    assert _decide(c1, c1) == "unchanged"


def test_13_6_a_skipped_reused_or_older_sequence_is_refused(
    chain: tuple[Card, Card, Card],
) -> None:
    c0, c1, c2 = chain
    for known, new, reason in (
        (c0, c2, "sequence_skipped"),  # seq 2 on top of 0: the peer missed one
        (c2, c1, "sequence_older"),
        (c2, c0, "sequence_older"),
    ):
        with pytest.raises(StatementRefused) as caught:
            _decide(known, new)
        assert caught.value.reason == reason
    # Another card under a sequence number already used: a second rotation from the same key.
    other, _ = _rotated(c0, _ring(fixed_identity("alice")), at=NOW + 150)
    assert other.seq == c1.seq and other.armored() != c1.armored()
    with pytest.raises(StatementRefused) as caught:
        _decide(c1, other)
    assert caught.value.reason == "sequence_reused"


def test_13_1_a_rotation_signed_only_by_the_new_key_is_refused() -> None:
    """The link must be signed by the key it replaces: here the new key signed it itself."""
    alice, thief = fixed_identity("alice"), Identity.generate()
    c0 = card_for(alice)
    link = Rotation(
        seq=1,
        old_key=alice.public.sign_key,
        new_key=thief.public.sign_key,
        at=NOW + 1,
        overlap_until=NOW + DAY,
        signature=b"",
    )
    forged = msgspec.structs.replace(
        link, signature=thief.sign(rotation_signed_bytes(c0.node_id, link))
    )
    with pytest.raises(BadSignature, match="not signed by the key it replaces"):
        make_card(
            Identity(thief._sign, thief._enc, node_id=c0.node_id),
            name="bar-pcu",
            unit_type="PCU",
            country="ME",
            location="MEBAR",
            endpoints=[],
            valid_from=NOW + 1,
            valid_until=NOW + YEAR,
            seq=1,
            rotations=[forged],
        )


def test_13_1_a_rotation_signed_only_by_the_old_key_is_refused() -> None:
    """The card carrying the link must be signed by the new key: the old key alone (a thief
    holding it, or a replay of its link on a card it signed) does not make a rotation."""
    alice = fixed_identity("alice")
    c0 = card_for(alice)
    c1, _ = _rotated(c0, _ring(alice), at=NOW + 100)
    # Re-sign c1's exact body with the old key: the link is genuine, the card signature is not.
    from protocol.armor import armor
    from protocol.labels import CARD_SIGNATURE_LABEL

    forged = armor("CARD", [c1.body_bytes, alice.sign(CARD_SIGNATURE_LABEL + c1.body_bytes)])
    with pytest.raises(BadSignature, match="not signed by its own key"):
        parse_card(forged, now=NOW + 200)


def test_13_3_a_renewal_keeps_the_keys_and_must_end_later() -> None:
    alice = fixed_identity("alice")
    c0 = card_for(alice)
    assert _decide(c0, _renewed(c0, alice, seq=1, until=NOW + 2 * YEAR)) == "renewed"
    with pytest.raises(StatementRefused) as caught:
        _decide(c0, _renewed(c0, alice, seq=1, until=NOW + YEAR))
    assert caught.value.reason == "not_later"


def test_13_6_a_key_change_keeps_the_unit_it_is_for() -> None:
    """A stolen key must not turn a port unit into a coordinator (whose directories introduce
    units) or rename it: a renewal or rotation changing who the unit is is not a key change."""
    alice = fixed_identity("alice")
    c0 = card_for(alice)
    for field, value in (("unit_type", "coordinator"), ("name", "bar-hq"), ("location", "MEKOT")):
        body = msgspec.structs.replace(
            _renewed(c0, alice, seq=1, until=NOW + 2 * YEAR).body, **{field: value}
        )
        changed = make_card(alice, **_card_args(body))
        with pytest.raises(StatementRefused) as caught:
            _decide(c0, changed)
        assert caught.value.reason == "not_a_rotation" and field in caught.value.message
        rotated, ring = _rotated(c0, _ring(alice), at=NOW + 100)
        moved = make_card(
            ring.identity(), **_card_args(msgspec.structs.replace(rotated.body, **{field: value}))
        )
        with pytest.raises(StatementRefused) as caught:
            _decide(c0, moved)
        assert caught.value.reason == "not_a_rotation" and field in caught.value.message


def test_13_1_a_rotation_dated_before_the_card_it_replaces_is_refused() -> None:
    """A backdated link would pass for a handover made before the old key was compromised."""
    alice = fixed_identity("alice")
    c0 = card_for(alice, valid_from=NOW + 1000)
    backdated, _ = _rotated(c0, _ring(alice), at=NOW + 999)
    with pytest.raises(StatementRefused) as caught:
        _decide(c0, backdated)
    assert caught.value.reason == "not_a_rotation" and "dated" in caught.value.message
    assert _decide(c0, _rotated(c0, _ring(alice), at=NOW + 1000)[0]) == "rotated"


def test_13_6_a_thief_dating_its_rotation_early_is_judged_by_when_it_arrived(
    tmp_path: Path,
) -> None:
    """The holder of a stolen key rotates to its own key and dates the link early; the owner
    then revokes the stolen key as compromised since a time after that date but before the
    rotation reached the peer. The peer counts when it applied the link: the whole node is
    revoked, not just the stolen key (which would leave the thief's key trusted)."""
    alice = fixed_identity("alice")
    c0 = card_for(alice)
    stolen, _ = _rotated(c0, _ring(alice), at=NOW + 100)
    me = fixed_identity("bob")
    store = _peer_store(tmp_path, c0)
    applied_at = NOW + 10_000
    assert apply_statement(store, me, stolen.armored(), now=applied_at, source="x").outcome == (
        "applied"
    )
    assert store.rotations_applied(c0.node_id) == {1: applied_at}
    rev = make_revocation(alice, reason="compromised", issued_at=NOW + 20_000, since=NOW + 5000)
    assert revocation_effect(stolen, rev) == "old_key"  # by the link's own date alone
    apply_statement(store, me, rev.armored(), now=NOW + 20_000, source="x")
    rec = store.peer_by_name("bar-pcu")
    assert rec is not None and (rec.status, rec.revoke_reason) == ("revoked", "compromised")
    store.close()


def _card_args(body: CardBody) -> dict[str, Any]:
    fields = ("name", "unit_type", "country", "location", "valid_from", "valid_until", "seq")
    return {
        **{f: getattr(body, f) for f in fields},
        "endpoints": list(body.endpoints),
        "rotations": list(body.rotations),
    }


def test_13_3_revocations(chain: tuple[Card, Card, Card]) -> None:
    c0, _c1, c2 = chain
    alice = fixed_identity("alice")
    current = make_revocation(alice, reason="retired", issued_at=NOW)
    assert parse_revocation(current.armored()) == current
    assert revocation_effect(c0, current) == "node"
    # The first key, compromised since before it handed over: the rotations it signed are no
    # proof, so the whole node is revoked; retired after it handed over, only it stops.
    early = make_revocation(alice, reason="compromised", issued_at=NOW, since=NOW)
    assert revocation_effect(c2, early) == "node"
    late = make_revocation(alice, reason="compromised", issued_at=NOW, since=NOW + 150)
    assert revocation_effect(c2, late) == "old_key"
    stranger = make_revocation(Identity.generate(), reason="retired", issued_at=NOW)
    with pytest.raises(StatementRefused) as caught:
        revocation_effect(c2, stranger)
    assert caught.value.reason == "unknown_node"
    from protocol.armor import armor

    body = current.body_bytes.replace(b'"retired"', b'"superseded"')
    with pytest.raises(BadSignature, match="not signed by the key it revokes"):
        parse_revocation(armor("REVOCATION", [body, current.signature]))


def test_the_revocation_certificate_file_holds_one_per_reason() -> None:
    alice = fixed_identity("alice")
    revs = [
        make_revocation(alice, reason=r, issued_at=NOW, since=NOW).armored()
        for r in ("superseded", "compromised", "retired")
    ]
    text = "Revocation certificate of ...\nkeep it away\n\n" + "\n".join(revs)
    by_reason = split_certificate(text)
    assert sorted(by_reason) == ["compromised", "retired", "superseded"]
    assert by_reason["retired"].body.since is None  # only compromised states a time


def test_the_keyring_round_trips_and_a_never_rotated_one_stays_64_bytes() -> None:
    alice = fixed_identity("alice")
    ring = _ring(alice)
    assert encode_keyring(ring) == alice.secret_bytes()
    _c1, r1 = _rotated(card_for(alice), ring, at=NOW, overlap=DAY)
    again = decode_keyring(encode_keyring(r1))
    assert again == r1 and again.identity().node_id == alice.node_id
    # The old decryption key opens in the overlap only.
    assert len(again.identity().decryption_keys(NOW + DAY - 1)) == 2
    assert len(again.identity().decryption_keys(NOW + DAY)) == 1


# -- a peer applying them: refused means nothing stored, and audited ------------------------------


def _peer_store(tmp_path: Path, card: Card):  # type: ignore[no-untyped-def]
    store = open_store(tmp_path / "node.db")
    with store.unit(NOW) as u:
        u.put_peer(
            PeerRecord(
                name=card.name,
                node_id=card.node_id,
                fingerprint=card.identity.fingerprint,
                card=card.armored(),
                verified_by="fingerprint",
                added_at=NOW,
            )
        )
    return store


def test_13_6_a_peer_refuses_out_of_order_statements_stores_nothing_and_audits_each(
    tmp_path: Path, chain: tuple[Card, Card, Card]
) -> None:
    c0, c1, c2 = chain
    me = fixed_identity("bob")
    store = _peer_store(tmp_path, c0)
    with pytest.raises(StatementRefused) as caught:
        apply_statement(store, me, c2.armored(), now=NOW + 300, source="127.0.0.2")
    assert caught.value.reason == "sequence_skipped"
    rec = store.peer_by_name("bar-pcu")
    assert rec is not None and rec.card == c0.armored()  # nothing changed
    refused = [r for r in store.audit_rows() if b'"key.refused"' in r.entry]
    assert len(refused) == 1 and b"sequence_skipped" in refused[0].entry
    assert store.key_events(5)[0].outcome == "sequence_skipped"
    # In order, both apply; the same statement again is answered, not applied twice.
    assert apply_statement(store, me, c1.armored(), now=NOW + 300, source="x").outcome == "applied"
    assert apply_statement(store, me, c2.armored(), now=NOW + 300, source="x").outcome == "applied"
    again = apply_statement(store, me, c2.armored(), now=NOW + 300, source="x")
    assert again.outcome == "unchanged"
    rec = store.peer_by_name("bar-pcu")
    assert rec is not None and rec.fingerprint == c2.identity.fingerprint
    assert rec.verified_by == "fingerprint"
    with pytest.raises(StatementRefused) as caught:  # a replay of the first rotation
        apply_statement(store, me, c1.armored(), now=NOW + 300, source="x")
    assert caught.value.reason == "sequence_older"
    store.close()


def test_13_6_a_statement_for_an_unknown_node_or_a_revoked_peer_is_refused(
    tmp_path: Path, chain: tuple[Card, Card, Card]
) -> None:
    c0, c1, _ = chain
    me = fixed_identity("bob")
    store = _peer_store(tmp_path, card_for(fixed_identity("carol"), name="carol-pcu"))
    with pytest.raises(StatementRefused) as caught:
        apply_statement(store, me, c1.armored(), now=NOW + 300, source="x")
    assert caught.value.reason == "unknown_node"
    refused = [r for r in store.audit_rows() if b'"key.refused"' in r.entry]
    assert len(refused) == 1 and b'"anonymous"' in refused[0].entry
    assert store.key_events(5) == []  # status lists what known peers' keys did, not junk
    store.close()
    (tmp_path / "b").mkdir()
    store = _peer_store(tmp_path / "b", c0)
    alice = fixed_identity("alice")
    rev = make_revocation(alice, reason="retired", issued_at=NOW)
    assert apply_statement(store, me, rev.armored(), now=NOW + 1, source="x").outcome == "applied"
    rec = store.peer_by_name("bar-pcu")
    assert rec is not None and (rec.status, rec.revoke_reason) == ("revoked", "retired")
    with pytest.raises(StatementRefused) as caught:  # a rotation signed by the revoked key
        apply_statement(store, me, c1.armored(), now=NOW + 300, source="x")
    assert caught.value.reason == "revoked"
    store.close()
