"""The status report (node/status.py): what it reads from storage and how it shows it. Its JSON
is what ``borderlink status`` and operators' scripts read, so field names and order are pinned."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from node.delivery import LinkState
from node.runtime import run_inline
from node.status import Running, Snapshot, Status, report, snapshot
from node.storage import (
    Cosignature,
    Evidence,
    InboxStats,
    OutboxStats,
    QueuedMessage,
    SignedCheckpoint,
    Store,
)
from node.storage.sqlite import open_store
from tests.conftest import NOW, fixed_identity
from tests.peering import peer_record

ALICE, BOB, CAROL = (fixed_identity(n) for n in ("alice", "bob", "carol"))
ME = Running(name="alice", node_id=ALICE.node_id, started=NOW - 100, listen=lambda: "h:1")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "alice.db")
    with s.unit(NOW) as u:
        u.put_peer(peer_record(BOB, "bob"))
        u.put_peer(peer_record(CAROL, "carol", status="revoked"))
    yield s
    s.close()


def queue(store: Store, i: int, *peers: bytes, at: float = NOW) -> bytes:
    msg_id = bytes([i]) * 16
    message = QueuedMessage(
        id=msg_id,
        type="seizure-alert",
        created=int(at),
        expires=int(at) + 60,
        content_hash=bytes(32),
        envelope=b"env",
    )
    with store.unit(at) as u:
        u.enqueue(message, list(peers))
    return msg_id


def empty_snapshot(**changes: object) -> Snapshot:
    snap = Snapshot(
        names={},
        outbox=OutboxStats(by_status={}, oldest_undelivered=None, per_peer={}),
        inbox=InboxStats(0, 0),
        audit_size=0,
        checkpoint_size=0,
        cosignatures=0,
        evidence=[],
    )
    return msgspec.structs.replace(snap, **changes)


def idle(_node_id: bytes) -> LinkState:
    return LinkState("idle", 0)


def test_the_report_keeps_its_fields_in_order() -> None:
    snap = empty_snapshot(names={BOB.node_id: "bob"})
    got = msgspec.json.decode(msgspec.json.encode(report(ME, snap, idle, {}, NOW)))
    assert list(got) == [
        "node",
        "node_id",
        "up",
        "listen",
        "uptime",
        "peers",
        "outbox",
        "audit",
        "misbehaviour",
        "inbox",
        "oldest_undelivered_age",
        "keys",
        "next_retry",
        "crypto",
    ]
    assert got["keys"] is None  # no card given: a report built without the node's card
    assert list(got["peers"][0]) == [
        "name",
        "node_id",
        "link",
        "in_flight",
        "queued",
        "retrying",
        "failing_since",
        "next_retry",
        "last_error",
    ]
    assert list(got["audit"]) == ["size", "checkpoint_size", "cosignatures", "witnessing"]
    assert got["inbox"] == {"total": 0, "unread": 0, "senders": []}
    assert got["node_id"] == ALICE.node_id.hex()
    assert got["listen"] == "h:1"
    assert got["uptime"] == 100.0
    assert got["oldest_undelivered_age"] is None


def test_misbehaviour_by_a_forgotten_peer_is_shown_by_its_node_id() -> None:
    stranger = b"\x07" * 32
    evidence = [
        Evidence(node=n, kind="fork", old_note="a", new_note="b", detail="d", at=NOW)
        for n in (BOB.node_id, stranger)
    ]
    snap = empty_snapshot(names={BOB.node_id: "bob"}, evidence=evidence)
    shown = [m.peer for m in report(ME, snap, idle, {}, NOW).misbehaviour]
    assert shown == ["bob", stranger.hex()]


async def test_status_reads_queues_per_peer_and_the_link_of_each(store: Store) -> None:
    queue(store, 1, BOB.node_id, at=NOW - 30)
    queue(store, 2, BOB.node_id, CAROL.node_id)
    states = {BOB.node_id: LinkState("down", 2)}

    class Links:
        def link(self, node_id: bytes) -> LinkState:
            return states.get(node_id, LinkState("idle", 0))

    class Witnessing:
        def outcomes(self) -> dict[str, str]:
            return {"bob": "cosigned size 3"}

    status = Status(ME, store, run_inline, Links(), Witnessing(), lambda: NOW + 0.04)
    got = await status.report()
    assert [(p.name, p.link, p.in_flight, p.queued) for p in got.peers] == [
        ("bob", "down", 2, 2),
        ("carol", "idle", 0, 1),
    ]
    assert got.outbox == {"queued": 3}
    assert got.oldest_undelivered_age == 30.0
    assert got.uptime == 100.0
    assert got.audit.witnessing == {"bob": "cosigned size 3"}
    assert got.audit.checkpoint_size == 0


def test_the_snapshot_counts_cosignatures_of_the_latest_checkpoint_only(store: Store) -> None:
    with store.unit(NOW) as u:
        for size in (1, 2):
            u.add_checkpoint(SignedCheckpoint(size, bytes(32), f"note {size}"))
        u.add_cosignature(1, Cosignature(BOB.node_id, "line b1", int(NOW)))
        u.add_cosignature(1, Cosignature(CAROL.node_id, "line c1", int(NOW)))
        u.add_cosignature(2, Cosignature(BOB.node_id, "line b2", int(NOW)))
    snap = snapshot(store)
    assert (snap.checkpoint_size, snap.cosignatures) == (2, 1)


def test_a_failing_peer_says_since_when_why_and_when_it_is_tried_next(store: Store) -> None:
    """What `status` prints in words ("3 retrying, failing for 2 min, next try in 40 s: ..."),
    read from the outbox and its events, with the soonest retry of all at the top."""
    first, second = queue(store, 1, BOB.node_id), queue(store, 2, BOB.node_id)
    with store.unit(NOW + 5) as u:
        u.mark_failed(BOB.node_id, [(first, "connection refused", NOW + 70)])
    with store.unit(NOW + 10) as u:
        u.mark_failed(BOB.node_id, [(second, "no answer within 10 s", NOW + 40)])
    got = report(ME, snapshot(store), idle, {}, NOW + 11)
    [bob] = [p for p in got.peers if p.name == "bob"]
    assert (bob.queued, bob.retrying) == (2, 2)
    assert bob.failing_since == NOW + 5  # the first failure since the last delivery to bob
    assert bob.next_retry == got.next_retry == NOW + 40
    assert bob.last_error == "no answer within 10 s"  # the latest failure
    [carol] = [p for p in got.peers if p.name == "carol"]
    assert (carol.retrying, carol.failing_since, carol.next_retry, carol.last_error) == (
        0, None, None, None
    )  # fmt: skip
