"""Sending and the inbox as services (node/sending.py, node/inbox.py) on a real store, inline
threads and a fixed clock: what is queued and audited, who is woken, what the operator is shown,
and how an acknowledgement becomes a Feedback to the sender."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from keys.trust import PeerRecord
from node.inbox import Inbox, inbox_view
from node.runtime import Run, run_inline
from node.sending import Sender
from node.storage import Accepted, Store
from node.storage.sqlite import open_store
from protocol.audit import AuditEntry
from protocol.envelope import open_envelope, seal
from protocol.errors import (
    BorderlinkError,
    PeerRevoked,
    UnknownPeer,
    UsageError,
    ValidationError,
)
from protocol.schemas import Feedback, encode_body
from protocol.templates import template
from tests.conftest import NOW, directory, fixed_identity
from tests.peering import peer_record

ALICE, BOB, CAROL = (fixed_identity(n) for n in ("alice", "bob", "carol"))
ALERT = encode_body(template("seizure-alert"))


class Woken:
    """Delivery as the sender sees it: who was woken for new work."""

    def __init__(self) -> None:
        self.peers: list[str] = []

    async def ensure(self, rec: PeerRecord, *, now: bool = False) -> None:
        self.peers.append(rec.name)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "alice.db")
    with s.unit(NOW) as u:
        u.put_peer(peer_record(BOB, "bob"))
        u.put_peer(peer_record(CAROL, "carol", status="revoked"))
    yield s
    s.close()


def sender(store: Store, woken: Woken, at: float = NOW, run_cpu: Run = run_inline) -> Sender:
    return Sender(ALICE, store, run_inline, run_cpu, woken, lambda: at)


def audit(store: Store) -> list[AuditEntry]:
    return [msgspec.json.decode(r.entry, type=AuditEntry) for r in store.audit_rows()]


async def test_a_sent_message_is_queued_audited_and_its_peer_woken(store: Store) -> None:
    woken = Woken()
    msg_id = await sender(store, woken).send(["bob"], "seizure-alert", ALERT, 600)
    [row] = store.outbox_rows(msg_id)
    assert (row.peer, row.status, row.expires - row.created) == (BOB.node_id, "queued", 600)
    [due] = store.due(BOB.node_id, NOW, 10)
    assert audit(store) == [
        AuditEntry(
            time=int(NOW * 1000),
            actor="operator",
            kind="message.queued",
            message_id=msg_id.hex(),
            outcome="seizure-alert",
            detail="to bob",
            hashes={"content": due.content_hash.hex()},
        )
    ]
    assert woken.peers == ["bob"]


async def test_a_priority_is_set_on_the_sealed_message(store: Store) -> None:
    msg_id = await sender(store, Woken()).send(["bob"], "seizure-alert", ALERT, 600, "flash")
    [due] = store.due(BOB.node_id, NOW, 10)
    opened = open_envelope(due.envelope, BOB, sender_of=directory(ALICE), now=int(NOW))
    assert (opened.id, opened.message.meta.priority) == (msg_id, "flash")


@pytest.mark.parametrize(
    ("to", "priority", "error"),
    [
        (["bob", "dave"], None, UnknownPeer),
        (["carol"], None, PeerRevoked),
        (["bob"], "soon", ValidationError),
    ],
)
async def test_nothing_is_queued_for_an_unknown_or_revoked_peer_or_a_bad_priority(
    store: Store, to: list[str], priority: str | None, error: type[BorderlinkError]
) -> None:
    woken = Woken()
    with pytest.raises(error):
        await sender(store, woken).send(to, "seizure-alert", ALERT, 600, priority)
    assert store.outbox_rows() == []
    assert audit(store) == []
    assert woken.peers == []


async def test_the_outbox_names_peers_and_clears_the_next_attempt_when_done(
    store: Store,
) -> None:
    send = sender(store, Woken())
    msg_id = await send.send(["bob"], "seizure-alert", ALERT, 600)
    [queued] = (await send.outbox(msg_id)).items
    assert (queued.id, queued.peer, queued.next_attempt) == (msg_id.hex(), "bob", NOW)
    with store.unit(NOW + 1) as u:
        u.mark_rejected(BOB.node_id, msg_id, "refused")
    [done] = (await send.outbox()).items
    assert (done.status, done.next_attempt, done.last_error) == ("rejected", None, "refused")


# the inbox ---------------------------------------------------------------------------------


def receive(store: Store, msg_id: bytes = b"\x05" * 16, at: float = NOW) -> bytes:
    """Bob's alert to Alice, stored as the receiver stores it."""
    env = seal(BOB, [ALICE.public], "seizure-alert", ALERT, now=int(at), ttl=600, msg_id=msg_id)
    item = Accepted(
        id=env.id,
        sender=BOB.node_id,
        type="seizure-alert",
        created=env.created,
        expires=env.expires,
        content_hash=env.content_hash(),
        envelope=env.encode(),
        tlp="AMBER",
    )
    with store.unit(at) as u:
        u.mark_seen(item.sender, item.id, item.expires)
        u.insert_inbox(item, b"receipt")
    return env.id


