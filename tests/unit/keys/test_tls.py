"""The TLS key and certificate a version 2 card pins (PROTOCOL.md 3.5): derivation, the rules a
card's ``tls_cert`` must meet, and the card version rules around it."""

from __future__ import annotations

import base64
import datetime
import hashlib

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

from keys.card import make_card, parse_card
from keys.tls import check_certificate, make_certificate, pin_text, spki_sha256, tls_key
from protocol.armor import armor
from protocol.errors import Malformed, ValidationError
from protocol.identity import Identity
from protocol.labels import CARD_SIGNATURE_LABEL
from tests.conftest import NOW, fixed_identity

YEAR = 365 * 86400
ALICE = fixed_identity("alice")


def v2_card(ident: Identity = ALICE, **over: object) -> bytes | str:
    args: dict[str, object] = {
        "name": "bar-pcu",
        "unit_type": "PCU",
        "country": "ME",
        "location": "MEBAR",
        "endpoints": ["https://127.0.0.1:7443"],
        "valid_from": NOW,
        "valid_until": NOW + YEAR,
        "tls_cert": make_certificate(ident, now=NOW),
    }
    args.update(over)
    return make_card(ident, **args).armored()  # type: ignore[arg-type]


def test_the_tls_key_is_hkdf_of_the_signing_seed_under_its_own_label() -> None:
    """PROTOCOL.md 3.5: another implementation derives the same key from the same seed."""
    seed = ALICE.secret_bytes()[:32]
    expected = HKDF(hashes.SHA256(), 32, salt=None, info=b"borderlink/1 tls key").derive(seed)
    raw = tls_key(ALICE).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert raw == expected
    assert raw != seed  # never the signing key itself
    other = tls_key(fixed_identity("bob")).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert other != raw


def test_the_certificate_is_self_signed_never_expiring_and_names_the_node() -> None:
    der = make_certificate(ALICE, now=NOW)
    cert = x509.load_der_x509_certificate(der)
    cert.verify_directly_issued_by(cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == ALICE.node_id.hex()
    assert cert.not_valid_after_utc == datetime.datetime(
        9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC
    )
    assert cert.not_valid_before_utc.timestamp() == NOW - 86400
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki_sha256(der) == hashlib.sha256(spki).digest()
    assert check_certificate(der, node_id=ALICE.node_id).pin == spki_sha256(der)


def test_the_pin_is_shown_as_sha256_in_groups_of_four() -> None:
    der = make_certificate(ALICE, now=NOW)
    digest = spki_sha256(der).hex()
    assert pin_text(der) == "sha256:" + " ".join(digest[i : i + 4] for i in range(0, 64, 4))


def _signed_by_other(subject_key: ed25519.Ed25519PrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(subject_key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC))
        .sign(ed25519.Ed25519PrivateKey.generate(), algorithm=None)
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("der", "reason"),
    [
        (b"not a certificate", "is not a self-signed DER X.509 certificate"),
        (b"\x30" + b"\x00" * 5000, "is larger than 4096 bytes"),
        (_signed_by_other(ed25519.Ed25519PrivateKey.generate()), "is not signed by its own key"),
    ],
    ids=["garbage", "oversize", "signed-by-another-key"],
)
def test_a_tls_cert_that_is_no_self_signed_certificate_is_refused(der: bytes, reason: str) -> None:
    with pytest.raises(Malformed) as caught:
        check_certificate(der, node_id=ALICE.node_id)
    assert caught.value.message == f"tls_cert {reason}"


def test_an_ecdsa_certificate_of_another_implementation_is_accepted() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "another implementation"),
            x509.NameAttribute(NameOID.COMMON_NAME, ALICE.node_id.hex()),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(9999, 1, 1, tzinfo=datetime.UTC))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    assert check_certificate(der, node_id=ALICE.node_id).der == der


def test_a_version_2_card_round_trips_with_its_pin() -> None:
    card = parse_card(v2_card(), now=NOW + 1)
    assert card.body.version == 2
    assert card.tls_pin == pin_text(make_certificate(ALICE, now=NOW))


def _resigned(body: dict[str, object], ident: Identity = ALICE) -> str:
    data = msgspec.json.encode(body)
    return armor("CARD", [data, ident.sign(CARD_SIGNATURE_LABEL + data)])


