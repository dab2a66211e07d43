"""Delivery's decisions as pure functions: what each answer settles for each row, and when."""

from __future__ import annotations

import random

import msgspec
import pytest

from node.config import Delivery
from node.delivery_rules import Settlement, backoff, failed, settle, split_expired
from node.storage import DueMessage
from protocol.batch import BatchResponse, ItemResult, encode_response
from protocol.identity import Identity
from protocol.receipt import sign_receipt
from tests.conftest import NOW, fixed_identity

ALICE, BOB = fixed_identity("alice"), fixed_identity("bob")


def due(n: int, *, expires: int = NOW + 3600, attempts: int = 0) -> DueMessage:
    return DueMessage(bytes([n]) * 16, b"envelope", bytes([n]) * 32, expires, attempts)


def error(reason: str) -> bytes:
    return msgspec.json.encode({"error": reason, "message": "text"})


def answer(results: list[ItemResult], covered: list[DueMessage], signer: Identity = BOB) -> bytes:
    entries = [(r.id, r.content_hash) for r in covered]
    receipt = sign_receipt(signer, ALICE.node_id, entries, now=NOW)
    return encode_response(BatchResponse(results, [receipt]))


def settled(rows: list[DueMessage], status: int, body: bytes) -> Settlement:
    return settle(rows, status, body, peer="bob", signer=BOB.public, me=ALICE.node_id)


def test_backoff_doubles_within_jitter_up_to_the_cap() -> None:
    policy = Delivery(backoff_base=2.0, backoff_max=100.0)
    rng = random.Random(1)
    for attempts, ideal in [(0, 2.0), (1, 4.0), (3, 16.0), (6, 100.0), (10_000, 100.0)]:
        assert 0.5 * ideal <= backoff(attempts, policy, rng) <= ideal


def test_split_expired_drops_what_expired_by_now() -> None:
    rows = [due(1, expires=NOW), due(2, expires=NOW + 1), due(3, expires=NOW - 5)]
    live, expired = split_expired(rows, float(NOW))
    assert live == [rows[1]]
    assert expired == [rows[0].id, rows[2].id]


def test_failed_retries_every_row_with_the_error() -> None:
    rows = [due(1), due(2)]
    assert failed(rows, "down") == Settlement(retry=[(rows[0], "down"), (rows[1], "down")])


@pytest.mark.parametrize("reason", ["expired", "not_recipient", "replay", "malformed"])
def test_a_permanent_error_answer_to_one_message_rejects_it(reason: str) -> None:
    row = due(1)
    text = f"bob refused the message ({reason}, HTTP 422): text"
    assert settled([row], 422, error(reason)) == Settlement(
        rejected=[(row.id, text)], refused=reason
    )


@pytest.mark.parametrize(
    ("status", "body", "shown"),
    [
        (503, error("unavailable"), "unavailable, HTTP 503): text"),
        (429, error("rate_limited"), "rate_limited, HTTP 429): text"),
        (422, error("clock_skew"), "clock_skew, HTTP 422): text"),
        (502, b"<html>bad gateway</html>", "unexpected answer, HTTP 502)"),
        (302, b"", "unexpected answer, HTTP 302)"),
    ],
)
def test_other_error_answers_are_retried(status: int, body: bytes, shown: str) -> None:
    rows = [due(1)]
    assert settled(rows, status, body) == failed(rows, f"bob refused the message ({shown}")


def test_a_permanent_error_answer_to_a_batch_is_retried() -> None:
    rows = [due(1), due(2)]
    assert settled(rows, 422, error("expired")) == failed(
        rows, "bob refused the message (expired, HTTP 422): text"
    )


def test_each_result_settles_its_row() -> None:
    rows = [due(i) for i in range(5)]
    results = [
        ItemResult("accepted", id=rows[0].id, receipt=0),
        ItemResult("duplicate", id=rows[1].id, receipt=0),
        ItemResult("rejected", id=rows[2].id, reason="bad_signature"),
        ItemResult("rejected", id=rows[3].id, reason="unknown_sender"),  # trust may change
        ItemResult("accepted", id=rows[4].id, receipt=7),  # no such receipt
    ]
    body = answer(results, rows[:2] + rows[4:])
    receipt = msgspec.msgpack.decode(body, type=BatchResponse).receipts[0]
    unconfirmed = "bob did not confirm the message (no valid receipt)"
    assert settled(rows, 200, body) == Settlement(
        delivered=[(rows[0].id, receipt), (rows[1].id, receipt)],
        rejected=[(rows[2].id, "bob refused the message (bad_signature)")],
        retry=[(rows[3], unconfirmed), (rows[4], unconfirmed)],
    )


def test_a_receipt_must_cover_the_id_with_the_content_hash_sealed() -> None:
    row = due(1)
    other_hash = DueMessage(row.id, b"e", b"x" * 32, row.expires, 0)
    body = answer([ItemResult("accepted", id=row.id, receipt=0)], [other_hash])
    assert settled([row], 200, body).retry == [
        (row, "bob did not confirm the message (no valid receipt)")
    ]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"\xc1", "batch answer is not well formed"),
        (
            answer([ItemResult("accepted", receipt=0)], [due(1)], fixed_identity("mallory")),
            "receipt names another signer",
        ),
        (answer([], [due(1)]), "bob answered for 0 of 1 messages"),
    ],
    ids=["not-msgpack", "other-signer", "count"],
)
def test_an_answer_that_does_not_verify_retries_everything(body: bytes, detail: str) -> None:
    rows = [due(1)]
    got = settled(rows, 200, body)
    assert not got.delivered and not got.rejected
    [(row, text)] = got.retry
    assert row == rows[0]
    assert text.startswith("bob sent an invalid answer or receipt: ") and detail in text


def test_a_receipt_for_another_sender_is_not_proof() -> None:
    row = due(1)
    receipt = sign_receipt(
        BOB, fixed_identity("carol").node_id, [(row.id, row.content_hash)], now=NOW
    )
    body = encode_response(BatchResponse([ItemResult("accepted", receipt=0)], [receipt]))
    [(_, text)] = settled([row], 200, body).retry
    assert text.startswith("bob sent an invalid answer or receipt: ")


def test_11_2_a_sender_backs_off_after_a_429() -> None:
    """A 429 (the receiver's budget, which a refused batch empties) is no final answer: every row
    of the batch is retried, and the next attempt waits at least half the base backoff, growing
    with each attempt, never at once."""
    rows = [due(1, attempts=0), due(2, attempts=3)]
    out = settled(rows, 429, error("rate_limited"))
    assert out.rejected == [] and out.delivered == []
    assert [r for r, _ in out.retry] == rows
    policy, rng = Delivery(), random.Random(7)
    waits = [backoff(r.attempts, policy, rng) for r, _ in out.retry]
    assert waits[0] >= 0.5 * policy.backoff_base and waits[1] >= 0.5 * policy.backoff_base * 2**3
