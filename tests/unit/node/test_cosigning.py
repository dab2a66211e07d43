"""Taking in a witness's cosignature and serving consistency proofs (node/cosigning.py) on a real
store: what is stored and audited, and the reason each refusal is given (the peer routes map it
to an HTTP answer)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from node.audit_ops import sign_checkpoint
from node.cosigning import Cosigning, ProofCache, Refused
from node.runtime import run_inline
from node.storage import AuditRow, Cosignature, Store
from node.storage.sqlite import SqliteStore, open_store
from protocol.audit import AuditEntry, origin_of
from protocol.checkpoint import checkpoint_of, cosign
from protocol.identity import Identity
from protocol.merkle import MerkleTree, leaf_hash, verify_consistency
from protocol.signednote import parse_note
from tests.conftest import NOW, fixed_identity
from tests.peering import peer_record
from tests.stores import audit

ALICE, BOB, CAROL = (fixed_identity(n) for n in ("alice", "bob", "carol"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """Alice's log, with a signed checkpoint; Bob witnesses it, Carol is revoked."""
    s = open_store(tmp_path / "alice.db")
    with s.unit(NOW) as u:
        u.put_peer(peer_record(BOB, "bob"))
        u.put_peer(peer_record(CAROL, "carol", status="revoked"))
    sign_checkpoint(s, ALICE, NOW)
    yield s
    s.close()


def cosigning(store: Store) -> Cosigning:
    return Cosigning(store, run_inline, lambda: NOW + 1)


def latest(store: Store) -> tuple[int, str]:
    cp = store.latest_checkpoint()
    assert cp is not None
    return cp.size, cp.note


def request(witness: Identity, size: int, line: str, name: str | None = None) -> bytes:
    got = {"witness": (name or witness.node_id.hex()), "size": size, "line": line}
    return msgspec.json.encode(got)


def line_by(witness: Identity, note: str, at: int = int(NOW)) -> str:
    return cosign(parse_note(note).text, origin_of(witness.node_id), witness.signing_key, at)


def entries(store: Store) -> list[AuditEntry]:
    return [msgspec.json.decode(r.entry, type=AuditEntry) for r in store.audit_rows()]


async def test_a_trusted_witness_cosignature_is_stored_in_our_spelling_and_audited(
    store: Store,
) -> None:
    size, note = latest(store)
    line = line_by(BOB, note)
    assert await cosigning(store).accept(request(BOB, size, line.removesuffix("\n"))) is None
    assert store.cosignatures(size) == [Cosignature(BOB.node_id, line, int(NOW))]
    assert entries(store)[-1] == AuditEntry(
        time=int((NOW + 1) * 1000),
        actor="node",
        kind="checkpoint.cosigned",
        peer="bob",
        peer_id=BOB.node_id.hex(),
        outcome=f"size {size}",
    )


async def test_refusals_say_why_and_store_nothing(store: Store) -> None:
    size, note = latest(store)
    before = len(entries(store))
    cases = {
        b"not json": Refused("malformed", "expected JSON {witness, size, line}"),
        request(BOB, size, "x", name="zz"): Refused(
            "malformed", "expected JSON {witness, size, line}"
        ),
        request(CAROL, size, line_by(CAROL, note)): Refused("unknown_sender"),
        request(ALICE, size, line_by(ALICE, note)): Refused("unknown_sender"),
        request(BOB, size + 7, line_by(BOB, note)): Refused(
            "malformed", "no checkpoint of that size"
        ),
        request(BOB, size, line_by(BOB, note) + "more\n"): Refused(
            "malformed", "a cosignature is one line"
        ),
        request(BOB, size, line_by(CAROL, note)): Refused("bad_signature"),
        request(BOB, size, line_by(BOB, note, int(NOW) + 86400)): Refused("bad_signature"),
    }
    for body, refusal in cases.items():
        assert await cosigning(store).accept(body) == refusal, body
    assert store.cosignatures(size) == []
    assert len(entries(store)) == before


async def test_a_consistency_proof_links_two_signed_sizes_as_the_log_grows(store: Store) -> None:
    service = cosigning(store)
    first, first_note = latest(store)
    assert await service.consistency(first, first) == []  # the cached tree now has ``first``
    for _ in range(3):
        audit(store, "peer.added", now=NOW, peer="x")
    sign_checkpoint(store, ALICE, NOW)
    second, second_note = latest(store)
    proof = await service.consistency(first, second)  # the cache is extended, not rebuilt
    assert not isinstance(proof, Refused)
    old, new = checkpoint_of(first_note), checkpoint_of(second_note)
    verify_consistency(first, second, old.root_hash, new.root_hash, proof)
    assert proof == await cosigning(store).consistency(first, second)


@pytest.mark.parametrize(("old", "new"), [(0, 1), (2, 1), (1, 2)])
async def test_a_proof_is_only_to_a_signed_size(store: Store, old: int, new: int) -> None:
    assert latest(store)[0] == 1  # the log holds its publication only
    audit(store, "peer.added", now=NOW, peer="x")  # size 2, never signed
    refused = await cosigning(store).consistency(old, new)
    assert refused == Refused("malformed", "sizes must satisfy 0 < old <= new, new a signed size")


def test_regression_proof_cache_hashes_each_leaf_once(tmp_path: Path) -> None:
    """Alternating signed sizes used to rebuild the whole tree per request."""

    class Counting(SqliteStore):
        read = 0

        def audit_rows(self, start: int = 0, end: int | None = None) -> list[AuditRow]:
            out = super().audit_rows(start, end)
            Counting.read += len(out)
            return out

    store = Counting(tmp_path / "node.db")
    for i in range(300):
        audit(store, "peer.added", peer=f"p{i}")
    full = MerkleTree([leaf_hash(r.entry) for r in SqliteStore.audit_rows(store)])
    cache = ProofCache()
    for new in (200, 300, 200, 300, 250):
        proof = cache.proof(store, 100, new)
        verify_consistency(100, new, full.root(100), full.root(new), proof)
    assert Counting.read == 300
    store.close()
