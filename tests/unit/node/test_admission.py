"""Who calls the peer API and what budget it spends (node/admission.py): the TLS channel says who,
a trusted peer has budgets of its own, anonymous callers share their address's, an anonymous
request costs no storage read, and a peer change is seen at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keys.tls import make_certificate
from node.admission import Admission, Caller
from node.config import Limits
from node.runtime import Run, run_inline
from node.storage import Store
from node.storage.sqlite import open_store
from tests.conftest import NOW, fixed_identity
from tests.peering import peer_record

BOB, CAROL, MALLORY = fixed_identity("bob"), fixed_identity("carol"), fixed_identity("mallory")
CERT = {who.node_id: make_certificate(who, now=NOW) for who in (BOB, CAROL, MALLORY)}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "alice.db")
    with s.unit(NOW) as u:
        u.put_peer(peer_record(BOB, "bob"))
        u.put_peer(peer_record(CAROL, "carol", status="revoked"))
    yield s
    s.close()


class CountingRun:
    """run_inline, counting the storage reads handed to it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        return await run_inline(fn, *args, **kwargs)


def admission(store: Store, clock: list[float], run_db: Run = run_inline) -> Admission:
    limits = Limits(
        peer_rate=1.0, peer_burst=2, anonymous_rate=1.0, anonymous_burst=2, peer_concurrency=2
    )
    return Admission(limits, store, run_db, lambda: clock[0])


async def test_the_certificate_says_who_calls(store: Store) -> None:
    gate = admission(store, [0.0])
    bob = await gate.caller(CERT[BOB.node_id], "10.0.0.1")
    assert (bob.peer, bob.name, bob.bucket) == (BOB.node_id, "bob", f"peer|{BOB.node_id.hex()}")
    revoked = await gate.caller(CERT[CAROL.node_id], "10.0.0.1")
    assert revoked == Caller(None, None, "10.0.0.1")  # a revoked peer is nobody
    stranger = await gate.caller(CERT[MALLORY.node_id], "2001:db8::1")
    assert stranger.peer is None and stranger.bucket == "addr|2001:db8::/64"
    assert (await gate.caller(b"not a certificate", "10.0.0.1")).peer is None


async def test_an_anonymous_request_costs_no_storage_read(store: Store) -> None:
    counting = CountingRun()
    gate = admission(store, [0.0], counting)
    for i in range(100):
        caller = await gate.caller(None, f"10.0.{i}.1")
        assert caller.peer is None
    assert counting.calls == 0


async def test_anonymous_callers_share_their_address_budget_and_peers_have_their_own(
    store: Store,
) -> None:
    gate = admission(store, [0.0])
    anon = await gate.caller(None, "10.0.0.1")
    assert [gate.allow(anon) for _ in range(4)] == [True, True, False, False]
    bob = await gate.caller(CERT[BOB.node_id], "10.0.0.1")  # the peer behind the same address
    assert [gate.allow(bob) for _ in range(3)] == [True, True, False]


async def test_a_peers_requests_in_progress_are_bounded(store: Store) -> None:
    gate = admission(store, [0.0])
    bob = await gate.caller(CERT[BOB.node_id], "10.0.0.1")
    assert [gate.enter(bob) for _ in range(3)] == [True, True, False]
    gate.leave(bob)
    assert gate.enter(bob)
    assert gate.enter(await gate.caller(None, "10.0.0.1"))  # anonymous work is refused elsewhere


async def test_a_new_peer_is_known_after_forget_peers_and_otherwise_after_a_while(
    store: Store,
) -> None:
    clock = [0.0]
    gate = admission(store, clock)
    dave = fixed_identity("dave")
    dave_cert = make_certificate(dave, now=NOW)
    assert (await gate.caller(dave_cert, "10.0.0.1")).peer is None
    with store.unit(NOW) as u:
        u.put_peer(peer_record(dave, "dave"))
    assert (await gate.caller(dave_cert, "10.0.0.1")).peer is None  # cached
    gate.forget_peers()
    assert (await gate.caller(dave_cert, "10.0.0.1")).peer == dave.node_id
    assert dave_cert in await gate.trusted_certificates()
    with store.unit(NOW) as u:
        u.delete_peer("dave")
    clock[0] += 10.0
    assert (await gate.caller(dave_cert, "10.0.0.1")).peer is None
