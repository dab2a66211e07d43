"""What delivery decides, as pure functions: when to try again, and what a peer's answer settles.

No I/O, no clock, no storage: the worker (node/delivery.py) passes ``now``, the due rows and the
peer's answer in, and applies the :class:`Settlement` that comes out in one unit of work. Keeping
the decisions here is what lets tests state them row by row (PROTOCOL.md 11.3, 11.4) without a
network, a database or real time. Every error said here is stored as the entry's last error and
shown by ``borderlink outbox``: a peer's words in it are escaped and the whole is cut to
:data:`MAX_ERROR` characters, however much the peer wrote.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from node.config import Delivery
from node.runtime import in_process
from node.storage.rows import DueMessage
from protocol.batch import (
    PERMANENT_REASONS,
    BatchResponse,
    ErrorBody,
    decode_response,
    error_reason,
)
from protocol.errors import BorderlinkError
from protocol.identity import PublicIdentity
from protocol.receipt import ReceiptBody, receipt_covers, verify_receipt
from protocol.text import escaped

MAX_ERROR = 512  # characters of an error kept for the operator (a peer may send megabytes)


def backoff(attempts: int, policy: Delivery, rng: random.Random) -> float:
    """Delay before try number ``attempts + 1``: base * 2^attempts, capped, times U(0.5, 1).

    The jitter keeps senders that failed together (a peer's outage) from retrying together."""
    raw = min(policy.backoff_max, policy.backoff_base * float(1 << min(attempts, 30)))
    return raw * rng.uniform(0.5, 1.0)


def split_expired(rows: Sequence[DueMessage], now: float) -> tuple[list[DueMessage], list[bytes]]:
    """(rows still worth sending, ids of those whose message expired at or before ``now``): an
    expired message would only be refused by the peer, so it is never sent."""
    live = [r for r in rows if r.expires > now]
    return live, [r.id for r in rows if r.expires <= now]


@dataclass(frozen=True)
class Settlement:
    """What one answer (or one failure) means for each row of a batch."""

    delivered: list[tuple[bytes, bytes]] = field(default_factory=list)  # (id, receipt)
    rejected: list[tuple[bytes, str]] = field(default_factory=list)  # (id, error): never retried
    retry: list[tuple[DueMessage, str]] = field(default_factory=list)  # (row, error)
    # The reason code when the peer refused the whole request for good (logged as such).
    refused: str | None = None


def failed(rows: Sequence[DueMessage], error: str) -> Settlement:
    """No usable answer: every row is retried later, with the same error."""
    error = escaped(error, MAX_ERROR)
    return Settlement(retry=[(r, error) for r in rows])


def refusal(peer: str, status: int, body: bytes, *, what: str = "the message") -> tuple[str, str]:
    """The reason code of a peer's error answer and the error in words: the reason, the HTTP
    status and what the peer said, escaped and cut to :data:`MAX_ERROR` characters."""
    reason = error_reason(body)
    text = f"{peer} refused {what} ({reason}, HTTP {status})"
    try:
        said = msgspec.json.decode(body, type=ErrorBody).message
    except (msgspec.DecodeError, msgspec.ValidationError):
        said = ""
    if said:
        text += f": {said}"
    return reason, escaped(text, MAX_ERROR)


def receipts_of(status: int, body: bytes) -> list[bytes]:
    """The receipts a 200 answer carries (none for anything else or a body that is no answer):
    what :func:`verify_receipts` checks before :func:`settle` reads the rest."""
    if status != 200:
        return []
    try:
        return decode_response(body).receipts
    except BorderlinkError:
        return []


@in_process
def verify_receipts(
    receipts: list[bytes], signer: PublicIdentity, me: bytes
) -> list[ReceiptBody] | str:
    """Each receipt verified (signed by ``signer``, addressed to ``me``), or why one is not."""
    try:
        return [verify_receipt(r, signer=signer, sender=me) for r in receipts]
    except BorderlinkError as exc:
        return exc.message


def settle(
    rows: Sequence[DueMessage],
    status: int,
    body: bytes,
    *,
    peer: str,
    signer: PublicIdentity,
    me: bytes,
    verified: list[ReceiptBody] | str | None = None,
) -> Settlement:
    """What the peer's answer (HTTP ``status`` and ``body``) to a batch of ``rows`` settles.

    A message counts as delivered only with a receipt signed by ``signer``, addressed to ``me``,
    covering its id and content hash. An error answer or a refused item is final only for a
    reason retrying cannot fix (``PERMANENT_REASONS``), and an error answer only when the batch
    held one message: for a larger batch it is not known which message the peer meant.
    ``verified``: what :func:`verify_receipts` said of :func:`receipts_of` this answer, when the
    caller had it checked elsewhere (a crypto worker); None checks them here.
    """
    if status != 200:
        reason, text = refusal(peer, status, body)
        if reason in PERMANENT_REASONS and len(rows) == 1:
            return Settlement(rejected=[(rows[0].id, text)], refused=reason)
        return failed(rows, text)
    invalid = f"{peer} sent an invalid answer or receipt"
    try:
        resp = decode_response(body)
    except BorderlinkError as exc:
        return failed(rows, f"{invalid}: {exc.message}")
    if len(resp.results) != len(rows):
        counted = f"{peer} answered for {len(resp.results)} of {len(rows)} messages"
        return failed(rows, f"{invalid}: {counted}")
    if verified is None:
        verified = verify_receipts(resp.receipts, signer, me)
    if isinstance(verified, str):
        return failed(rows, f"{invalid}: {verified}")
    if len(verified) != len(resp.receipts):
        return failed(rows, f"{invalid}: receipts not checked")
    return _per_item(rows, resp, verified, peer)


def _per_item(
    rows: Sequence[DueMessage], resp: BatchResponse, verified: list[ReceiptBody], peer: str
) -> Settlement:
    out = Settlement()
    for row, result in zip(rows, resp.results, strict=True):
        if (
            result.outcome in ("accepted", "duplicate")
            and result.receipt is not None
            and 0 <= result.receipt < len(verified)
            and receipt_covers(verified[result.receipt], row.id, row.content_hash)
        ):
            out.delivered.append((row.id, resp.receipts[result.receipt]))
        elif result.outcome == "rejected" and result.reason in PERMANENT_REASONS:
            out.rejected.append((row.id, escaped(f"{peer} refused the message ({result.reason})")))
        else:
            out.retry.append((row, f"{peer} did not confirm the message (no valid receipt)"))
    return out
