"""The envelope: sign, then encrypt to each recipient, with the signature bound to the recipients.

Seal (PROTOCOL.md 5): sign ``MESSAGE_SIGNATURE_LABEL || header || body`` with the sender's Ed25519
key, pad ``signature || body`` to a bucket, encrypt it once under a fresh content key with
ChaCha20-Poly1305 (AAD = header), and wrap the content key to each recipient with HPKE base mode
(X25519, HKDF-SHA256, ChaCha20-Poly1305), binding sender, recipient and message id in ``info``.

Open (PROTOCOL.md 6) runs the checks in a fixed order: cheap, unauthenticated checks first (size,
structure, addressed to me, sender trusted, time), then cryptography, then the replay check, so an
unauthenticated caller can never learn whether an id was seen.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import struct
from collections.abc import Callable, Sequence
from typing import Annotated, Literal

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from protocol.decoding import Decoder
from protocol.errors import (
    BadSignature,
    ClockSkew,
    DecryptionFailed,
    Expired,
    Malformed,
    NotForMe,
    Oversize,
    Rejected,
    Replay,
    SenderMismatch,
    TooManyRecipients,
    ValidationError,
)
from protocol.identity import Identity, PublicIdentity, check_sign_key, verify_signature
from protocol.labels import (
    DEFAULT_CLOCK_SKEW_SECONDS,
    ENVELOPE_HASH_LABEL,
    HPKE_INFO_LABEL,
    MAX_ENVELOPE_BYTES,
    MAX_RECIPIENTS,
    MAX_TTL_SECONDS,
    MESSAGE_SIGNATURE_LABEL,
    PROTOCOL_VERSION,
)
from protocol.padding import pad, unpad
from protocol.schemas import Message, decode_body

TypeName = Literal["seizure-alert", "risk-profile", "feedback", "retraction"]
NodeId = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
CONTENT_NONCE = bytes(12)  # the content key is fresh per message and used once (PROTOCOL.md 5.4)
SLOT_BYTES = 32 + 32 + 16  # HPKE enc || ChaCha20-Poly1305(content key)
SIGNATURE_BYTES = 64


class Slot(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """One recipient's wrapped content key."""

    to: NodeId
    key: Annotated[bytes, msgspec.Meta(min_length=SLOT_BYTES, max_length=SLOT_BYTES)]


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """The wire object (MessagePack map). Delivered copies carry only the recipient's own slot."""

    v: int
    id: Annotated[bytes, msgspec.Meta(min_length=16, max_length=16)]
    type: TypeName
    sender: NodeId
    recipients: list[NodeId]
    created: Annotated[int, msgspec.Meta(ge=0, le=2**62)]
    expires: Annotated[int, msgspec.Meta(ge=0, le=2**62)]
    slots: list[Slot]
    payload: bytes

    def header(self) -> bytes:
        return header_bytes(self)

    def content_hash(self) -> bytes:
        """Same for every recipient's copy: it covers the header and payload, not the slots."""
        return content_hash_of(self.header(), self.payload)

    def for_recipient(self, node_id: bytes) -> Envelope:
        return msgspec.structs.replace(self, slots=[s for s in self.slots if s.to == node_id])

    def encode(self) -> bytes:
        return _ENCODER.encode(self)


class Opened(msgspec.Struct, frozen=True, kw_only=True):
    """A verified, decrypted message and the facts about it a receiver records."""

    id: bytes
    type: TypeName
    sender: bytes
    recipients: list[bytes]
    created: int
    expires: int
    body: bytes
    message: Message
    content_hash: bytes


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = Decoder[Envelope](Envelope, fmt="msgpack", what="envelope")


