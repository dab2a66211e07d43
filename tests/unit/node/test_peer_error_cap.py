"""A peer's error answer becomes the outbox entry's last error (node/delivery_rules.py): what the
peer said is kept for the operator, escaped and cut to 512 characters, however much it sent."""

from __future__ import annotations

import re

import msgspec
import pytest

from node.delivery_rules import MAX_ERROR, settle
from node.storage import DueMessage
from tests.conftest import NOW, fixed_identity

ALICE, BOB = fixed_identity("alice"), fixed_identity("bob")
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def due(n: int) -> DueMessage:
    return DueMessage(bytes([n]) * 16, b"envelope", bytes([n]) * 32, NOW + 3600, 0)


@pytest.mark.parametrize(("status", "reason"), [(422, "expired"), (503, "unavailable")])
def test_regression_a_peer_could_store_megabytes_of_error_text_in_the_outbox(
    status: int, reason: str
) -> None:
    said = "\x1b]0;pwned\x07 \x9b2J \u202eevil " + "x" * (4 * 1024 * 1024)
    body = msgspec.json.encode({"error": reason, "message": said})
    out = settle([due(1)], status, body, peer="bob", signer=BOB.public, me=ALICE.node_id)
    [text] = [t for _, t in out.rejected] + [t for _, t in out.retry]
    assert len(text) <= MAX_ERROR == 512
    assert text.endswith("\u2026")
    assert text.startswith(
        f"bob refused the message ({reason}, HTTP {status}): "
        "\\u001b]0;pwned\\u0007 \\u009b2J \\u202eevil xxx"
    )
    assert not RAW_CONTROL.search(text)


def test_a_short_error_is_kept_whole() -> None:
    body = msgspec.json.encode({"error": "malformed", "message": "envelope field v: bad"})
    out = settle([due(1)], 400, body, peer="bob", signer=BOB.public, me=ALICE.node_id)
    assert out.rejected == [
        (due(1).id, "bob refused the message (malformed, HTTP 400): envelope field v: bad")
    ]
