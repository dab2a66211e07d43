"""Signed delivery receipts (PROTOCOL.md 11.3): the recipient's proof that it stored messages.

One receipt covers a batch: the recipient signs the exact MessagePack bytes of a body listing
(message id, content hash) pairs, so a backed-up queue costs one signature per POST, not per
message. The sender verifies that the receipt names it, comes from the peer it sent to, and lists
each message with the content hash it sealed.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

import msgspec

from protocol.decoding import Decoder
from protocol.errors import BadSignature, Malformed, ValidationError
from protocol.identity import Identity, PublicIdentity, verify_signature
from protocol.labels import RECEIPT_SIGNATURE_LABEL

Id16 = Annotated[bytes, msgspec.Meta(min_length=16, max_length=16)]
Hash32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
MAX_RECEIPT_ENTRIES = 1024


class ReceiptEntry(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    id: Id16
    content_hash: Hash32


class ReceiptBody(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    recipient: Hash32  # node id of the signer
    sender: Hash32  # node id the messages came from
    time: int
    entries: Annotated[list[ReceiptEntry], msgspec.Meta(max_length=MAX_RECEIPT_ENTRIES)]


class SignedReceipt(msgspec.Struct, forbid_unknown_fields=True):
    body: bytes
    sig: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]


_BODY = Decoder[ReceiptBody](ReceiptBody, fmt="msgpack", what="receipt body")
_SIGNED = Decoder[SignedReceipt](SignedReceipt, fmt="msgpack", what="receipt")
_ENC = msgspec.msgpack.Encoder()


def receipt_digest(receipt: bytes) -> str:
    """How the audit log names a receipt (PROTOCOL.md 12.1 ``hashes.receipt``): SHA-256, hex."""
    return hashlib.sha256(receipt).hexdigest()


def sign_receipt(
    me: Identity, sender: bytes, entries: list[tuple[bytes, bytes]], *, now: int
) -> bytes:
    body = _ENC.encode(
        ReceiptBody(1, me.node_id, sender, now, [ReceiptEntry(i, h) for i, h in entries])
    )
    return _ENC.encode(SignedReceipt(body, me.sign(RECEIPT_SIGNATURE_LABEL + body)))


def verify_receipt(data: bytes, *, signer: PublicIdentity, sender: bytes) -> ReceiptBody:
    """Check signature, signer and addressee; return the body whose entries the caller matches."""
    try:
        signed = _SIGNED.decode(data)
        body = _BODY.decode(signed.body)
    except ValidationError as exc:
        raise Malformed(f"receipt is not well formed ({exc.message})") from exc
    if body.v != 1 or body.recipient != signer.node_id or body.sender != sender:
        raise Malformed("receipt names another signer, sender or version")
    try:
        verify_signature(signer.verifier(), signed.sig, RECEIPT_SIGNATURE_LABEL + signed.body)
    except BadSignature as exc:
        raise BadSignature("receipt signature does not verify") from exc
    return body


def receipt_covers(body: ReceiptBody, msg_id: bytes, content_hash: bytes) -> bool:
    return any(e.id == msg_id and e.content_hash == content_hash for e in body.entries)
