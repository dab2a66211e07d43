"""What the receiver refuses from a trusted peer, with nothing stored: an envelope on another peer's
channel (before any cryptography), messages over the sender's share of the inbox, and Feedback
about a message the sender never received from this node. The real Receiver, Sender and Status on
a real SQLite file, inline threads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from keys.trust import PeerRecord
from node.delivery import LinkState
from node.receiver import Quota, Receiver
from node.rejections import Rejections
from node.runtime import run_inline
from node.sending import Sender
from node.status import Running, Status
from node.storage import Store
from node.storage.sqlite import open_store
from protocol.audit import AuditEntry
from protocol.envelope import Envelope, seal
from protocol.schemas import encode_body, template
from tests.conftest import NOW, fixed_identity
from tests.peering import peer_record

BOB, ALICE, MALLORY, CAROL = (fixed_identity(n) for n in ("bob", "alice", "mallory", "carol"))
ME = BOB  # the node under test


class Woken:
    async def ensure(self, rec: PeerRecord, *, now: bool = False) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "bob.db")
    with s.unit(time.time()) as u:
        for ident, name in ((ALICE, "alice"), (MALLORY, "mallory"), (CAROL, "carol")):
            u.put_peer(peer_record(ident, name))
    yield s
    s.close()


def receiver(store: Store, quota: Quota | None = None) -> Receiver:
    rejections = Rejections(store, run_inline, time.time)
    return Receiver(ME, store, run_inline, run_inline, rejections, time.time, quota=quota)


def sealed(sender: str, type_name: str = "seizure-alert", body: bytes | None = None) -> Envelope:
    ident = {"alice": ALICE, "mallory": MALLORY, "carol": CAROL}[sender]
    return seal(
        ident,
        [ME.public],
        type_name,  # type: ignore[arg-type]
        body or encode_body(template(type_name)),
        now=int(time.time()),
        ttl=3600,
    )


def deliver(
    rx: Receiver, *envs: Envelope | bytes, peer: bytes, source: str = "192.0.2.7"
) -> list[tuple[str, str | None]]:
    batch = [e if isinstance(e, bytes) else e.for_recipient(ME.node_id).encode() for e in envs]
    resp = asyncio.run(rx.receive(batch, source=source, peer=peer))
    return [(r.outcome, r.reason) for r in resp.results]


def rejected(store: Store) -> list[AuditEntry]:
    entries = [msgspec.json.decode(r.entry, type=AuditEntry) for r in store.audit_rows()]
    return [e for e in entries if e.kind == "message.rejected"]


# channel (item 4) --------------------------------------------------------------------------------


def test_regression_a_peer_could_deliver_envelopes_signed_by_another_peer(store: Store) -> None:
    """Mallory's channel carries Alice's envelope: refused, stored nowhere."""
    rx = receiver(store)
    assert deliver(rx, sealed("alice"), peer=MALLORY.node_id) == [("rejected", "channel_mismatch")]
    assert store.inbox_stats().total == 0
    [entry] = rejected(store)
    assert (entry.outcome, entry.peer_id) == ("channel_mismatch", ALICE.node_id.hex())


def test_the_channel_is_checked_before_any_cryptography(store: Store) -> None:
    """A corrupted payload would fail decryption once opened: on the wrong channel it is never
    opened at all."""
    env = sealed("alice").for_recipient(ME.node_id)
    broken = msgspec.structs.replace(env, payload=bytes(len(env.payload)))
    rx = receiver(store)
    assert deliver(rx, broken.encode(), peer=ALICE.node_id) == [("rejected", "decryption_failed")]
    assert deliver(rx, broken.encode(), peer=MALLORY.node_id) == [("rejected", "channel_mismatch")]


def test_a_peers_own_envelopes_on_its_channel_are_accepted(store: Store) -> None:
    rx = receiver(store)
    assert deliver(rx, sealed("alice"), sealed("alice"), peer=ALICE.node_id) == [
        ("accepted", None),
        ("accepted", None),
    ]


# quota (item 2) ----------------------------------------------------------------------------------


def test_regression_one_peer_could_fill_the_inbox_without_limit(store: Store) -> None:
    """Mallory at its quota of 3 messages: the rest of its batch is refused and not stored, the
    refusals sampled in the audit log and logged; Alice's share is untouched."""
    rx = receiver(store, Quota(messages=3, bytes=1 << 30))
    with capture_logs() as logs:
        outcomes = deliver(rx, *[sealed("mallory") for _ in range(8)], peer=MALLORY.node_id)
    assert outcomes == [("accepted", None)] * 3 + [("rejected", "quota_exceeded")] * 5
    assert store.inbox_usage(MALLORY.node_id).messages == 3
    assert [e.outcome for e in rejected(store)] == ["quota_exceeded"] * 3  # 1st, 2nd, 4th
    refusals = [e for e in logs if e.get("reason") == "quota_exceeded"]
    assert len(refusals) == 5 and all(e["log_level"] == "warning" for e in refusals)
    assert deliver(rx, sealed("mallory"), peer=MALLORY.node_id) == [("rejected", "quota_exceeded")]
    assert deliver(rx, sealed("alice"), peer=ALICE.node_id) == [("accepted", None)]


