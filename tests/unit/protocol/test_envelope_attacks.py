"""Every envelope security property, performed as an attack with the exact rejection asserted.

PROTOCOL.md sections 5-6. Each test would pass an attacker's message if its check were removed.
"""

from __future__ import annotations

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from protocol.envelope import (
    CONTENT_NONCE,
    SUITE,
    Envelope,
    Slot,
    decode_envelope,
    hpke_info,
    open_envelope,
    seal,
)
from protocol.errors import (
    BadSignature,
    ClockSkew,
    DecryptionFailed,
    Expired,
    Malformed,
    NotForMe,
    Oversize,
    PeerRevoked,
    Rejected,
    Replay,
    TooManyRecipients,
    UnknownSender,
)
from protocol.identity import Identity
from protocol.labels import MAX_ENVELOPE_BYTES, MAX_RECIPIENTS
from protocol.schemas import encode_body, template
from tests import attacker
from tests.conftest import NOW, directory, fixed_identity

BODY = encode_body(template("seizure-alert"))
DAY = 86400


def sealed(sender: Identity, *recipients: Identity, body: bytes = BODY, **kw: object) -> Envelope:
    args: dict[str, object] = {"now": NOW, "ttl": DAY}
    args.update(kw)
    return seal(sender, [r.public for r in recipients], "seizure-alert", body, **args)  # type: ignore[arg-type]


def craft(
    signer: Identity,
    claimed_sender: bytes,
    recipients: list[Identity],
    signed_recipients: list[bytes],
    body: bytes = BODY,
    signature: bytes | None = None,
) -> bytes:
    """The shared attacker's envelope, at the fixed test time and id."""
    return attacker.craft(
        signer,
        claimed_sender,
        [r.public for r in recipients],
        signed_recipients,
        body=body,
        signature=signature,
        msg_id=b"\x42" * 16,
        created=NOW,
        expires=NOW + DAY,
    )


def test_round_trip_every_type(alice: Identity, bob: Identity, carol: Identity) -> None:
    for type_name in ("seizure-alert", "risk-profile", "feedback", "retraction"):
        body = encode_body(template(type_name))
        env = seal(alice, [bob.public, carol.public], type_name, body, now=NOW, ttl=DAY)  # type: ignore[arg-type]
        for me in (bob, carol):
            opened = open_envelope(env.encode(), me, sender_of=directory(alice), now=NOW + 5)
            assert opened.body == body and opened.type == type_name
            assert opened.message == template(type_name)
            assert opened.sender == alice.node_id
            assert opened.recipients == sorted([bob.node_id, carol.node_id])


