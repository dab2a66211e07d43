"""Consistency proofs for witnesses (node/cosigning.py) on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from node.cosigning import ProofCache
from node.storage import AuditRow
from node.storage.sqlite import SqliteStore
from protocol.merkle import MerkleTree, leaf_hash, verify_consistency
from tests.stores import audit


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