def header_bytes(env: Envelope) -> bytes:
    """PROTOCOL.md 5.1: the fixed binary header that is both AEAD AAD and signature input."""
    type_b = env.type.encode()
    return b"".join(
        [
            struct.pack(">B", env.v),
            env.id,
            struct.pack(">B", len(type_b)),
            type_b,
            env.sender,
            struct.pack(">H", len(env.recipients)),
            *env.recipients,
            struct.pack(">QQ", env.created, env.expires),
        ]
    )


def content_hash_of(header: bytes, payload: bytes) -> bytes:
    """PROTOCOL.md 5.7: SHA-256(ENVELOPE_HASH_LABEL || header || payload), without copying the
    payload; for callers that have built the header already."""
    h = hashlib.sha256(ENVELOPE_HASH_LABEL)
    h.update(header)
    h.update(payload)
    return h.digest()


def hpke_info(sender: bytes, recipient: bytes, msg_id: bytes) -> bytes:
    return HPKE_INFO_LABEL + struct.pack(">B", PROTOCOL_VERSION) + sender + recipient + msg_id


def seal(
    identity: Identity,
    recipients: Sequence[PublicIdentity],
    type_name: TypeName,
    body: bytes,
    *,
    now: int,
    ttl: int,
    msg_id: bytes | None = None,
    content_key: bytes | None = None,
) -> Envelope:
    """Sign and encrypt ``body`` (schema-encoded JSON) for every recipient."""
    if not recipients:
        raise ValidationError("to", "at least one recipient is needed")
    if len(recipients) > MAX_RECIPIENTS:
        raise TooManyRecipients(f"at most {MAX_RECIPIENTS} recipients per message")
    if not 0 < ttl <= MAX_TTL_SECONDS:
        raise ValidationError(
            "ttl", f"must be between 1 second and {MAX_TTL_SECONDS // 86400} days"
        )
    by_id = {r.node_id: r for r in recipients}
    if len(by_id) != len(recipients):
        raise ValidationError("to", "a recipient is listed twice")
    env = Envelope(
        v=PROTOCOL_VERSION,
        id=msg_id if msg_id is not None else os.urandom(16),
        type=type_name,
        sender=identity.node_id,
        recipients=sorted(by_id),
        created=now,
        expires=now + ttl,
        slots=[],
        payload=b"",
    )
    header = env.header()
    signature = identity.sign(MESSAGE_SIGNATURE_LABEL + header + body)
    key = content_key if content_key is not None else ChaCha20Poly1305.generate_key()
    env.payload = ChaCha20Poly1305(key).encrypt(CONTENT_NONCE, pad(signature + body), header)
    env.slots = [
        Slot(
            rid,
            SUITE.encrypt(key, by_id[rid].encryption_key(), hpke_info(env.sender, rid, env.id)),
        )
        for rid in env.recipients
    ]
    return env