def test_delivered_copy_with_only_own_slot_opens(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    env = sealed(alice, bob, carol)
    copy = env.for_recipient(bob.node_id)
    assert [s.to for s in copy.slots] == [bob.node_id]
    assert copy.content_hash() == env.content_hash()
    open_envelope(copy.encode(), bob, sender_of=directory(alice), now=NOW)
    with pytest.raises(NotForMe, match="no key slot"):
        open_envelope(copy.encode(), carol, sender_of=directory(alice), now=NOW)


def test_every_single_bit_flip_is_rejected_without_plaintext(
    alice: Identity, bob: Identity
) -> None:
    data = sealed(alice, bob).encode()
    for i in range(len(data)):
        tampered = bytearray(data)
        tampered[i] ^= 1 << (i % 8)
        with pytest.raises(Rejected):
            open_envelope(bytes(tampered), bob, sender_of=directory(alice), now=NOW)


@pytest.mark.parametrize(
    ("field", "mutate", "error"),
    [
        (
            "payload",
            lambda e: setattr(e, "payload", e.payload[:-1] + bytes([e.payload[-1] ^ 1])),
            DecryptionFailed,
        ),
        (
            "slot",
            lambda e: setattr(
                e,
                "slots",
                [Slot(e.slots[0].to, e.slots[0].key[:-1] + bytes([e.slots[0].key[-1] ^ 1]))],
            ),
            DecryptionFailed,
        ),
        ("created", lambda e: setattr(e, "created", e.created - 1), DecryptionFailed),
        ("expires", lambda e: setattr(e, "expires", e.expires + 1), DecryptionFailed),
        ("id", lambda e: setattr(e, "id", b"\x00" * 16), DecryptionFailed),
        ("type", lambda e: setattr(e, "type", "risk-profile"), DecryptionFailed),
    ],
)
def test_tampered_field_is_rejected(
    alice: Identity, bob: Identity, field: str, mutate, error
) -> None:  # type: ignore[no-untyped-def]
    env = sealed(alice, bob)
    mutate(env)
    with pytest.raises(error):
        open_envelope(env.encode(), bob, sender_of=directory(alice), now=NOW)


def test_forged_signature_claiming_a_trusted_sender(
    alice: Identity, bob: Identity, mallory: Identity
) -> None:
    """Mallory encrypts to Bob correctly but can only sign with his own key."""
    data = craft(mallory, alice.node_id, [bob], [bob.node_id])
    with pytest.raises(BadSignature, match="claimed sender"):
        open_envelope(data, bob, sender_of=directory(alice, mallory), now=NOW)


def test_recipient_reencrypting_to_third_party_is_rejected(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    """Davis's surreptitious forwarding: Bob re-wraps Alice's signed message for Carol."""
    env = sealed(alice, bob)
    opened = open_envelope(env.encode(), bob, sender_of=directory(alice), now=NOW)
    # Bob learned signature || body. Variant 1: he re-signs nothing, relabels the recipients.
    key = SUITE.decrypt(
        env.slots[0].key, bob.decryption_key, hpke_info(alice.node_id, bob.node_id, env.id)
    )
    from protocol.padding import unpad

    plain = unpad(ChaCha20Poly1305(key).decrypt(CONTENT_NONCE, env.payload, env.header()))
    signature = plain[:64]
    forwarded = craft(
        bob, alice.node_id, [carol], [carol.node_id], body=opened.body, signature=signature
    )
    with pytest.raises(BadSignature):
        open_envelope(forwarded, carol, sender_of=directory(alice, bob), now=NOW)
    # Variant 2: he keeps the signed recipient list (only Bob) and adds a slot for Carol.
    kept = craft(bob, alice.node_id, [carol], [bob.node_id], body=opened.body, signature=signature)
    with pytest.raises(NotForMe, match="signed recipients"):
        open_envelope(kept, carol, sender_of=directory(alice, bob), now=NOW)


def test_wrong_recipient(alice: Identity, bob: Identity, carol: Identity) -> None:
    with pytest.raises(NotForMe):
        open_envelope(sealed(alice, bob).encode(), carol, sender_of=directory(alice), now=NOW)


def test_unknown_sender_is_refused_before_any_crypto(alice: Identity, bob: Identity) -> None:
    with pytest.raises(UnknownSender):
        open_envelope(sealed(alice, bob).encode(), bob, sender_of=directory(), now=NOW)


def test_revoked_sender(alice: Identity, bob: Identity) -> None:
    def revoked(_node_id: bytes):  # type: ignore[no-untyped-def]
        raise PeerRevoked("sender 'bar-pcu' has been revoked")

    with pytest.raises(PeerRevoked):
        open_envelope(sealed(alice, bob).encode(), bob, sender_of=revoked, now=NOW)


def test_expired_message(alice: Identity, bob: Identity) -> None:
    data = sealed(alice, bob, ttl=60).encode()
    open_envelope(data, bob, sender_of=directory(alice), now=NOW + 59)
    with pytest.raises(Expired):
        open_envelope(data, bob, sender_of=directory(alice), now=NOW + 60)


def test_created_in_the_future_beyond_skew(alice: Identity, bob: Identity) -> None:
    data = sealed(alice, bob, now=NOW + 301).encode()
    with pytest.raises(ClockSkew):
        open_envelope(data, bob, sender_of=directory(alice), now=NOW)
    open_envelope(
        sealed(alice, bob, now=NOW + 299).encode(), bob, sender_of=directory(alice), now=NOW
    )


def test_replay_is_detected_only_after_authentication(
    alice: Identity, bob: Identity, mallory: Identity
) -> None:
    env = sealed(alice, bob)
    with pytest.raises(Replay):
        open_envelope(
            env.encode(), bob, sender_of=directory(alice), now=NOW, seen=lambda _s, _i: True
        )
    # An unauthenticated message with a seen id learns nothing about the id: it fails on crypto.
    forged = craft(mallory, alice.node_id, [bob], [bob.node_id])
    with pytest.raises(BadSignature):
        open_envelope(forged, bob, sender_of=directory(alice), now=NOW, seen=lambda _s, _i: True)


def test_oversize_envelope_refused_before_decoding(alice: Identity, bob: Identity) -> None:
    with pytest.raises(Oversize):
        open_envelope(b"\x00" * (MAX_ENVELOPE_BYTES + 1), bob, sender_of=directory(alice), now=NOW)


def test_oversize_body_refused_at_seal(alice: Identity, bob: Identity) -> None:
    with pytest.raises(Oversize, match="limit"):
        sealed(alice, bob, body=b"x" * 600_000)


def test_too_many_recipients_refused_before_crypto(alice: Identity, bob: Identity) -> None:
    env = sealed(alice, bob)
    env.recipients = sorted([bob.node_id] + [bytes([i]) * 32 for i in range(MAX_RECIPIENTS)])
    calls = []

    def sender_of(node_id: bytes):  # type: ignore[no-untyped-def]
        calls.append(node_id)
        return alice.public

    with pytest.raises(TooManyRecipients):
        open_envelope(env.encode(), bob, sender_of=sender_of, now=NOW)
    assert calls == []
    with pytest.raises(TooManyRecipients):
        seal(
            alice,
            [fixed_identity(f"r{i}").public for i in range(MAX_RECIPIENTS + 1)],
            "seizure-alert",
            BODY,
            now=NOW,
            ttl=DAY,
        )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80",
        b"\xc1",
        msgspec.msgpack.encode({"v": 1}),
        msgspec.msgpack.encode([1, 2, 3]),
        msgspec.msgpack.encode({"v": 2, "id": b"x" * 16}),
    ],
)
def test_malformed_envelopes(alice: Identity, bob: Identity, data: bytes) -> None:
    with pytest.raises(Malformed):
        open_envelope(data, bob, sender_of=directory(alice), now=NOW)


