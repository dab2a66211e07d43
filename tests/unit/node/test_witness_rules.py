"""The witness's decision as a pure function: consistent, cosign, fetch the proof again, or
keep evidence of which kind (PROTOCOL.md 12.3)."""

from __future__ import annotations

import base64

import msgspec
import pytest

from node.witness_rules import (
    PROOF_ATTEMPTS,
    Consistent,
    Cosign,
    Misbehaviour,
    RetryProof,
    decide,
    proof_needed,
    read_proof,
)
from protocol.checkpoint import Checkpoint
from protocol.errors import AuditError
from protocol.merkle import EMPTY_ROOT, MerkleTree, leaf_hash

ORIGIN = "borderlink.example/audit/bob"


def tree(n: int, edit: int | None = None) -> MerkleTree:
    return MerkleTree(leaf_hash(b"edited" if i == edit else b"%d" % i) for i in range(n))


def cp(t: MerkleTree, origin: str = ORIGIN) -> Checkpoint:
    return Checkpoint(origin, t.size, t.root())


def test_nothing_held_yet_needs_no_proof_and_is_cosigned() -> None:
    new = cp(tree(5))
    assert proof_needed(None, new) is None
    assert decide(None, new, [], 1) == Cosign()


def test_the_same_checkpoint_is_consistent() -> None:
    held = cp(tree(5))
    assert proof_needed(held, held) is None
    assert decide(held, held, [], 1) == Consistent(5)


def test_an_empty_held_tree_needs_no_proof() -> None:
    empty = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    new = cp(tree(3))
    assert proof_needed(empty, new) is None
    assert decide(empty, new, [], 1) == Cosign()
    assert decide(empty, empty, [], 1) == Consistent(0)


def test_growth_with_a_valid_proof_is_cosigned() -> None:
    big = tree(9)
    held, new = cp(tree(4)), cp(big)
    assert proof_needed(held, new) == (4, 9)
    assert decide(held, new, big.consistency_proof(4, 9), 1) == Cosign()


def test_a_bad_proof_is_fetched_again_then_kept_with_the_evidence() -> None:
    held, new = cp(tree(4)), cp(tree(9, edit=1))  # history rewritten, then regrown
    proof = tree(9, edit=1).consistency_proof(4, 9)
    first = decide(held, new, proof, 1)
    assert isinstance(first, RetryProof)
    assert PROOF_ATTEMPTS == 2
    last = decide(held, new, proof, PROOF_ATTEMPTS)
    assert isinstance(last, Misbehaviour)
    assert last.kind == "badconsistencyproof"
    assert last.summary == first.detail and "\n" not in last.summary
    shown = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    assert last.detail == f"{first.detail}\nproof:\n{shown}"


@pytest.mark.parametrize(
    ("held", "new", "kind"),
    [
        (cp(tree(6)), cp(tree(6, edit=2)), "fork"),
        (cp(tree(6)), cp(tree(6), origin="borderlink.example/audit/carol"), "originmismatch"),
    ],
)
def test_contradicting_signed_notes_are_misbehaviour_without_a_proof(
    held: Checkpoint, new: Checkpoint, kind: str
) -> None:
    assert proof_needed(held, new) is None
    got = decide(held, new, [], 1)
    assert isinstance(got, Misbehaviour) and got.kind == kind
    assert got.summary == got.detail  # one line: what the two notes say


def test_read_proof_decodes_the_hashes() -> None:
    hashes = [b"a" * 32, b"b" * 32]
    raw = msgspec.json.encode(
        {"old": 1, "new": 2, "proof": [base64.b64encode(h).decode() for h in hashes]}
    )
    assert read_proof(raw) == hashes


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"not json", "consistency proof is not well formed"),
        (b'{"proof": "x"}', "consistency proof is not well formed"),
        (b'{"proof": ["***"]}', "not base64"),
    ],
)
def test_read_proof_refuses_what_is_not_a_proof(raw: bytes, words: str) -> None:
    with pytest.raises(AuditError, match=words):
        read_proof(raw)
