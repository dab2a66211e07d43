"""The project's own vectors (docs/vectors/envelope-v1.json, made by tests/vectors_gen.py).

Deterministic parts are recomputed from the spec's rules; the stored envelope is opened; every
negative vector yields exactly its reason. A change to the wire format fails here first.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keys.card import parse_card
from protocol.envelope import CONTENT_NONCE, decode_envelope, open_envelope
from protocol.errors import Rejected
from protocol.identity import Identity, fingerprint_of, node_id_of
from protocol.labels import MESSAGE_SIGNATURE_LABEL
from protocol.padding import pad
from tests.conftest import directory
from tests.vectors import PROJECT_VECTORS

V = json.loads((PROJECT_VECTORS / "envelope-v1.json").read_text())
IDS = {
    n: Identity.from_secret_bytes(bytes.fromhex(d["secret"])) for n, d in V["identities"].items()
}


@pytest.mark.parametrize("name", sorted(V["identities"]))
def test_identity_derivations(name: str) -> None:
    d = V["identities"][name]
    sign_key = bytes.fromhex(d["sign_key"])
    assert IDS[name].public.sign_key == sign_key
    assert IDS[name].public.enc_key.hex() == d["enc_key"]
    assert node_id_of(sign_key).hex() == d["node_id"]
    assert fingerprint_of(sign_key) == d["fingerprint"]


def test_card_vector() -> None:
    card = parse_card(V["card"]["armored"], now=V["now"])
    assert card.body_bytes.decode() == V["card"]["body"]
    assert card.signature.hex() == V["card"]["signature"]
    assert card.identity == IDS["alice"].public
    assert card.body.version == 2


def test_section_3_5_tls_key_certificate_and_pin() -> None:
    """PROTOCOL.md 3.5, recomputed from the rules: the TLS seed from alice's signing seed, the
    card's certificate for that key, its SPKI pin."""
    t = V["card"]["tls"]
    seed = HKDF(hashes.SHA256(), 32, salt=None, info=b"borderlink/1 tls key").derive(
        bytes.fromhex(V["identities"]["alice"]["secret"])[:32]
    )
    assert seed.hex() == t["tls_key_seed"]
    card = parse_card(V["card"]["armored"], now=V["now"])
    der = bytes.fromhex(t["certificate"])
    assert card.body.tls_cert == der
    cert = x509.load_der_x509_certificate(der)
    cert.verify_directly_issued_by(cert)
    own = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
    spki = own.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert (
        cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == spki
    )
    assert hashlib.sha256(spki).hexdigest() == t["spki_sha256"]
    digest = t["spki_sha256"]
    assert t["pin"] == "sha256:" + " ".join(digest[i : i + 4] for i in range(0, 64, 4))


def test_section_3_5_a_version_1_card_is_still_read() -> None:
    card = parse_card(V["card_v1"]["armored"], now=V["now"])
    assert card.body_bytes.decode() == V["card_v1"]["body"]
    assert (card.body.version, card.body.tls_cert) == (1, None)


def test_deterministic_parts_recompute() -> None:
    m = V["message"]
    env = decode_envelope(bytes.fromhex(m["envelope_full"]))
    header = env.header()
    assert header.hex() == m["header"]
    body = m["body"].encode()
    sig = IDS["alice"].sign(MESSAGE_SIGNATURE_LABEL + header + body)  # Ed25519 is deterministic
    assert sig.hex() == m["signature"]
    payload = ChaCha20Poly1305(bytes.fromhex(m["content_key"])).encrypt(
        CONTENT_NONCE, pad(sig + body), header
    )
    assert payload.hex() == m["payload"] == env.payload.hex()
    assert env.content_hash().hex() == m["content_hash"]


@pytest.mark.parametrize("field", ["envelope_for_bob", "envelope_full"])
def test_stored_envelope_opens(field: str) -> None:
    m = V["message"]
    opened = open_envelope(
        bytes.fromhex(m[field]), IDS["bob"], sender_of=directory(IDS["alice"]), now=V["now"]
    )
    assert opened.body.decode() == m["body"] and opened.id.hex() == m["id"]


@pytest.mark.parametrize("case", V["negative"], ids=[c["desc"] for c in V["negative"]])
def test_negative_vectors(case: dict[str, object]) -> None:
    opener = IDS[str(case.get("opener", "bob"))]
    trusted = [IDS[n] for n in case.get("trusted", ["alice"])]  # type: ignore[attr-defined]
    with pytest.raises(Rejected) as err:
        open_envelope(
            bytes.fromhex(str(case["envelope"])),
            opener,
            sender_of=directory(*trusted),
            now=int(case.get("now", V["now"])),
        )  # type: ignore[call-overload]
    assert err.value.reason == case["reason"]