def decode_envelope(data: bytes) -> Envelope:
    """Size limit first, then a typed decode; the result is structurally sound (PROTOCOL.md 6.1)."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise Oversize(f"envelope is {len(data)} bytes; the limit is {MAX_ENVELOPE_BYTES}")
    try:
        env = _DECODER.decode(data)
    except ValidationError as exc:
        raise Malformed(f"envelope field {exc.message}" if exc.path else exc.message) from exc
    if env.v != PROTOCOL_VERSION:
        raise Malformed(f"unsupported protocol version {env.v}")
    if len(env.recipients) > MAX_RECIPIENTS:
        raise TooManyRecipients(f"more than {MAX_RECIPIENTS} recipients")
    if not env.recipients or any(a >= b for a, b in itertools.pairwise(env.recipients)):
        raise Malformed("recipient list must be non-empty, sorted and without duplicates")
    slot_ids = {s.to for s in env.slots}
    if len(slot_ids) != len(env.slots) or len(slot_ids) > len(env.recipients):
        raise Malformed("key slots must be for distinct recipients, at most one each")
    if not env.created < env.expires <= env.created + MAX_TTL_SECONDS:
        raise Malformed("expiry must follow creation by at most 30 days")
    return env


def _decrypt(
    enc: bytes, keys: Sequence[X25519PrivateKey], env: Envelope, mine: bytes, header: bytes
) -> bytes:
    """Open the slot with the current decryption key, else one retired in its overlap."""
    info = hpke_info(env.sender, mine, env.id)
    for private in keys:
        try:
            key = SUITE.decrypt(enc, private, info)
            return ChaCha20Poly1305(key).decrypt(CONTENT_NONCE, env.payload, header)
        except (InvalidTag, ValueError):
            continue
    raise DecryptionFailed("decryption failed")


def _verifies(sign_key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        verify_signature(check_sign_key(sign_key), signature, data)
    except (BadSignature, Malformed):
        return False
    return True


def open_envelope(
    data: bytes,
    me: Identity,
    *,
    sender_of: Callable[[bytes], PublicIdentity],
    now: int,
    seen: Callable[[bytes, bytes], bool] = lambda _sender, _id: False,
    skew: int = DEFAULT_CLOCK_SKEW_SECONDS,
    older_keys: Callable[[bytes], Sequence[tuple[bytes, Rejected | None]]] = lambda _s: (),
) -> Opened:
    """Verify and decrypt; return the message or raise the one Rejected that explains why.

    ``sender_of`` maps a node id to a trusted identity or raises (UnknownSender, PeerRevoked);
    ``seen(sender, id)`` answers whether that sender's id was accepted before (ids are scoped
    by sender, so one peer cannot pre-empt another's; the node backs it with a table).
    ``older_keys(sender)``: signing keys the sender rotated away from, each with None while it
    may still sign (its overlap) or the Rejected to raise if it signed (KeyRetired); tried only
    when the current key does not verify.
    """
    env = decode_envelope(data)
    mine = me.node_id
    if mine not in env.recipients:
        raise NotForMe("this node is not among the signed recipients")
    slot = next((s for s in env.slots if s.to == mine), None)
    if slot is None:
        raise NotForMe("the envelope carries no key slot for this node")
    sender = sender_of(env.sender)
    if sender.node_id != env.sender:
        raise SenderMismatch("claimed sender does not match the trusted key")
    if now >= env.expires:
        raise Expired("message expired")
    if env.created > now + skew:
        raise ClockSkew("message was created in the future beyond the allowed clock skew")
    header = env.header()
    padded = _decrypt(slot.key, me.decryption_keys(now), env, mine, header)
    plain = unpad(padded)
    if len(plain) < SIGNATURE_BYTES:
        raise Malformed("plaintext is shorter than a signature")
    signature, body = plain[:SIGNATURE_BYTES], plain[SIGNATURE_BYTES:]
    signed = MESSAGE_SIGNATURE_LABEL + header + body
    try:
        verify_signature(sender.verifier(), signature, signed)
    except BadSignature as exc:
        for old_key, refusal in older_keys(env.sender):
            # A key the sender rotated away from (PROTOCOL.md 13.2): accepted while its
            # overlap runs; ``refusal`` says why one whose overlap ended (or that was revoked)
            # no longer may sign, so the sender hears that rather than "bad signature".
            if _verifies(old_key, signature, signed):
                if refusal is not None:
                    raise refusal from exc
                break
        else:
            raise BadSignature("message signature does not verify for the claimed sender") from exc
    try:
        message = decode_body(env.type, body)
    except ValidationError as exc:
        # The rule text may quote field values (plaintext): name only the field path.
        raise Malformed(
            f"signed body is not a valid {env.type} (field {exc.path or '<root>'})"
        ) from exc
    if seen(env.sender, env.id):
        raise Replay("message id was already accepted")
    return Opened(
        id=env.id,
        type=env.type,
        sender=env.sender,
        recipients=list(env.recipients),
        created=env.created,
        expires=env.expires,
        body=body,
        message=message,
        content_hash=content_hash_of(header, env.payload),
    )
