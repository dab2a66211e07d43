"""docs/vectors/keys-v1.json (made by tests/key_vectors_gen.py), checked from PROTOCOL.md 13's
rules: the node id stays the first key's, each link's signed bytes are rebuilt from the layout
alone and verify under the key it replaces, the card under the new key; a peer holding ``known``
refuses each negative ``statement`` with exactly its reason."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from keys.card import parse_card
from keys.statements import check_receipt, decide_card, parse_card_statement, parse_revocation
from protocol.errors import StatementRefused
from protocol.identity import Identity, node_id_of
from protocol.labels import REVOCATION_LABEL, ROTATION_LABEL
from tests.vectors import PROJECT_VECTORS

V = json.loads((PROJECT_VECTORS / "keys-v1.json").read_text())
NOW = V["now"]


def _verify(key_hex: str, sig_hex: str, data: bytes) -> None:
    ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex)).verify(
        bytes.fromhex(sig_hex), data
    )


def test_13_1_node_id_and_rotation_links() -> None:
    cards = [parse_card(V["cards"][k], now=NOW) for k in ("seq0", "seq1", "seq2")]
    node_id = bytes.fromhex(V["node_id"])
    assert node_id == node_id_of(cards[0].body.sign_key)
    assert [c.node_id for c in cards] == [node_id] * 3
    assert [c.seq for c in cards] == [0, 1, 2]
    for link in V["rotations"]:
        layout = (
            ROTATION_LABEL
            + node_id
            + link["seq"].to_bytes(8, "big")
            + bytes.fromhex(link["old_key"])
            + bytes.fromhex(link["new_key"])
            + link["at"].to_bytes(8, "big")
            + link["overlap_until"].to_bytes(8, "big")
        )
        assert layout.hex() == link["signed_bytes"]
        _verify(link["old_key"], link["signature"], layout)
    assert cards[2].body.sign_key.hex() == V["rotations"][1]["new_key"]
    # The certificate of a rotated node keeps its node id as CN (PROTOCOL.md 3.5).
    assert cards[2].tls_pin != cards[0].tls_pin


def test_13_3_renewal_revocation_and_receipt() -> None:
    known = parse_card(V["renewal"]["known"], now=NOW)
    renewed = parse_card_statement(V["renewal"]["statement"], now=NOW)
    assert (
        decide_card(known, renewed, known_text=V["renewal"]["known"], new_text=renewed.armored())
        == "renewed"
    )
    r = V["revocation"]
    rev = parse_revocation(r["armored"])
    assert rev.body_bytes.decode() == r["body"]
    assert (REVOCATION_LABEL + rev.body_bytes).hex() == r["signed_bytes"]
    assert json.loads(r["body"])["reason"] == "compromised"
    _verify(rev.body.key.hex(), r["signature"], bytes.fromhex(r["signed_bytes"]))
    bob = Identity.from_secret_bytes(bytes.fromhex(V["identities"]["bob"]))
    rc = V["receipt"]
    check_receipt(bob.public.sign_key, bob.node_id, rc["statement"], bytes.fromhex(rc["signature"]))
    _verify(bob.public.sign_key.hex(), rc["signature"], bytes.fromhex(rc["signed_bytes"]))


@pytest.mark.parametrize("case", V["negative"], ids=[c["desc"] for c in V["negative"]])
def test_13_6_negative_statements(case: dict[str, str]) -> None:
    known = parse_card(case["known"], now=None)
    with pytest.raises(StatementRefused) as caught:
        new = parse_card_statement(case["statement"], now=NOW)
        decide_card(known, new, known_text=case["known"], new_text=new.armored())
    assert caught.value.reason == case["reason"]


def test_the_committed_vectors_are_what_the_generator_makes() -> None:
    from tests.key_vectors_gen import build

    assert build() == V, "run 'make vectors' and commit docs/vectors/keys-v1.json"