def test_the_quota_counts_bytes_too(store: Store) -> None:
    one = sealed("mallory")
    size = len(one.for_recipient(ME.node_id).encode())
    rx = receiver(store, Quota(messages=100, bytes=2 * size + size // 2))
    batch = [one, sealed("mallory"), sealed("mallory")]
    assert deliver(rx, *batch, peer=MALLORY.node_id) == [
        ("accepted", None),
        ("accepted", None),
        ("rejected", "quota_exceeded"),
    ]
    assert store.inbox_usage(MALLORY.node_id).bytes <= 2 * size + size // 2


def test_a_retried_delivery_over_quota_still_gets_its_receipt(store: Store) -> None:
    rx = receiver(store, Quota(messages=1, bytes=1 << 30))
    env = sealed("alice")
    assert deliver(rx, env, peer=ALICE.node_id) == [("accepted", None)]
    assert deliver(rx, env, peer=ALICE.node_id) == [("duplicate", None)]


async def test_status_shows_each_senders_share_of_the_inbox(store: Store) -> None:
    rx = receiver(store)
    for env, peer in ((sealed("alice"), ALICE), (sealed("mallory"), MALLORY)):
        await rx.receive([env.for_recipient(ME.node_id).encode()], source="t", peer=peer.node_id)
    with store.unit(time.time()) as u:
        u.mark_read(ALICE.node_id, store.inbox_rows()[-1].id)  # one of them, either

    class Idle:
        def link(self, node_id: bytes) -> LinkState:
            return LinkState("idle", 0)

        def outcomes(self) -> dict[str, str]:
            return {}

    me = Running(name="bob", node_id=ME.node_id, started=0.0, listen=lambda: "h:1")
    got = msgspec.to_builtins(
        await Status(me, store, run_inline, Idle(), Idle(), time.time).report()
    )
    senders = {s["name"]: s for s in got["inbox"]["senders"]}
    assert set(senders) == {"alice", "mallory"}
    assert [senders[n]["messages"] for n in ("alice", "mallory")] == [1, 1]
    assert sum(s["unread"] for s in senders.values()) == got["inbox"]["unread"] <= 2
    assert list(senders["alice"]) == ["name", "node_id", "messages", "unread", "bytes"]


# references (item 3) -----------------------------------------------------------------------------


def feedback_about(msg_id: bytes) -> bytes:
    fb = msgspec.structs.replace(template("feedback"), refers_to=msg_id.hex())
    return encode_body(fb)


async def sent_to(store: Store, *names: str) -> bytes:
    """A message this node (Bob) sent to ``names``."""
    sender = Sender(ME, store, run_inline, run_inline, Woken(), lambda: float(NOW))
    return await sender.send(
        list(names), "seizure-alert", encode_body(template("seizure-alert")), 600
    )


def test_regression_any_peer_could_send_feedback_about_any_message(store: Store) -> None:
    """Bob's alert went to Alice only: Mallory's Feedback about it is refused and not stored,
    Alice's is accepted."""
    msg_id = asyncio.run(sent_to(store, "alice"))
    rx = receiver(store)
    evil = sealed("mallory", "feedback", feedback_about(msg_id))
    assert deliver(rx, evil, peer=MALLORY.node_id) == [("rejected", "foreign_reference")]
    assert store.inbox_stats().total == 0
    [entry] = rejected(store)
    assert (entry.outcome, entry.peer_id) == ("foreign_reference", MALLORY.node_id.hex())
    good = sealed("alice", "feedback", feedback_about(msg_id))
    assert deliver(rx, good, peer=ALICE.node_id) == [("accepted", None)]
    [row] = store.inbox_rows()
    assert (row.sender, row.refers_to) == (ALICE.node_id, msg_id)


def test_feedback_about_a_message_this_node_never_sent_is_refused(store: Store) -> None:
    rx = receiver(store)
    fb = sealed("alice", "feedback", feedback_about(b"\x42" * 16))
    assert deliver(rx, fb, peer=ALICE.node_id) == [("rejected", "foreign_reference")]
    assert store.inbox_stats().total == 0


def test_a_peer_cannot_retract_a_message_this_node_wrote(store: Store) -> None:
    msg_id = asyncio.run(sent_to(store, "alice"))
    body = msgspec.structs.replace(
        template("retraction"), retracts=msg_id.hex(), kind="withdraw", replacement=None
    )
    rx = receiver(store)
    retraction = sealed("alice", "retraction", encode_body(body))
    assert deliver(rx, retraction, peer=ALICE.node_id) == [("rejected", "foreign_reference")]
    assert store.inbox_stats().total == 0
