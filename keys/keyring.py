"""The secret the keystore encrypts: the node's current keys and the decryption keys it keeps
through a rotation's overlap (PROTOCOL.md 13.4).

A node that never rotated stores its 64 secret bytes as they were (Ed25519 seed || X25519 scalar),
so every keystore written before rotation existed still opens. After a rotation the secret is a
``borderlink-keyring`` document: the node id (its first key's, kept for good), the current 64
bytes, and for each replaced key only its X25519 scalar and the end of its overlap. A replaced
signing seed is not kept: nothing may sign with it again, so nothing should be able to.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keys.card import Card, Rotation, rotation_signed_bytes
from protocol.decoding import Decoder
from protocol.errors import KeystoreError, UsageError, ValidationError
from protocol.identity import SECRET_BYTES, Identity, node_id_of
from protocol.labels import MAX_OVERLAP_SECONDS, MAX_ROTATIONS

KEYRING_FORMAT = "borderlink-keyring"


class RetiredKey(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A replaced key's decryption half, kept until ``until`` so envelopes peers sealed to it
    before they learnt of the rotation still open."""

    seq: int  # the rotation that replaced it
    enc_secret: bytes  # X25519 private scalar, 32 bytes
    until: int


class Keyring(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    format: Literal["borderlink-keyring"] = "borderlink-keyring"
    version: Literal[1] = 1
    node_id: bytes
    current: bytes  # Ed25519 seed || X25519 scalar
    retired: list[RetiredKey] = msgspec.field(default_factory=list)
    # The card sealed with these keys: after a crash between keystore and card, the home's card
    # is put back from here (node/keychange.py resume).
    card: str | None = None

    def identity(self) -> Identity:
        """The node's keys, as every service uses them; the retired decryption keys ride along
        for :meth:`Identity.decryption_keys`."""
        ident = Identity.from_secret_bytes(self.current, node_id=self.node_id)
        ident.retire(
            [(X25519PrivateKey.from_private_bytes(r.enc_secret), r.until) for r in self.retired]
        )
        return ident


_KEYRING = Decoder[Keyring](Keyring, what="keyring")


def decode_keyring(secret: bytes) -> Keyring:
    """The keystore's secret -> a keyring (64 raw bytes are a node that never rotated)."""
    if len(secret) == SECRET_BYTES:
        return Keyring(
            node_id=node_id_of(Identity.from_secret_bytes(secret).public.sign_key), current=secret
        )
    try:
        ring = _KEYRING.decode(secret)
    except ValidationError as exc:
        raise KeystoreError(f"the keystore holds no keys this build reads ({exc.message})") from exc
    if len(ring.current) != SECRET_BYTES or any(len(r.enc_secret) != 32 for r in ring.retired):
        raise KeystoreError("the keystore's keys have the wrong length")
    return ring


def encode_keyring(ring: Keyring) -> bytes:
    """The bytes the keystore seals. A ring with nothing retired and its own node id is written
    as the 64 bytes it always was, so such a keystore reads with any earlier build."""
    own_id = node_id_of(ring.identity().public.sign_key)
    if not ring.retired and ring.card is None and ring.node_id == own_id:
        return ring.current
    return msgspec.json.encode(ring)


def identity_from_secret(secret: bytes) -> Identity:
    return decode_keyring(secret).identity()


def rotate(
    ring: Keyring, card: Card, new: Identity, *, now: int, overlap: int
) -> tuple[Keyring, Rotation]:
    """Hand the node over from its current keys to ``new``: the link signed by the current key,
    and the keyring that keeps the current decryption key for ``overlap`` seconds. ``card`` is
    the node's current card (its seq and chain continue)."""
    if not 0 <= overlap <= MAX_OVERLAP_SECONDS:
        raise UsageError("the overlap must be between 0 and 90 days")
    if len(card.body.rotations) >= MAX_ROTATIONS:
        raise UsageError(
            f"this node has rotated {MAX_ROTATIONS} times, the most a card can carry",
            hint="start a new node with 'borderlink init' and introduce it to your peers",
        )
    old = ring.identity()
    if old.public.sign_key != card.body.sign_key:
        raise KeystoreError("the keystore and the card hold different keys")
    unsigned = Rotation(
        seq=card.seq + 1,
        old_key=old.public.sign_key,
        new_key=new.public.sign_key,
        at=now,
        overlap_until=now + overlap,
        signature=b"",
    )
    link = msgspec.structs.replace(
        unsigned, signature=old.sign(rotation_signed_bytes(ring.node_id, unsigned))
    )
    retired = RetiredKey(seq=link.seq, enc_secret=ring.current[32:], until=link.overlap_until)
    # Retired decryption keys are kept (at most one per rotation): messages stored in the inbox
    # were sealed to them and are opened again to be shown; new ones open only in the overlap.
    return (
        Keyring(node_id=ring.node_id, current=new.secret_bytes(), retired=[*ring.retired, retired]),
        link,
    )
