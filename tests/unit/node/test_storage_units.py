"""Units of work on the SQLite store: all or nothing, never nested, and the replay table as the
authoritative check (PROTOCOL.md 6.2 step 9) whatever a racing reader saw."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keys.trust import PeerRecord
from node.storage import Accepted, KnownMessage, Store
from node.storage.sqlite import open_store
from protocol.errors import NodeError, Replay

NOW = 1_790_000_000.0
ALICE, BOB = b"a" * 32, b"b" * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "node.db")
    yield s
    s.close()


def message(i: int, sender: bytes = ALICE, retracts: bytes | None = None) -> Accepted:
    return Accepted(
        id=bytes([i]) * 16,
        sender=sender,
        type="retraction" if retracts else "seizure-alert",
        created=int(NOW),
        expires=int(NOW) + 60,
        content_hash=bytes([i]) * 32,
        envelope=b"env",
        refers_to=retracts,
        retracts=retracts,
    )


def accept(store: Store, item: Accepted, now: float = NOW) -> None:
    with store.unit(now) as u:
        u.mark_seen(item.sender, item.id, item.expires)
        u.insert_inbox(item, b"receipt")


def peer(name: str, node_id: bytes) -> PeerRecord:
    return PeerRecord(
        name=name, node_id=node_id, fingerprint="f", card="c", verified_by="tofu", added_at=1
    )


def test_a_unit_that_raises_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.unit(NOW) as u:
        u.put_peer(peer("bob", BOB))
        assert u.peer_by_name("bob") is not None  # a unit reads its own writes
        raise RuntimeError("crash in the middle")
    assert store.peers() == []


def test_units_do_not_nest(store: Store) -> None:
    with store.unit(NOW), pytest.raises(NodeError, match="inside another"):
        with store.unit(NOW):
            pass
    with store.unit(NOW) as u:  # the store is usable again
        u.put_peer(peer("bob", BOB))
    assert [p.name for p in store.peers()] == ["bob"]


def test_the_replay_table_refuses_a_second_accept_and_rolls_it_back(store: Store) -> None:
    accept(store, message(1))
    assert store.seen(ALICE, message(1).id)
    assert store.inbox_lookup(ALICE, message(1).id) == KnownMessage(b"\x01" * 32, b"receipt")
    with pytest.raises(Replay):
        accept(store, message(1))
    assert store.inbox_stats().total == 1
    # Ids are scoped by sender: Bob's use of the same id pre-empts nothing.
    accept(store, message(1, sender=BOB))
    assert len(store.inbox_get(message(1).id)) == 2
    assert len(store.inbox_get(message(1).id, sender=BOB)) == 1


@pytest.mark.parametrize("order", ["target first", "retraction first"])
def test_a_retraction_withdraws_its_target_whichever_arrives_first(
    store: Store, order: str
) -> None:
    target, retraction = message(1), message(2, retracts=message(1).id)
    for item in [target, retraction] if order == "target first" else [retraction, target]:
        accept(store, item)
    rows = {r.id: r for r in store.inbox_rows()}
    assert rows[target.id].withdrawn_by == retraction.id
    assert rows[retraction.id].withdrawn_by is None
    # Another sender cannot withdraw Alice's message.
    accept(store, message(3, sender=BOB, retracts=message(1).id))
    assert {r.id: r for r in store.inbox_rows()}[target.id].withdrawn_by == retraction.id


def test_read_and_acked_at_the_units_now(store: Store) -> None:
    accept(store, message(1))
    with store.unit(NOW + 5) as u:
        u.mark_read(ALICE, message(1).id)
    with store.unit(NOW + 9) as u:
        u.mark_read(ALICE, message(1).id)  # already read: the first time stays
        u.mark_acked(ALICE, message(1).id, "seized")
    [row] = store.inbox_rows()
    assert (row.read_at, row.acked_at, row.ack_action) == (NOW + 5, NOW + 9, "seized")
    assert store.inbox_stats().unread == 0 and store.inbox_rows(unread=True) == []


def test_prune_forgets_only_expired_ids(store: Store) -> None:
    accept(store, message(1))
    with store.unit(NOW + 59) as u:
        assert u.prune_seen() == 0
    with store.unit(NOW + 60) as u:
        assert u.prune_seen() == 1
    assert not store.seen(ALICE, message(1).id)


def test_peers_by_name_and_id(store: Store) -> None:
    with store.unit(NOW) as u:
        u.put_peer(peer("bob", BOB))
        u.put_peer(peer("alice", ALICE))
    assert [p.name for p in store.peers()] == ["alice", "bob"]
    assert store.peer_by_id(BOB) == peer("bob", BOB)
    with store.unit(NOW) as u:
        assert u.delete_peer("bob") is True
        assert u.delete_peer("bob") is False
    assert store.peer_by_name("bob") is None
