"""The node's TLS key and self-signed certificate, which its card pins (PROTOCOL.md 3.5 and 11.1).

The TLS key is an Ed25519 key derived with HKDF-SHA256 from the identity's signing seed under its
own label, so it needs no second secret on disk: it is in the keystore (and its backup) already, it
changes when the identity's keys change, and it never signs anything but TLS handshakes. The
certificate is self-signed and never expires by itself (notAfter 9999-12-31, RFC 5280 4.1.2.5):
the card that carries it has the validity that counts, and no CA is involved. A peer's certificate
is pinned exactly: the SHA-256 of its SubjectPublicKeyInfo is what people compare and what error
messages show.

Pure: keys and certificates in, bytes out; no files, no sockets, no clock (``now`` is passed in).
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

from protocol.errors import Malformed
from protocol.identity import Identity
from protocol.labels import TLS_KEY_LABEL
from protocol.text import printable

MAX_CERT_BYTES = 4096  # an Ed25519 self-signed certificate is about 300 bytes
_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)


def tls_key(identity: Identity) -> ed25519.Ed25519PrivateKey:
    """The node's TLS private key: HKDF-SHA256(seed, info=TLS_KEY_LABEL), an Ed25519 seed."""
    seed = identity.secret_bytes()[:32]
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=TLS_KEY_LABEL).derive(seed)
    return ed25519.Ed25519PrivateKey.from_private_bytes(derived)


def make_certificate(identity: Identity, *, now: int) -> bytes:
    """A self-signed certificate (DER) for the node's TLS key, its subject the node id.

    Valid from a day before ``now`` (clocks differ) and never expiring by itself. Every field is
    a function of the identity and ``now`` (the serial is a hash of both; Ed25519 signatures are
    deterministic), so the project's vectors can pin the exact bytes."""
    key = tls_key(identity)
    names = [x509.NameAttribute(NameOID.COMMON_NAME, identity.node_id.hex())]
    if identity.public.origin is not None:
        # After a rotation the node id stays and the key changes: a second attribute naming the
        # key keeps each certificate's subject its own. OpenSSL finds a self-signed anchor by
        # its subject, so two anchors with one name would have a peer check the new
        # certificate against the old one and refuse it (PROTOCOL.md 3.5).
        tag = hashlib.sha256(identity.public.sign_key).hexdigest()[:16]
        names.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"key {tag}"))
    subject = x509.Name(names)
    start = datetime.datetime.fromtimestamp(now - 86400, tz=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(_serial(identity.node_id, now))
        .not_valid_before(start)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, algorithm=None)
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _serial(node_id: bytes, now: int) -> int:
    """A positive serial under 2^127 (RFC 5280 allows 20 octets), unique per node and moment."""
    digest = hashlib.sha256(TLS_KEY_LABEL + node_id + now.to_bytes(8, "big")).digest()
    return int.from_bytes(digest[:16], "big") >> 1 or 1


def key_pem(identity: Identity, password: bytes) -> bytes:
    """The TLS key as PKCS#8 PEM encrypted under ``password``: the form Python's ``ssl`` can load
    (it only loads keys from files; the node writes this to a private file for an instant)."""
    return tls_key(identity).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )


def cert_pem(cert_der: bytes) -> bytes:
    return x509.load_der_x509_certificate(cert_der).public_bytes(serialization.Encoding.PEM)


def spki_sha256(cert_der: bytes) -> bytes:
    """SHA-256 of the certificate's SubjectPublicKeyInfo: the pin (PROTOCOL.md 3.5)."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise Malformed("tls_cert is not a DER X.509 certificate") from exc
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def pin_text(cert_der: bytes) -> str:
    """How a pin is shown to people: ``sha256:`` and the hex digest in groups of four."""
    digest = spki_sha256(cert_der).hex()
    return "sha256:" + " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


@dataclass(frozen=True)
class CheckedCertificate:
    der: bytes
    pin: bytes


def check_certificate(cert_der: bytes, *, node_id: bytes | None) -> CheckedCertificate:
    """What the ``tls_cert`` of the card of ``node_id`` must be (PROTOCOL.md 3.5): one DER
    certificate, self-signed by its own key (an Ed25519, ECDSA or RSA key: what TLS 1.3 stacks
    accept), whose subject names that node: exactly one common name, the node id in lowercase
    hex. The name binds the certificate to the card: a card cannot pin a copy of another
    node's certificate (public, so copied without its key) and have that node's channel taken
    for its own. ``node_id=None`` leaves the subject unchecked, for a card stored before the
    rule (see keys.card.parse_card)."""
    if len(cert_der) > MAX_CERT_BYTES:
        raise Malformed(f"tls_cert is larger than {MAX_CERT_BYTES} bytes")
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        if cert.public_bytes(serialization.Encoding.DER) != cert_der:
            raise Malformed("tls_cert is not in canonical DER form")
        cert.verify_directly_issued_by(cert)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except InvalidSignature as exc:
        raise Malformed("tls_cert is not signed by its own key") from exc
    except (ValueError, TypeError) as exc:
        raise Malformed("tls_cert is not a self-signed DER X.509 certificate") from exc
    common_names = [str(n.value) for n in names]
    if node_id is not None and common_names != [node_id.hex()]:
        raise Malformed(
            f"tls_cert is issued to {_subject_text(common_names)}, not to this card's node id "
            f"{node_id.hex()}: a card pins only its own node's certificate"
        )
    return CheckedCertificate(cert_der, spki_sha256(cert_der))


def _subject_text(names: list[str]) -> str:
    """The common names of a certificate subject, as an error message shows them."""
    if not names:
        return "a subject with no common name"
    text = ", ".join(f"'{printable(n, 80)}'" for n in names)
    return f"common name {text}" if len(names) == 1 else f"several common names ({text})"
