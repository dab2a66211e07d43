"""Identity, node id, fingerprint, and weak-key rejection (Wycheproof x25519 / ed25519)."""

from __future__ import annotations

import pickle

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.errors import BadSignature, Malformed
from protocol.identity import (
    Identity,
    check_enc_key,
    check_sign_key,
    fingerprint_of,
    node_id_of,
    normalize_fingerprint,
    verify_signature,
)
from tests.conftest import fixed_identity
from tests.vectors import load_json, shared_vectors


def test_secret_bytes_round_trip() -> None:
    ident = Identity.generate()
    again = Identity.from_secret_bytes(ident.secret_bytes())
    assert again.public == ident.public
    assert again.node_id == node_id_of(ident.public.sign_key)


def test_fingerprint_is_six_groups_of_five_digits_and_stable() -> None:
    fp = fixed_identity("alice").public.fingerprint
    groups = fp.split(" ")
    assert len(groups) == 6 and all(len(g) == 5 and g.isdigit() for g in groups)
    assert fp == fingerprint_of(fixed_identity("alice").public.sign_key)
    assert fp != fixed_identity("bob").public.fingerprint


def test_normalize_fingerprint_accepts_what_people_type() -> None:
    fp = fixed_identity("alice").public.fingerprint
    typed = fp.replace(" ", "-")[:17] + "\n" + fp.replace(" ", "")[15:]
    assert normalize_fingerprint(typed) == fp
    with pytest.raises(Malformed, match="30 digits"):
        normalize_fingerprint(fp[:-1])


def test_no_secret_in_repr_str_or_pickle() -> None:
    ident = fixed_identity("alice")
    secret = ident.secret_bytes()
    for text in (repr(ident), str(ident), f"{ident}"):
        assert secret.hex() not in text and secret[:32].hex() not in text
        assert "hidden" in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(ident)


def test_sign_key_pem_is_standard_spki() -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    pub = fixed_identity("alice").public
    key = load_pem_public_key(pub.sign_key_pem().encode())
    assert isinstance(key, Ed25519PublicKey)
    assert pub.sign_key_pem().startswith("-----BEGIN PUBLIC KEY-----")


def test_small_order_and_noncanonical_ed25519_keys_are_refused() -> None:
    identity_point = bytes([1]) + bytes(31)  # the neutral element: small order
    with pytest.raises(Malformed, match="canonical point"):
        check_sign_key(identity_point)
    noncanonical = (2**255 - 19 + 1).to_bytes(32, "little")  # y >= p
    with pytest.raises(Malformed):
        check_sign_key(noncanonical)
    with pytest.raises(Malformed, match="32 bytes"):
        check_sign_key(b"\x00" * 31)


def test_x25519_low_order_and_noncanonical_rejected() -> None:
    with pytest.raises(Malformed, match="low-order"):
        check_enc_key(bytes(32))  # u = 0
    with pytest.raises(Malformed, match="canonically"):
        check_enc_key((2**255 - 19).to_bytes(32, "little"))
    with pytest.raises(Malformed, match="canonically"):
        check_enc_key(bytes(31) + b"\x80")
    check_enc_key(fixed_identity("alice").public.enc_key)


def test_wycheproof_x25519_public_keys() -> None:
    """Import refuses every public key whose shared secret the library refuses (zero) and every
    non-canonical encoding; it accepts every 'valid' vector's key."""
    data = load_json(shared_vectors("wycheproof") / "x25519_test.json")
    checked = {"valid": 0, "rejected": 0}
    for group in data["testGroups"]:
        for t in group["tests"]:
            raw = bytes.fromhex(t["public"])
            flags = set(t["flags"])
            weak = flags & {"LowOrderPublic", "ZeroSharedSecret", "NonCanonicalPublic"}
            high_bit = bool(raw[31] & 0x80)
            if weak or high_bit:
                with pytest.raises(Malformed):
                    check_enc_key(raw)
                checked["rejected"] += 1
            elif t["result"] == "valid":
                check_enc_key(raw)
                checked["valid"] += 1
    assert checked["valid"] > 200 and checked["rejected"] > 30


def test_wycheproof_ed25519_signatures() -> None:
    """Malleable (S >= L), non-canonical and truncated signatures are refused; valid ones pass."""
    data = load_json(shared_vectors("wycheproof") / "ed25519_test.json")
    n = 0
    for group in data["testGroups"]:
        raw_key = bytes.fromhex(group["publicKey"]["pk"])
        key = check_sign_key(raw_key)
        for t in group["tests"]:
            sig, msg = bytes.fromhex(t["sig"]), bytes.fromhex(t["msg"])
            if t["result"] == "valid":
                verify_signature(key, sig, msg)
            else:
                with pytest.raises(BadSignature):
                    verify_signature(key, sig, msg)
            n += 1
    assert n > 100
