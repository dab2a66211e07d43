"""Key changes as the node applies them (PROTOCOL.md 13): status warns before a card expires and
names what a custodian must do; nothing is sent to a peer whose card expired, or that is blocked
or revoked; a revoked sender's envelopes are refused; a receipt signed with a replaced key after
its overlap does not count as delivered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from keys.card import make_card
from keys.keyring import decode_keyring, rotate
from keys.statements import make_revocation
from keys.tls import make_certificate
from node.keychange import apply_statement
from node.peer_info import parsed_card
from node.peers import trusted_by_name
from node.status import keys_status, snapshot
from node.storage import Store
from node.storage.sqlite import open_store
from protocol.errors import PeerBlocked, PeerRevoked, TrustError
from protocol.identity import Identity
from protocol.receipt import sign_receipt
from tests.conftest import NOW, fixed_identity
from tests.peering import peer_record, rotated_card

ALICE, BOB = fixed_identity("alice"), fixed_identity("bob")
DAY = 86400


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "alice.db")
    with s.unit(NOW) as u:
        u.put_peer(peer_record(BOB, "bob"))  # its card runs until NOW + 1 day
    yield s
    s.close()


def _own_card(until: int):  # type: ignore[no-untyped-def]
    return make_card(
        ALICE,
        name="alice",
        unit_type="PCU",
        country="ME",
        location="MEBAR",
        endpoints=["https://127.0.0.1:1"],
        valid_from=NOW - 10,
        valid_until=until,
        tls_cert=make_certificate(ALICE, now=NOW),
    )


def test_13_3_status_warns_30_days_ahead_and_when_expired(store: Store) -> None:
    snap = snapshot(store, ALICE.node_id)
    calm = keys_status(_own_card(NOW + 90 * DAY), snap, NOW - 40 * DAY)
    assert calm.warnings == []  # bob's card is also months away from then
    soon = keys_status(_own_card(NOW + 10 * DAY), snap, NOW)
    assert any("this node's card expires on" in w and "keys renew" in w for w in soon.warnings)
    assert any("the card of peer 'bob' expires on" in w for w in soon.warnings)
    late = keys_status(_own_card(NOW + 10 * DAY), snap, NOW + 2 * DAY)
    assert any("the card of peer 'bob' EXPIRED on" in w for w in late.warnings)


def test_13_3_nothing_is_sent_under_an_expired_card(store: Store) -> None:
    assert [p.name for p in trusted_by_name(store, ["bob"], now=NOW)] == ["bob"]
    with pytest.raises(TrustError, match="expired on 2026-09-22"):
        trusted_by_name(store, ["bob"], now=NOW + 2 * DAY)


def test_13_7_a_blocked_peer_gets_nothing_and_says_the_command(store: Store) -> None:
    rec = store.peer_by_name("bob")
    assert rec is not None
    new = peer_record(Identity.generate(), "bob")
    with store.unit(NOW) as u:
        u.put_peer(msgspec.structs.replace(rec, status="blocked", pending_card=new.card))
    with pytest.raises(PeerBlocked) as caught:
        trusted_by_name(store, ["bob"], now=NOW)
    assert caught.value.exit_code == 4
    assert f'borderlink peers verify bob --fingerprint "{new.fingerprint}"' in caught.value.message
    warnings = keys_status(_own_card(NOW + 90 * DAY), snapshot(store, ALICE.node_id), NOW).warnings
    assert any("changed its key and is blocked" in w for w in warnings)


def test_13_3_a_revoked_sender_gets_nothing_and_its_queue_is_held(store: Store) -> None:
    from node.storage import QueuedMessage

    with store.unit(NOW) as u:
        u.enqueue(
            QueuedMessage(
                id=b"\x01" * 16,
                type="seizure-alert",
                created=NOW,
                expires=NOW + 600,
                content_hash=bytes(32),
                envelope=b"env",
            ),
            [BOB.node_id],
        )
    rev = make_revocation(BOB, reason="compromised", issued_at=NOW, since=NOW - 5)
    applied = apply_statement(store, ALICE, rev.armored(), now=NOW + 1, source="127.0.0.9")
    assert applied.outcome == "applied"
    [row] = store.outbox_rows(None, 10)
    assert row.status == "held" and "revoked" in (row.last_error or "")
    with pytest.raises(PeerRevoked, match="revoked \\(compromised\\)"):
        trusted_by_name(store, ["bob"], now=NOW)
    assert store.due(BOB.node_id, NOW + 10, 10) == []  # nothing due: the worker sends nothing
    events = keys_status(_own_card(NOW + 90 * DAY), snapshot(store, ALICE.node_id), NOW).events
    assert (events[0].peer, events[0].kind, events[0].outcome) == ("bob", "revoked", "applied")


def test_13_2_a_receipt_signed_with_a_replaced_key_is_not_a_delivery() -> None:
    """Receipts are checked against the peer's current key: one made with the key it rotated
    away from does not mark a message delivered."""
    from node.delivery_rules import settle
    from node.storage import DueMessage
    from protocol.batch import BatchResponse, ItemResult, encode_response

    bob_card = parsed_card(peer_record(BOB, "bob").card)
    ring, link = rotate(
        decode_keyring(BOB.secret_bytes()), bob_card, Identity.generate(), now=NOW, overlap=0
    )
    new_bob = ring.identity()
    rotated = make_card(
        new_bob,
        name="bob",
        unit_type="PCU",
        country="ME",
        location="MEBAR",
        endpoints=["https://127.0.0.1:1"],
        valid_from=NOW,
        valid_until=NOW + DAY,
        tls_cert=make_certificate(new_bob, now=NOW),
        seq=1,
        rotations=[link],
    )
    row = DueMessage(
        id=b"\x02" * 16, envelope=b"", content_hash=bytes(32), expires=NOW + 60, attempts=0
    )
    for signer, delivered in ((BOB, False), (new_bob, True)):
        receipt = sign_receipt(signer, ALICE.node_id, [(row.id, row.content_hash)], now=NOW)
        body = encode_response(
            BatchResponse([ItemResult("accepted", id=row.id, receipt=0)], [receipt])
        )
        outcome = settle([row], 200, body, peer="bob", signer=rotated.identity, me=ALICE.node_id)
        assert bool(outcome.delivered) is delivered


def test_13_3_a_certificate_left_for_the_old_key_by_a_crash_is_rewritten_at_start(
    tmp_path: Path,
) -> None:
    """A crash between writing the rotated card and its certificate leaves a certificate that
    revokes the old key only; at start the node writes the current key's. A certificate the
    custodian moved away stays away."""
    from keys.statements import split_certificate
    from node.home import Home
    from node.keychange import refresh_revocation_certificate, write_revocation_certificate

    home = Home(tmp_path)
    old = _own_card(NOW + 90 * DAY)
    assert refresh_revocation_certificate(home, ALICE, old, now=NOW) is False  # none: none
    assert not home.revocation.exists()
    write_revocation_certificate(home, ALICE, old, now=NOW)
    assert refresh_revocation_certificate(home, ALICE, old, now=NOW) is False  # current
    ring = decode_keyring(ALICE.secret_bytes())
    rotated, new_ring = rotated_card(old, ring, at=NOW + 100, tls=True)
    ident = new_ring.identity()
    assert refresh_revocation_certificate(home, ident, rotated, now=NOW + 200) is True
    revs = split_certificate(home.revocation.read_text())
    assert {r.body.key for r in revs.values()} == {rotated.body.sign_key}
    assert home.revocation.stat().st_mode & 0o777 == 0o600
    home.revocation.write_text("-----BEGIN BORDERLINK REVOCATION-----\ncut")  # torn write
    assert refresh_revocation_certificate(home, ident, rotated, now=NOW + 300) is True
    assert len(split_certificate(home.revocation.read_text())) == 3


def test_13_5_a_statement_not_valid_yet_at_the_peer_stays_queued_others_are_refused() -> None:
    """A peer whose clock is behind refuses a fresh card as not valid yet: that statement (and
    the later ones behind it) stay queued and land once its clock is right, rather than be
    refused for good and make every later change sequence_skipped there."""
    import json

    from node.delivery import notice_outcome
    from node.peer_client import Answer
    from node.peer_info import PeerInfo

    peer = PeerInfo.of(peer_record(BOB, "bob"))

    def answer(reason: str) -> str:
        body = json.dumps({"error": reason, "message": "card of alice is not valid yet"})
        return notice_outcome(Answer(400, "application/json", body.encode()), peer, "x")[0]

    assert answer("malformed") == "queued"
    assert answer("expired") == "queued"
    assert answer("sequence_older") == "refused"
    assert answer("not_a_rotation") == "refused"


def test_13_2_a_sealed_file_from_before_a_rotation_opens_in_the_overlap_only() -> None:
    """``open`` of a sealed file applies the receiver's rule: signed with the sender's replaced
    key, it opens during the overlap and is refused as retired_key after it, or once revoked."""
    from node.offline import _open
    from node.storage.rows import RevokedKey
    from protocol.envelope import seal
    from protocol.errors import KeyRetired
    from protocol.schemas import encode_body, template

    bob = peer_record(BOB, "bob")
    sealed = seal(
        BOB,
        [ALICE.public],
        "seizure-alert",
        encode_body(template("seizure-alert")),
        now=NOW,
        ttl=30 * DAY,
    ).encode()
    card = parsed_card(bob.card)
    rotated, _ = rotated_card(card, decode_keyring(BOB.secret_bytes()), at=NOW + 10, overlap=DAY)
    peers = {bob.node_id: msgspec.structs.replace(bob, card=rotated.armored())}
    assert _open(sealed, ALICE, peers, {}, NOW + 100).sender == BOB.node_id
    with pytest.raises(KeyRetired, match="overlap ended"):
        _open(sealed, ALICE, peers, {}, NOW + 10 + DAY)
    gone = RevokedKey(
        node=bob.node_id,
        key=BOB.public.sign_key,
        reason="compromised",
        since=NOW,
        at=NOW + 50,
        statement="",
    )
    with pytest.raises(KeyRetired, match="revoked"):
        _open(sealed, ALICE, peers, {gone.key: gone}, NOW + 100)


def test_13_3_status_of_a_revoked_node_says_so_and_does_not_advise_a_renewal(
    store: Store,
) -> None:
    from node.storage.rows import RevokedKey

    mine = RevokedKey(
        node=ALICE.node_id,
        key=ALICE.public.sign_key,
        reason="retired",
        since=None,
        at=NOW,
        statement="",
    )
    snap = msgspec.structs.replace(snapshot(store, ALICE.node_id), revoked=[mine])
    warnings = keys_status(_own_card(NOW + 10 * DAY), snap, NOW + 20 * DAY).warnings
    assert any("this node's key was REVOKED (retired)" in w for w in warnings)
    assert not any("keys renew" in w for w in warnings)
