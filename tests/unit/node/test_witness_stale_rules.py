"""The witness's decision about a checkpoint smaller than the one held (PROTOCOL.md 12.3): a
prefix of it is stale (an old note replayed), anything the log cannot show to be a prefix is a
rollback, after the unsigned proof was asked for twice."""

from __future__ import annotations

import pytest

from node.witness_rules import (
    PROOF_ATTEMPTS,
    Misbehaviour,
    NoProof,
    RetryProof,
    Stale,
    Undecided,
    decide,
    proof_needed,
)
from protocol.checkpoint import Checkpoint
from protocol.merkle import EMPTY_ROOT, MerkleTree, leaf_hash

ORIGIN = "borderlink.example/audit/bob"


def tree(n: int, label: bytes = b"") -> MerkleTree:
    return MerkleTree(leaf_hash(label + b"%d" % i) for i in range(n))


def cp(t: MerkleTree) -> Checkpoint:
    return Checkpoint(ORIGIN, t.size, t.root())


HELD = tree(85)


def test_regression_a_prefix_of_the_held_tree_is_stale() -> None:
    old = cp(tree(10))
    assert proof_needed(cp(HELD), old) == (10, 85)
    got = decide(cp(HELD), old, HELD.consistency_proof(10, 85), 1)
    assert got == Stale(10, 85)
    assert got.outcome == "stale checkpoint (size 10, holding 85)"


def test_the_empty_tree_is_stale_without_a_proof() -> None:
    empty = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    assert proof_needed(cp(HELD), empty) is None
    assert decide(cp(HELD), empty, [], 1) == Stale(0, 85)


def test_a_smaller_tree_of_another_history_is_a_rollback_on_the_second_proof() -> None:
    forked = cp(tree(10, b"other"))
    proof = HELD.consistency_proof(10, 85)
    assert isinstance(decide(cp(HELD), forked, proof, 1), RetryProof)
    last = decide(cp(HELD), forked, proof, PROOF_ATTEMPTS)
    assert isinstance(last, Misbehaviour) and last.kind == "rollback"
    assert last.summary.startswith(f"log {ORIGIN} went back from size 85 to 10, not a prefix")
    assert "\nproof:\n" in last.detail


def test_a_refused_proof_counts_only_when_the_log_refused() -> None:
    old = cp(tree(10))
    assert isinstance(decide(cp(HELD), old, NoProof(400), 1), RetryProof)
    last = decide(cp(HELD), old, NoProof(400), PROOF_ATTEMPTS)
    assert isinstance(last, Misbehaviour) and last.kind == "rollback"
    assert decide(cp(HELD), old, NoProof(503), PROOF_ATTEMPTS) == Undecided(
        "stale checkpoint (size 10, holding 85), no consistency proof (HTTP 503)"
    )


@pytest.mark.parametrize(("status", "kind"), [(400, "badconsistencyproof"), (500, None)])
def test_growth_without_a_proof(status: int, kind: str | None) -> None:
    held, new = cp(tree(4)), cp(tree(9))
    got = decide(held, new, NoProof(status), PROOF_ATTEMPTS)
    if kind is None:
        assert got == Undecided(f"no consistency proof (HTTP {status})")
    else:
        assert isinstance(got, Misbehaviour) and got.kind == kind
