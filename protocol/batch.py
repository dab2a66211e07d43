"""The peer API's batch format (PROTOCOL.md 11.2): several envelopes per POST, one answer each.

Batching is what lets a backed-up queue approach the crypto ceiling: one HTTP request, one
SQLite commit and one receipt signature serve many messages.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Literal

import msgspec

from protocol.decoding import Decoder
from protocol.errors import Malformed, Oversize, ValidationError
from protocol.labels import MAX_ENVELOPE_BYTES
from protocol.text import printable

BATCH_PATH = "/v1/envelopes"  # PROTOCOL.md 11.2
BATCH_CONTENT_TYPE = "application/vnd.borderlink.batch+msgpack"

Outcome = Literal["accepted", "duplicate", "rejected"]

# Reasons after which retrying the same bytes cannot succeed: the sender stops and reports.
PERMANENT_REASONS = frozenset(
    {
        "malformed",
        "oversize",
        "too_many_recipients",
        "not_recipient",
        "expired",
        "bad_signature",
        "decryption_failed",
        "replay",
        "channel_mismatch",
        "foreign_reference",
        "retired_key",
    }
)

Arrival = Literal["fresh", "duplicate", "replay"]


def classify_arrival(
    content_hash: bytes, known_hash: bytes | None, *, seen: bool, earlier_in_batch: bool
) -> Arrival:
    """What a receiver does with a verified message (PROTOCOL.md 11.3, 6.2 step 9).

    ``known_hash``: the content hash stored for this sender's id, if it is in the inbox. Same id
    and content: a re-delivery, answered with the original receipt. Same id with other content,
    an id already opened offline (``seen``), or twice in one batch: a replay. Ids are scoped by
    sender, so another peer's use of the same id is neither.
    """
    if known_hash is not None:
        return "duplicate" if known_hash == content_hash else "replay"
    if seen or earlier_in_batch:
        return "replay"
    return "fresh"


class ItemResult(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    outcome: Outcome
    id: bytes | None = None
    reason: str | None = None
    receipt: int | None = None  # index into BatchResponse.receipts


class BatchResponse(msgspec.Struct, forbid_unknown_fields=True):
    results: list[ItemResult]
    receipts: list[bytes]


class ErrorBody(msgspec.Struct):
    error: str
    message: str = ""


_ENC = msgspec.msgpack.Encoder()
_NOT_A_BATCH = "batch must be a non-empty MessagePack array of envelopes"


@cache
def _batch_decoder(max_items: int) -> Decoder[list[bytes]]:
    """The count is part of the type: msgspec refuses a longer array from its header, before it
    decodes a single item."""
    envelope = Annotated[bytes, msgspec.Meta(max_length=MAX_ENVELOPE_BYTES)]
    items = Annotated[list[envelope], msgspec.Meta(min_length=1, max_length=max_items)]
    return Decoder[list[bytes]](items, fmt="msgpack", what="batch")


def encode_batch(envelopes: list[bytes]) -> bytes:
    return _ENC.encode(envelopes)


def array_length(data: bytes) -> int | None:
    """The item count a MessagePack array header declares (fixarray, array 16, array 32), or
    None if ``data`` does not start with one. Read before decoding, so a body of two million
    tiny items is refused from its first five bytes instead of being decoded first."""
    if not data:
        return None
    first = data[0]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F
    if first == 0xDC and len(data) >= 3:
        return int.from_bytes(data[1:3], "big")
    if first == 0xDD and len(data) >= 5:
        return int.from_bytes(data[1:5], "big")
    return None


def decode_batch(data: bytes, *, max_items: int) -> list[bytes]:
    declared = array_length(data)
    if declared is not None and declared > max_items:
        raise Malformed(f"batch holds more than {max_items} envelopes")
    try:
        return _batch_decoder(max_items).decode(data)
    except ValidationError as exc:
        if exc.kind in ("syntax", "encoding", "empty"):
            raise Malformed("batch is not valid MessagePack") from exc
        if exc.kind == "too_long":
            if exc.path:  # "[3]": one item
                raise Oversize("an envelope in the batch is too large") from exc
            raise Malformed(f"batch holds more than {max_items} envelopes") from exc
        raise Malformed(_NOT_A_BATCH) from exc


_RESPONSE = Decoder[BatchResponse](BatchResponse, fmt="msgpack", what="batch answer")
_ERROR = Decoder[ErrorBody](ErrorBody, what="error answer")


def decode_response(data: bytes) -> BatchResponse:
    try:
        return _RESPONSE.decode(data)
    except ValidationError as exc:
        raise Malformed(f"batch answer is not well formed ({exc.message})") from exc


def error_reason(data: bytes) -> str:
    """The reason code of a peer's error answer, escaped for display; a body that is not one
    of ours is "unexpected answer"."""
    try:
        return printable(_ERROR.decode(data).error)
    except ValidationError:
        return "unexpected answer"


def encode_response(resp: BatchResponse) -> bytes:
    return _ENC.encode(resp)