def inbox(store: Store, woken: Woken, at: float) -> Inbox:
    return Inbox(sender(store, woken, at))


async def test_the_inbox_lists_messages_without_their_bodies(store: Store) -> None:
    msg_id = receive(store)
    [view] = (await inbox(store, Woken(), NOW).listing(unread=False)).items
    got = msgspec.json.decode(msgspec.json.encode(view))
    assert got == {
        "id": msg_id.hex(),
        "from": "bob",
        "type": "seizure-alert",
        "priority": "routine",
        "tlp": "AMBER",
        "created": int(NOW),
        "expires": int(NOW) + 600,
        "received_at": NOW,
        "refers_to": None,
        "read": False,
        "acked": None,
        "withdrawn_by": None,
    }


async def test_showing_a_message_opens_it_marks_it_read_and_audits_it(store: Store) -> None:
    msg_id = receive(store)
    shown = await inbox(store, Woken(), NOW + 5).show(msg_id, None)
    assert shown.message == template("seizure-alert")
    assert shown.read is False  # the view as it was when it was opened
    listed = (await inbox(store, Woken(), NOW).listing(unread=False)).items
    assert [v.read for v in listed] == [True]
    assert (await inbox(store, Woken(), NOW).listing(unread=True)).items == []
    assert audit(store)[-1] == AuditEntry(
        time=int((NOW + 5) * 1000),
        actor="operator",
        kind="message.shown",
        message_id=msg_id.hex(),
        peer_id=BOB.node_id.hex(),
    )


async def test_acknowledging_sends_feedback_to_the_sender_and_marks_the_message(
    store: Store,
) -> None:
    msg_id = receive(store)
    woken = Woken()
    ack = await inbox(store, woken, NOW + 5).acknowledge(msg_id, "bob", "seized", None)
    assert (ack.id, ack.to, ack.action) == (msg_id.hex(), "bob", "seized")
    fb_id = bytes.fromhex(ack.feedback_id)
    [due] = store.due(BOB.node_id, NOW + 5, 10)
    feedback = open_envelope(due.envelope, BOB, sender_of=directory(ALICE), now=int(NOW) + 5)
    assert isinstance(feedback.message, Feedback)
    assert (feedback.id, feedback.message.refers_to) == (fb_id, msg_id.hex())
    assert feedback.message.meta.in_reply_to == msg_id.hex()
    assert woken.peers == ["bob"]
    [row] = store.inbox_rows()
    assert (row.ack_action, row.acked_at, row.read_at) == ("seized", NOW + 5, NOW + 5)
    queued, acked = audit(store)[-2:]
    assert (queued.kind, queued.outcome) == ("message.queued", "feedback")
    assert acked == AuditEntry(
        time=int((NOW + 5) * 1000),
        actor="node",
        kind="message.acknowledged",
        message_id=msg_id.hex(),
        peer_id=BOB.node_id.hex(),
        outcome="seized",
        detail=f"feedback {fb_id.hex()}",
    )


async def test_an_acknowledgement_the_schema_refuses_is_a_usage_error(store: Store) -> None:
    msg_id = receive(store)
    with pytest.raises(UsageError, match=r"^cannot acknowledge: "):
        await inbox(store, Woken(), NOW).acknowledge(msg_id, None, "burnt", None)
    assert store.outbox_rows() == []


async def test_a_message_not_in_the_inbox_or_from_an_unknown_peer_is_said_so(
    store: Store,
) -> None:
    msg_id = receive(store)
    box = inbox(store, Woken(), NOW)
    with pytest.raises(BorderlinkError, match="in the inbox"):
        await box.show(b"\x06" * 16, None)
    with pytest.raises(UnknownPeer):
        await box.show(msg_id, "dave")
    with pytest.raises(BorderlinkError, match="in the inbox"):
        await box.show(msg_id, "carol")


async def test_an_id_used_by_two_senders_needs_from(store: Store) -> None:
    msg_id = receive(store)
    env = seal(CAROL, [ALICE.public], "seizure-alert", ALERT, now=int(NOW), ttl=600, msg_id=msg_id)
    item = Accepted(
        id=msg_id,
        sender=CAROL.node_id,
        type="seizure-alert",
        created=env.created,
        expires=env.expires,
        content_hash=env.content_hash(),
        envelope=env.encode(),
    )
    with store.unit(NOW) as u:
        u.mark_seen(item.sender, item.id, item.expires)
        u.insert_inbox(item, b"receipt")
    box = inbox(store, Woken(), NOW)
    with pytest.raises(UsageError, match="several senders"):
        await box.show(msg_id, None)
    assert (await box.show(msg_id, "bob")).sender == "bob"


def test_a_message_from_a_forgotten_peer_is_shown_by_its_node_id(store: Store) -> None:
    receive(store)
    [row] = store.inbox_rows()
    assert inbox_view(row, {}).sender == BOB.node_id.hex()
