"""Receipts: a sender accepts only a receipt signed by the peer it sent to, naming it, listing the
message with the content hash it sealed."""

from __future__ import annotations

import msgspec
import pytest

from protocol.errors import BadSignature, Malformed
from protocol.identity import Identity
from protocol.receipt import SignedReceipt, receipt_covers, sign_receipt, verify_receipt
from tests.conftest import NOW

MID, HASH = b"\x01" * 16, b"\x02" * 32


def test_round_trip(alice: Identity, bob: Identity) -> None:
    r = sign_receipt(bob, alice.node_id, [(MID, HASH)], now=NOW)
    body = verify_receipt(r, signer=bob.public, sender=alice.node_id)
    assert receipt_covers(body, MID, HASH)
    assert not receipt_covers(body, MID, b"\x03" * 32)
    assert not receipt_covers(body, b"\x09" * 16, HASH)


def test_receipt_signed_by_another_node_is_refused(
    alice: Identity, bob: Identity, mallory: Identity
) -> None:
    forged = sign_receipt(mallory, alice.node_id, [(MID, HASH)], now=NOW)
    with pytest.raises(Malformed, match="another signer"):
        verify_receipt(forged, signer=bob.public, sender=alice.node_id)


def test_receipt_for_another_sender_is_refused(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    r = sign_receipt(bob, carol.node_id, [(MID, HASH)], now=NOW)
    with pytest.raises(Malformed):
        verify_receipt(r, signer=bob.public, sender=alice.node_id)


def test_tampered_receipt_body_fails_signature(alice: Identity, bob: Identity) -> None:
    r = msgspec.msgpack.decode(
        sign_receipt(bob, alice.node_id, [(MID, HASH)], now=NOW), type=SignedReceipt
    )
    body = bytearray(r.body)
    body[-1] ^= 1  # last byte of the content hash
    tampered = msgspec.msgpack.encode(SignedReceipt(bytes(body), r.sig))
    with pytest.raises(BadSignature):
        verify_receipt(tampered, signer=bob.public, sender=alice.node_id)


@pytest.mark.parametrize(
    "data", [b"", b"\xc1", msgspec.msgpack.encode({"body": b"x", "sig": b"y"})]
)
def test_garbage_receipt(alice: Identity, bob: Identity, data: bytes) -> None:
    with pytest.raises(Malformed):
        verify_receipt(data, signer=bob.public, sender=alice.node_id)
