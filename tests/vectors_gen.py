"""Generate the project's own test vectors: ``python -m tests.vectors_gen`` (or ``make vectors``).

Writes docs/vectors/envelope-v1.json. Everything deterministic (identities, node ids, fingerprints,
header, signature, padded plaintext, payload ciphertext, card) is recomputed by the test; the HPKE
slots use fresh ephemeral keys, so the stored envelope is checked by opening it. Negative vectors are
the stored envelope with one change each, and the reason code a receiver must give.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
from cryptography.hazmat.primitives import serialization

from keys.card import make_card
from keys.tls import make_certificate, pin_text, spki_sha256, tls_key
from protocol.envelope import Envelope, Slot, seal
from protocol.identity import Identity
from protocol.schemas import encode_body, template
from tests.conftest import NOW, fixed_identity

OUT = Path(__file__).resolve().parent.parent / "docs" / "vectors" / "envelope-v1.json"
MSG_ID = bytes(range(16))
CONTENT_KEY = bytes(range(32, 64))
TTL = 3 * 86400


def _identity(name: str) -> dict[str, str]:
    ident = fixed_identity(name)
    return {
        "name": name,
        "secret": ident.secret_bytes().hex(),
        "sign_key": ident.public.sign_key.hex(),
        "enc_key": ident.public.enc_key.hex(),
        "node_id": ident.node_id.hex(),
        "fingerprint": ident.public.fingerprint,
    }


def _variant(env: Envelope, **changes: Any) -> str:
    return msgspec.structs.replace(env, **changes).encode().hex()


def build() -> dict[str, Any]:
    alice, bob, carol = (fixed_identity(n) for n in ("alice", "bob", "carol"))
    body = encode_body(template("seizure-alert"))
    env = seal(
        alice,
        [bob.public, carol.public],
        "seizure-alert",
        body,
        now=NOW,
        ttl=TTL,
        msg_id=MSG_ID,
        content_key=CONTENT_KEY,
    )
    bob_copy = env.for_recipient(bob.node_id)
    card = make_card(
        alice,
        name="bar-pcu",
        unit_type="PCU",
        country="ME",
        location="MEBAR",
        endpoints=["https://127.0.0.1:7443"],
        valid_from=NOW,
        valid_until=NOW + 365 * 86400,
        tls_cert=make_certificate(alice, now=NOW),
    )
    card_v1 = make_card(
        alice,
        name="bar-pcu",
        unit_type="PCU",
        country="ME",
        location="MEBAR",
        endpoints=["http://127.0.0.1:7443"],
        valid_from=NOW,
        valid_until=NOW + 365 * 86400,
    )
    tls_seed = tls_key(alice).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    flipped = bytearray(bob_copy.payload)
    flipped[10] ^= 0x01
    negatives = [
        {
            "desc": "payload bit flipped",
            "envelope": _variant(bob_copy, payload=bytes(flipped)),
            "reason": "decryption_failed",
        },
        {
            "desc": "created changed (header is AEAD associated data)",
            "envelope": _variant(bob_copy, created=NOW - 1),
            "reason": "decryption_failed",
        },
        {
            "desc": "slot addressed to bob replaced by carol's slot under bob's id",
            "envelope": _variant(
                bob_copy,
                slots=[
                    Slot(bob.node_id, env.slots[1 if env.slots[0].to == bob.node_id else 0].key)
                ],
            ),
            "reason": "decryption_failed",
        },
        {
            "desc": "opened after expiry",
            "envelope": bob_copy.encode().hex(),
            "now": NOW + TTL,
            "reason": "expired",
        },
        {
            "desc": "opened by a node that is not a recipient",
            "envelope": bob_copy.encode().hex(),
            "opener": "mallory",
            "reason": "not_recipient",
        },
        {"desc": "protocol version 2", "envelope": _variant(bob_copy, v=2), "reason": "malformed"},
        {
            "desc": "sender unknown to the opener",
            "envelope": bob_copy.encode().hex(),
            "trusted": [],
            "reason": "unknown_sender",
        },
    ]
    return {
        "description": "borderlink envelope v1 test vectors (PROTOCOL.md section 10)",
        "now": NOW,
        "identities": {n: _identity(n) for n in ("alice", "bob", "carol", "mallory")},
        "card": {
            "signer": "alice",
            "armored": card.armored(),
            "body": card.body_bytes.decode(),
            "signature": card.signature.hex(),
            "tls": {
                "description": "PROTOCOL.md 3.5: the TLS key's Ed25519 seed is HKDF-SHA256 of "
                "alice's signing seed (the first 32 bytes of her secret) with info "
                "'borderlink/1 tls key'; the card's tls_cert is the self-signed certificate "
                "borderlink makes for it at now; pin is SHA-256 of its SubjectPublicKeyInfo",
                "tls_key_seed": tls_seed.hex(),
                "certificate": (card.body.tls_cert or b"").hex(),
                "spki_sha256": spki_sha256(card.body.tls_cert or b"").hex(),
                "pin": pin_text(card.body.tls_cert or b""),
            },
        },
        "card_v1": {
            "description": "an older, version 1 card: still read; it pins no TLS certificate",
            "signer": "alice",
            "armored": card_v1.armored(),
            "body": card_v1.body_bytes.decode(),
            "signature": card_v1.signature.hex(),
        },
        "message": {
            "sender": "alice",
            "recipients": ["bob", "carol"],
            "type": "seizure-alert",
            "id": MSG_ID.hex(),
            "created": NOW,
            "expires": NOW + TTL,
            "body": body.decode(),
            "content_key": CONTENT_KEY.hex(),
            "header": env.header().hex(),
            "signature": _signature(alice, env.header(), body).hex(),
            "payload": env.payload.hex(),
            "content_hash": env.content_hash().hex(),
            "envelope_for_bob": bob_copy.encode().hex(),
            "envelope_full": env.encode().hex(),
        },
        "negative": negatives,
    }


def _signature(ident: Identity, header: bytes, body: bytes) -> bytes:
    from protocol.labels import MESSAGE_SIGNATURE_LABEL

    return ident.sign(MESSAGE_SIGNATURE_LABEL + header + body)


if __name__ == "__main__":
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {OUT}")