def test_unsorted_or_duplicate_recipients_are_malformed(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    env = sealed(alice, bob, carol)
    env.recipients = list(reversed(env.recipients))
    with pytest.raises(Malformed, match="sorted"):
        decode_envelope(env.encode())
    env.recipients = [bob.node_id, bob.node_id]
    with pytest.raises(Malformed, match="sorted"):
        decode_envelope(env.encode())


def test_padding_hides_length_within_a_bucket(alice: Identity, bob: Identity) -> None:
    small = sealed(alice, bob, body=encode_body(template("retraction")))
    large = sealed(alice, bob, body=encode_body(template("seizure-alert"))[:900])
    assert len(small.payload) == len(large.payload) == 1024 + 16


def test_error_messages_carry_no_key_material(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    secrets = [i.secret_bytes().hex()[:16] for i in (alice, bob, carol)]
    data = sealed(alice, bob).encode()
    for me in (bob, carol):
        for tweak in (data, data[:-3] + b"abc"):
            try:
                open_envelope(tweak, me, sender_of=directory(alice), now=NOW)
            except Rejected as exc:
                assert not any(s in str(exc) or s in repr(exc) for s in secrets)


def test_duplicate_key_slots_are_malformed(alice: Identity, bob: Identity) -> None:
    env = sealed(alice, bob)
    env.slots = [env.slots[0], env.slots[0]]
    with pytest.raises(Malformed, match="distinct recipients"):
        decode_envelope(env.encode())
