"""Who shares a rate budget on the peer API (node/admission.py): a trusted peer's claimed id has its
own, every other claim shares its address's, and a peer change is seen at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node.admission import Admission
from node.config import Limits
from node.runtime import run_inline
from node.storage import Store
from node.storage.sqlite import open_store
from tests.conftest import NOW, fixed_identity
from tests.peering import peer_record

BOB, CAROL = fixed_identity("bob"), fixed_identity("carol")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "alice.db")
    with s.unit(NOW) as u:
        u.put_peer(peer_record(BOB, "bob"))
        u.put_peer(peer_record(CAROL, "carol", status="revoked"))
    yield s
    s.close()


def admission(store: Store, clock: list[float]) -> Admission:
    return Admission(Limits(rate=1.0, burst=2), store, run_inline, lambda: clock[0])


async def test_a_trusted_peer_has_a_budget_of_its_own(store: Store) -> None:
    gate = admission(store, [0.0])
    bob, carol = BOB.node_id.hex(), CAROL.node_id.hex()
    assert await gate.bucket(bob, "10.0.0.1") == f"peer|{bob}"
    assert await gate.bucket(carol, "10.0.0.1") == "addr|10.0.0.1"  # revoked: no budget
    assert await gate.bucket("anything", "2001:db8::1") == "addr|2001:db8::/64"


async def test_rotating_the_claimed_sender_buys_no_budget(store: Store) -> None:
    gate = admission(store, [0.0])
    allowed = [await gate.allow(f"claim-{i}", "10.0.0.1") for i in range(4)]
    assert allowed == [True, True, False, False]
    assert await gate.allow(BOB.node_id.hex(), "10.0.0.1")  # the peer behind the same address


async def test_a_new_peer_is_known_after_forget_peers_and_otherwise_after_a_while(
    store: Store,
) -> None:
    clock = [0.0]
    gate = admission(store, clock)
    dave = fixed_identity("dave")
    assert await gate.bucket(dave.node_id.hex(), "10.0.0.1") == "addr|10.0.0.1"
    with store.unit(NOW) as u:
        u.put_peer(peer_record(dave, "dave"))
    assert await gate.bucket(dave.node_id.hex(), "10.0.0.1") == "addr|10.0.0.1"  # cached
    gate.forget_peers()
    assert await gate.bucket(dave.node_id.hex(), "10.0.0.1") == f"peer|{dave.node_id.hex()}"
    with store.unit(NOW) as u:
        u.delete_peer("dave")
    clock[0] += 10.0
    assert await gate.bucket(dave.node_id.hex(), "10.0.0.1") == "addr|10.0.0.1"
