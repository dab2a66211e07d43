"""Node identities: an Ed25519 signing key, an X25519 encryption key, the node id and fingerprint.

The signing key is the identity: the node id and the human fingerprint derive from it alone, and
the encryption key is certified by it in the contact card (PROTOCOL.md section 2). Public keys from
outside go through :func:`check_sign_key` / :func:`check_enc_key`, which reject weak encodings that
the libraries would otherwise accept.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from nacl.bindings import crypto_core_ed25519_is_valid_point

from protocol.errors import BadSignature, Malformed
from protocol.labels import FINGERPRINT_LABEL, NODE_ID_LABEL

KEY_BYTES = 32
SECRET_BYTES = 64  # Ed25519 seed || X25519 private scalar
_P25519 = 2**255 - 19
_FP_GROUPS = 6
_FP_RE = re.compile(r"^\d{30}$")


@functools.lru_cache(maxsize=1024)
def node_id_of(sign_key: bytes) -> bytes:
    """Node id = SHA-256(NODE_ID_LABEL || Ed25519 public key) (PROTOCOL.md 2.2).

    Cached, like the key objects below: a node meets few keys and uses each for every message."""
    return hashlib.sha256(NODE_ID_LABEL + sign_key).digest()


def fingerprint_of(sign_key: bytes) -> str:
    """Thirty digits in six groups, as Signal's safety numbers: each 5-byte chunk of
    SHA-512(FINGERPRINT_LABEL || key) read big-endian, mod 100000 (PROTOCOL.md 2.3)."""
    digest = hashlib.sha512(FINGERPRINT_LABEL + sign_key).digest()
    groups = (int.from_bytes(digest[5 * i : 5 * i + 5], "big") % 100000 for i in range(_FP_GROUPS))
    return " ".join(f"{g:05d}" for g in groups)


def normalize_fingerprint(text: str) -> str:
    """Accept what people type (spaces, dashes, line breaks) and return the canonical form."""
    digits = "".join(ch for ch in text if not ch.isspace() and ch != "-")
    if not _FP_RE.match(digits):
        raise Malformed("a fingerprint is 30 digits, usually shown as six groups of five")
    return " ".join(digits[i : i + 5] for i in range(0, 30, 5))


def check_sign_key(raw: bytes) -> Ed25519PublicKey:
    """Import an Ed25519 public key, refusing non-canonical and small-order encodings.

    OpenSSL accepts any 32 bytes here and fails later, or not at all for small-order points;
    libsodium's point check rejects y >= p, off-curve and small-order points at import time.
    """
    if len(raw) != KEY_BYTES:
        raise Malformed(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
    if not crypto_core_ed25519_is_valid_point(raw):
        raise Malformed("Ed25519 public key is not a canonical point of the main subgroup")
    return Ed25519PublicKey.from_public_bytes(raw)


def check_enc_key(raw: bytes) -> X25519PublicKey:
    """Import an X25519 public key, refusing non-canonical and low-order points.

    RFC 7748 tells receivers to mask the top bit and reduce mod p; we are the only producers of
    our keys and never emit such encodings, so accepting them would only admit forgeries. A
    low-order point makes every shared secret zero, which the library refuses at exchange time;
    we refuse it at import instead, by one exchange with a fixed scalar.
    """
    if len(raw) != KEY_BYTES:
        raise Malformed(f"an X25519 public key is 32 bytes, not {len(raw)}")
    if raw[31] & 0x80 or int.from_bytes(raw, "little") >= _P25519:
        raise Malformed("X25519 public key is not canonically encoded")
    key = X25519PublicKey.from_public_bytes(raw)
    try:
        _PROBE.exchange(key)
    except ValueError as exc:
        raise Malformed("X25519 public key is a low-order point") from exc
    return key


_PROBE = X25519PrivateKey.from_private_bytes(hashlib.sha256(b"borderlink low-order probe").digest())


def verify_signature(key: Ed25519PublicKey, signature: bytes, data: bytes) -> None:
    """Ed25519 verify (OpenSSL rejects S >= L, so malleated signatures fail too)."""
    if len(signature) != 64:
        raise BadSignature("signature is not 64 bytes")
    try:
        key.verify(signature, data)
    except InvalidSignature as exc:
        raise BadSignature("signature does not verify") from exc


@functools.lru_cache(maxsize=1024)
def _verifier(sign_key: bytes) -> Ed25519PublicKey:
    """One key object per public key (immutable, so shared), not one per message."""
    return Ed25519PublicKey.from_public_bytes(sign_key)


@functools.lru_cache(maxsize=1024)
def _encryption_key(enc_key: bytes) -> X25519PublicKey:
    return X25519PublicKey.from_public_bytes(enc_key)


def _raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class PublicIdentity:
    """What a peer knows of a node: both public keys. Imported keys are checked by the caller.

    ``origin`` is the node id when it is not the current signing key's own: a node keeps the id
    of its first key through rotations (PROTOCOL.md 13.1), which its card's chain of rotation
    links proves. None for a node that never rotated."""

    sign_key: bytes
    enc_key: bytes
    origin: bytes | None = None

    @property
    def node_id(self) -> bytes:
        return self.origin if self.origin is not None else node_id_of(self.sign_key)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.sign_key)

    def verifier(self) -> Ed25519PublicKey:
        return _verifier(self.sign_key)

    def encryption_key(self) -> X25519PublicKey:
        return _encryption_key(self.enc_key)

    def sign_key_pem(self) -> str:
        """SubjectPublicKeyInfo PEM, readable by ``openssl pkey -pubin``."""
        return (
            self.verifier()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )


class Identity:
    """A node's secret keys. The repr names the node only; the keys are never printed."""

    __slots__ = ("_enc", "_public", "_retired", "_sign")

    def __init__(
        self, sign: Ed25519PrivateKey, enc: X25519PrivateKey, *, node_id: bytes | None = None
    ) -> None:
        self._sign = sign
        self._enc = enc
        sign_key = _raw_public(sign.public_key())
        origin = node_id if node_id is not None and node_id != node_id_of(sign_key) else None
        self._public = PublicIdentity(sign_key, _raw_public(enc.public_key()), origin)
        self._retired: tuple[tuple[X25519PrivateKey, int], ...] = ()

    def retire(self, keys: list[tuple[X25519PrivateKey, int]]) -> None:
        """Decryption keys this node replaced, each with the end of its overlap (PROTOCOL.md
        13.2): envelopes sealed to them before a peer learnt of the rotation still open."""
        self._retired = tuple(keys)

    def decryption_keys(self, now: int) -> list[X25519PrivateKey]:
        """The current decryption key first, then the retired ones still in their overlap."""
        return [self._enc, *(k for k, until in self._retired if now < until)]

    def retired_secrets(self) -> list[tuple[bytes, int]]:
        """The retired decryption keys' 32 raw bytes, each with the end of its overlap: what a
        worker process needs to rebuild this identity (node/runtime.py), nothing else."""
        raw, fmt = serialization.Encoding.Raw, serialization.PrivateFormat.Raw
        none = serialization.NoEncryption()
        return [(k.private_bytes(raw, fmt, none), until) for k, until in self._retired]

    def take_over(self, other: Identity) -> None:
        """Become ``other`` in place: after a rotation every service holding this object signs
        and decrypts with the new keys at once, with no restart and no stale copy left behind."""
        self._sign, self._enc = other._sign, other._enc
        self._public, self._retired = other._public, other._retired

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @classmethod
    def from_secret_bytes(cls, secret: bytes, *, node_id: bytes | None = None) -> Identity:
        if len(secret) != SECRET_BYTES:
            raise Malformed("identity secret has the wrong length")
        return cls(
            Ed25519PrivateKey.from_private_bytes(secret[:32]),
            X25519PrivateKey.from_private_bytes(secret[32:]),
            node_id=node_id,
        )

    def secret_bytes(self) -> bytes:
        """The 64 secret bytes the keystore encrypts: Ed25519 seed || X25519 scalar."""
        raw = serialization.Encoding.Raw
        fmt = serialization.PrivateFormat.Raw
        none = serialization.NoEncryption()
        return self._sign.private_bytes(raw, fmt, none) + self._enc.private_bytes(raw, fmt, none)

    @property
    def public(self) -> PublicIdentity:
        return self._public

    @property
    def node_id(self) -> bytes:
        return self._public.node_id

    def sign(self, data: bytes) -> bytes:
        return self._sign.sign(data)

    @property
    def decryption_key(self) -> X25519PrivateKey:
        return self._enc

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        """For signed notes (checkpoints), which sign with the key object itself."""
        return self._sign

    def __repr__(self) -> str:
        return f"Identity(node_id={self.node_id.hex()[:16]}..., keys=<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Identity holds secret keys and cannot be pickled")
