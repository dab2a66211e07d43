"""Retention of flow events (node/flow_reports.prune_flow, PROTOCOL.md 14.4): this node's own
events are deleted only once every coordinator it reports to was sent them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node.config import Flow
from node.flow_reports import prune_flow
from node.storage import QueuedMessage, Store
from node.storage.flow_rows import FlowCursor
from node.storage.sqlite import open_store
from tests.conftest import NOW, fixed_identity
from tests.peering import peer_record

ME, A, B, PEER = (fixed_identity(n) for n in ("me", "coord-a", "coord-b", "peer"))
OLD = NOW - 40 * 86400


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "n.db")
    with s.unit(OLD) as u:
        u.set_flow_self(ME.node_id)
        for ident, name in ((A, "coord-a"), (B, "coord-b"), (PEER, "peer")):
            u.put_peer(peer_record(ident, name))
    for i in (1, 2):  # two messages, long ago: own events seq 1..4
        msg_id = bytes([i]) * 16
        with s.unit(OLD) as u:
            u.enqueue(
                QueuedMessage(
                    id=msg_id,
                    type="seizure-alert",
                    created=int(OLD),
                    expires=int(OLD) + 60,
                    content_hash=b"h" * 32,
                    envelope=b"e",
                ),
                [PEER.node_id],
            )
        with s.unit(OLD + 1) as u:
            u.mark_delivered(PEER.node_id, [(msg_id, b"r")])
    yield s
    s.close()


def sent(store: Store, coordinator: bytes, through: int) -> None:
    with store.unit(NOW) as u:
        u.put_flow_cursor(
            FlowCursor(
                coordinator=coordinator,
                through=through,
                sent_at=NOW,
                failing_since=None,
                last_error=None,
            )
        )


def own(store: Store) -> list[int]:
    return [r.seq for r in store.flow_own_after(0, 100)]


def test_section_14_4_own_events_wait_for_the_slowest_coordinator(store: Store) -> None:
    config = Flow(report_to=["coord-a", "coord-b"], keep_days=30)
    assert prune_flow(store, config, NOW) == 0 and own(store) == [1, 2, 3, 4]  # none sent yet
    sent(store, A.node_id, 4)
    sent(store, B.node_id, 1)
    assert prune_flow(store, config, NOW) == 1 and own(store) == [2, 3, 4]
    sent(store, B.node_id, 4)
    assert prune_flow(store, config, NOW) == 3 and own(store) == []


def test_events_younger_than_keep_days_stay(store: Store) -> None:
    config = Flow(report_to=[], keep_days=41)  # reports to no one: nothing to wait for
    assert prune_flow(store, config, NOW) == 0 and own(store) == [1, 2, 3, 4]
    assert prune_flow(store, Flow(report_to=[], keep_days=39), NOW) == 4 and own(store) == []
