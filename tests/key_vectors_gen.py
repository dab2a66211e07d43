"""Generate the key-lifecycle vectors: ``python -m tests.key_vectors_gen`` (``make vectors``).

Writes docs/vectors/keys-v1.json (PROTOCOL.md 13): a node's card before and after two rotations
and a renewal, each rotation link with its exact signed bytes, a revocation, a key-statement
receipt, and negative cases: a card a peer holds, a statement it is sent, and the reason it must
refuse it with. Ed25519 is deterministic and every time is fixed, so every byte recomputes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from keys.card import Card, CardBody, Rotation, make_card, rotation_signed_bytes
from keys.keyring import decode_keyring, rotate
from keys.statements import make_revocation, receipt_signed_bytes, sign_receipt
from keys.tls import make_certificate
from protocol.armor import armor
from protocol.identity import Identity
from protocol.labels import CARD_SIGNATURE_LABEL, REVOCATION_LABEL
from tests.conftest import NOW, fixed_identity

OUT = Path(__file__).resolve().parent.parent / "docs" / "vectors" / "keys-v1.json"
DAY = 86400
YEAR = 365 * DAY


def _card(
    ident: Identity,
    *,
    at: int,
    until: int,
    seq: int,
    rotations: list[Rotation],
    cert: bytes | None = None,
) -> Card:
    return make_card(
        ident,
        name="bar-pcu",
        unit_type="PCU",
        country="ME",
        location="MEBAR",
        endpoints=["https://127.0.0.1:7443"],
        valid_from=at,
        valid_until=until,
        tls_cert=cert or make_certificate(ident, now=at),
        seq=seq,
        rotations=rotations,
    )


def _rotated(card: Card, secret: bytes, new: Identity, at: int) -> tuple[Card, bytes, Rotation]:
    ring = decode_keyring(secret)
    ring = msgspec.structs.replace(ring, node_id=card.node_id)
    new_ring, link = rotate(ring, card, new, now=at, overlap=7 * DAY)
    ident = new_ring.identity()
    out = _card(
        ident,
        at=at,
        until=card.body.valid_until,
        seq=link.seq,
        rotations=[*card.body.rotations, link],
    )
    return out, new_ring.current, link


def _forged(body: CardBody, signer: Identity) -> str:
    """A card whose body no honest node would sign: built and signed by hand."""
    data = msgspec.json.encode(body)
    return armor("CARD", [data, signer.sign(CARD_SIGNATURE_LABEL + data)])


def _link(node_id: bytes, link: Rotation) -> dict[str, Any]:
    return {
        "seq": link.seq,
        "old_key": link.old_key.hex(),
        "new_key": link.new_key.hex(),
        "at": link.at,
        "overlap_until": link.overlap_until,
        "signed_bytes": rotation_signed_bytes(node_id, link).hex(),
        "signature": link.signature.hex(),
    }


def build() -> dict[str, Any]:
    alice, dave, erin, bob = (fixed_identity(n) for n in ("alice", "dave", "erin", "bob"))
    c0 = _card(alice, at=NOW, until=NOW + YEAR, seq=0, rotations=[])
    c1, s1, l1 = _rotated(c0, alice.secret_bytes(), dave, NOW + DAY)
    c2, _, l2 = _rotated(c1, s1, erin, NOW + 2 * DAY)
    dave_now = Identity.from_secret_bytes(s1, node_id=c0.node_id)
    renewed = _card(
        dave_now,
        at=NOW + 3 * DAY,
        until=NOW + 2 * YEAR,
        seq=2,
        rotations=[l1],
        cert=c1.body.tls_cert,
    )
    revocation = make_revocation(alice, reason="compromised", issued_at=NOW + 5, since=NOW)
    # Negative cases.
    other, _, _ = _rotated(c0, alice.secret_bytes(), erin, NOW + DAY)  # a second seq 1
    by_new = msgspec.structs.replace(
        msgspec.structs.replace(l1, signature=b""),
        signature=dave.sign(
            rotation_signed_bytes(c0.node_id, msgspec.structs.replace(l1, signature=b""))
        ),
    )
    link_by_new = _forged(msgspec.structs.replace(c1.body, rotations=[by_new]), dave_now)
    card_by_old = armor("CARD", [c1.body_bytes, alice.sign(CARD_SIGNATURE_LABEL + c1.body_bytes)])
    not_later = _card(
        alice, at=NOW + 3 * DAY, until=NOW + YEAR, seq=1, rotations=[], cert=c0.body.tls_cert
    )
    new_enc = _forged(
        msgspec.structs.replace(
            c0.body, seq=1, enc_key=dave.public.enc_key, valid_until=NOW + 2 * YEAR
        ),
        alice,
    )
    coordinator = _forged(
        msgspec.structs.replace(
            c0.body,
            seq=1,
            unit_type="coordinator",
            valid_from=NOW + 3 * DAY,
            valid_until=NOW + 2 * YEAR,
        ),
        alice,
    )
    backdated, _, _ = _rotated(c0, alice.secret_bytes(), dave, NOW - DAY)
    negatives = [
        {
            "desc": "seq 2 on top of seq 0: a step skipped",
            "known": c0.armored(),
            "statement": c2.armored(),
            "reason": "sequence_skipped",
        },
        {
            "desc": "a second, different card at the seq already held",
            "known": c1.armored(),
            "statement": other.armored(),
            "reason": "sequence_reused",
        },
        {
            "desc": "a rotation older than the card held (a replay)",
            "known": c2.armored(),
            "statement": c1.armored(),
            "reason": "sequence_older",
        },
        {
            "desc": "rotation link signed by the new key, not the key it replaces",
            "known": c0.armored(),
            "statement": link_by_new,
            "reason": "bad_signature",
        },
        {
            "desc": "rotation card signed by the old key, not the new one",
            "known": c0.armored(),
            "statement": card_by_old,
            "reason": "bad_signature",
        },
        {
            "desc": "a renewal that does not expire later",
            "known": c0.armored(),
            "statement": not_later.armored(),
            "reason": "not_later",
        },
        {
            "desc": "same signing key, another encryption key, no link",
            "known": c0.armored(),
            "statement": new_enc,
            "reason": "not_a_rotation",
        },
        {
            "desc": "a renewal that makes the unit a coordinator",
            "known": c0.armored(),
            "statement": coordinator,
            "reason": "not_a_rotation",
        },
        {
            "desc": "a rotation dated before the card it replaces",
            "known": c0.armored(),
            "statement": backdated.armored(),
            "reason": "not_a_rotation",
        },
    ]
    statement = c1.armored()
    return {
        "description": "borderlink key lifecycle vectors (PROTOCOL.md section 13)",
        "now": NOW + 4 * DAY,
        "node_id": c0.node_id.hex(),
        "identities": {
            n: fixed_identity(n).secret_bytes().hex() for n in ("alice", "dave", "erin", "bob")
        },
        "cards": {"seq0": c0.armored(), "seq1": c1.armored(), "seq2": c2.armored()},
        "rotations": [_link(c0.node_id, l1), _link(c0.node_id, l2)],
        "renewal": {"known": c1.armored(), "statement": renewed.armored()},
        "revocation": {
            "armored": revocation.armored(),
            "body": revocation.body_bytes.decode(),
            "signed_bytes": (REVOCATION_LABEL + revocation.body_bytes).hex(),
            "signature": revocation.signature.hex(),
        },
        "receipt": {
            "signer": "bob",
            "statement": statement,
            "signed_bytes": receipt_signed_bytes(bob.node_id, statement).hex(),
            "signature": sign_receipt(bob, statement).hex(),
        },
        "negative": negatives,
    }


if __name__ == "__main__":
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {OUT}")
