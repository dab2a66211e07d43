"""A peer's budget is counted in envelopes, not requests (attack9 F3): node/admission.py
``charge`` takes one token per envelope of a batch beyond the one its request paid at entry,
and a batch its bucket cannot pay is refused whole and empties the bucket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keys.tls import make_certificate
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
        u.put_peer(peer_record(CAROL, "carol"))
    yield s
    s.close()


async def test_a_batch_costs_one_token_per_envelope(store: Store) -> None:
    clock = [0.0]
    gate = Admission(Limits(peer_rate=10.0, peer_burst=300), store, run_inline, lambda: clock[0])
    bob = await gate.caller(make_certificate(BOB, now=NOW), "10.0.0.1")
    carol = await gate.caller(make_certificate(CAROL, now=NOW), "10.0.0.1")
    assert gate.allow(bob) and gate.charge(bob, 256)  # 300 - 256 = 44 left
    assert gate.allow(bob) and gate.charge(bob, 44)  # 43 left after entry: exactly paid
    assert not gate.allow(bob)  # empty: a request is refused before its body is read
    assert gate.allow(carol) and gate.charge(carol, 256)  # each peer has its own bucket
    clock[0] += 1.0  # ten more tokens
    assert gate.allow(bob) and gate.charge(bob, 10) and not gate.allow(bob)
    assert gate.charge(bob, 1) and gate.charge(bob, 0)  # a lone envelope paid at entry


async def test_a_batch_over_the_budget_empties_it(store: Store) -> None:
    """A refused batch takes what was left, so the peer's next requests are refused at entry,
    before their bodies are read, until the bucket refills (not read in full, then refused)."""
    clock = [0.0]
    gate = Admission(Limits(peer_rate=10.0, peer_burst=300), store, run_inline, lambda: clock[0])
    bob = await gate.caller(make_certificate(BOB, now=NOW), "10.0.0.1")
    assert gate.allow(bob) and gate.charge(bob, 256)  # 44 left
    assert gate.allow(bob) and not gate.charge(bob, 64)  # 63 more cannot be paid: all taken
    assert not gate.allow(bob)
    clock[0] += 0.1  # one token
    assert gate.allow(bob) and not gate.allow(bob)
