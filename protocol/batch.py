"""The peer API's batch format (PROTOCOL.md 11.2): several envelopes per POST, one answer each.

Batching is what lets a backed-up queue approach the crypto ceiling: one HTTP request, one
SQLite commit and one receipt signature serve many messages.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from protocol.decoding import Decoder
from protocol.errors import Malformed, Oversize, ValidationError
from protocol.labels import MAX_ENVELOPE_BYTES

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
    }
)

HTTP_STATUS = {
    "malformed": 400,
    "too_many_recipients": 400,
    "clock_skew": 422,
    "not_recipient": 403,
    "unknown_sender": 403,
    "oversize": 413,
    "expired": 422,
    "decryption_failed": 422,
    "bad_signature": 422,
    "replay": 409,
    "rate_limited": 429,
    "body_timeout": 408,
    "unavailable": 503,
}


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
_ITEMS = Annotated[
    list[Annotated[bytes, msgspec.Meta(max_length=MAX_ENVELOPE_BYTES)]], msgspec.Meta(min_length=1)
]


_ITEMS_DECODER = Decoder[list[bytes]](_ITEMS, fmt="msgpack", what="batch")


def encode_batch(envelopes: list[bytes]) -> bytes:
    return _ENC.encode(envelopes)


def decode_batch(data: bytes, *, max_items: int) -> list[bytes]:
    try:
        items = _ITEMS_DECODER.decode(data)
    except ValidationError as exc:
        if exc.kind == "too_long" and exc.path:
            raise Oversize("an envelope in the batch is too large") from exc
        if exc.kind in ("syntax", "encoding", "empty"):
            raise Malformed("batch is not valid MessagePack") from exc
        raise Malformed("batch must be a non-empty MessagePack array of envelopes") from exc
    if len(items) > max_items:
        raise Malformed(f"batch holds more than {max_items} envelopes")
    return items


def encode_response(resp: BatchResponse) -> bytes:
    return _ENC.encode(resp)