def _body() -> dict[str, object]:
    text = v2_card()
    card = parse_card(text, now=None)
    body: dict[str, object] = msgspec.json.decode(card.body_bytes)
    return body


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tls_cert": None}, "card field tls_cert: is required in a version 2 card"),
        ({"version": 1}, "card field tls_cert: is not part of a version 1 card"),
        (
            {"endpoints": ["http://127.0.0.1:7443"]},
            "card field endpoints[0]: must be an https:// URL: peers talk only over mutual TLS "
            "pinned to their cards, never plain HTTP",
        ),
        (
            {"tls_cert": base64.b64encode(b"junk").decode()},
            "card field tls_cert: is not a self-signed DER X.509 certificate",
        ),
    ],
    ids=["v2-without-cert", "v1-with-cert", "v2-http-endpoint", "v2-junk-cert"],
)
def test_version_rules_of_a_signed_card(change: dict[str, object], message: str) -> None:
    """Even correctly signed, a card breaking 3.1's version rules is refused, in our words."""
    body = _body()
    body.update(change)
    if body["tls_cert"] is None:
        del body["tls_cert"]
    with pytest.raises(Malformed) as caught:
        parse_card(_resigned(body), now=NOW + 1)
    assert caught.value.message == message


def test_making_a_version_2_card_with_an_http_endpoint_is_refused() -> None:
    """What ``init --endpoint http://...`` runs into, for a loopback host or any other."""
    for url in ("http://10.1.2.3:7443", "http://127.0.0.1:7443"):
        with pytest.raises(ValidationError) as caught:
            v2_card(endpoints=[url])
        assert caught.value.path == "endpoints[0]"
        assert "must be an https:// URL" in caught.value.message


def test_a_version_1_card_still_imports_and_pins_nothing() -> None:
    card = make_card(
        ALICE,
        name="bar-pcu",
        unit_type="PCU",
        country="ME",
        location="MEBAR",
        endpoints=["http://127.0.0.1:7443"],
        valid_from=NOW,
        valid_until=NOW + YEAR,
    )
    parsed = parse_card(card.armored(), now=NOW + 1)
    assert (parsed.body.version, parsed.tls_pin) == (1, None)
    assert b"tls_cert" not in parsed.body_bytes


def _self_signed(key: ed25519.Ed25519PrivateKey, *names: str) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, n) for n in names])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(9)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(9999, 1, 1, tzinfo=datetime.UTC))
        .sign(key, algorithm=None)
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_3_5_a_card_pinning_a_copy_of_another_nodes_certificate_is_refused() -> None:
    """PROTOCOL.md 3.5: the certificate's subject names the card's own node. A certificate is
    public, so a hostile peer could copy another's into its own signed card and have that peer's
    channel attributed to itself (attack9 F2); the subject binds the copy to its real owner."""
    bob = fixed_identity("bob")
    stolen = make_certificate(bob, now=NOW)  # bob's real certificate, copied without its key
    with pytest.raises(ValidationError) as made:
        v2_card(ALICE, tls_cert=stolen)
    assert made.value.path == "tls_cert"
    body = _body()
    body["tls_cert"] = base64.b64encode(stolen).decode()
    with pytest.raises(Malformed) as caught:
        parse_card(_resigned(body), now=NOW + 1)  # signed by alice: only the binding refuses it
    assert caught.value.message == (
        f"card field tls_cert: is issued to common name '{bob.node_id.hex()}', not to this card's "
        f"node id {ALICE.node_id.hex()}: a card pins only its own node's certificate"
    )
    # A card stored before the rule still reads; admission makes the shared pin nobody's.
    assert parse_card(_resigned(body), now=None).tls_pin == pin_text(stolen)


@pytest.mark.parametrize(
    ("names", "said"),
    [
        ((), "a subject with no common name"),
        (("x",), "common name 'x'"),
        ((ALICE.node_id.hex().upper(),), f"common name '{ALICE.node_id.hex().upper()}'"),
        (
            (ALICE.node_id.hex(), ALICE.node_id.hex()),
            f"several common names ('{ALICE.node_id.hex()}', '{ALICE.node_id.hex()}')",
        ),
        (("bad\x1b[2Jname",), "common name 'bad\\u001b[2Jname'"),
    ],
    ids=["none", "other", "upper-case", "two", "control-characters"],
)
def test_3_5_the_subject_must_be_exactly_one_common_name_the_node_id_in_lowercase_hex(
    names: tuple[str, ...], said: str
) -> None:
    """Its own key, self-signed, but not naming the card's node as 3.5 says: refused, the name
    it carries shown escaped."""
    der = _self_signed(ed25519.Ed25519PrivateKey.generate(), *names)
    with pytest.raises(Malformed) as caught:
        check_certificate(der, node_id=ALICE.node_id)
    assert caught.value.message == (
        f"tls_cert is issued to {said}, not to this card's node id {ALICE.node_id.hex()}: "
        "a card pins only its own node's certificate"
    )
    assert check_certificate(
        _self_signed(ed25519.Ed25519PrivateKey.generate(), ALICE.node_id.hex()),
        node_id=ALICE.node_id,
    )
