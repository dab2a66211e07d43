"""Signing a checkpoint prunes the older ones (node/audit_ops.py, PROTOCOL.md 12.2): at most
``keep`` remain, the latest and the newest cosigned one always among them, and the pruned ones'
cosignatures go with them; what verifying and exporting the log read stays correct."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node.audit_ops import export_snapshot, log_snapshot, sign_checkpoint, verify_snapshot
from node.storage import Cosignature, Store
from node.storage.sqlite import open_store
from protocol.errors import NodeError
from tests.conftest import NOW, fixed_identity
from tests.stores import audit

ALICE = fixed_identity("alice")
WITNESS = b"\x01" * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "alice.db")
    yield s
    s.close()


def signed(store: Store, keep: int) -> int:
    audit(store, "peer.added", now=NOW, peer="x")
    return sign_checkpoint(store, ALICE, NOW, keep=keep).size


def sizes(store: Store) -> list[int]:
    return [c.size for c in store.checkpoints()]


def test_signing_keeps_the_newest_checkpoints_only(store: Store) -> None:
    made = [signed(store, keep=3) for _ in range(6)]
    assert sizes(store) == made[-3:]


def test_the_newest_cosigned_checkpoint_and_its_cosignatures_stay(store: Store) -> None:
    made = [signed(store, keep=3) for _ in range(2)]
    with store.unit(NOW) as u:
        u.add_cosignature(made[0], Cosignature(WITNESS, "line\n", 1))
        u.add_cosignature(made[1], Cosignature(WITNESS, "line\n", 2))
    made += [signed(store, keep=3) for _ in range(5)]
    assert sizes(store) == [made[1], *made[-2:]]  # in place of the oldest of the newest three
    assert store.cosignatures(made[0]) == []  # pruned with its checkpoint
    assert store.cosignatures(made[1]) == [Cosignature(WITNESS, "line\n", 2)]
    assert store.cosigned_size() == made[1]


def test_verify_and_export_read_the_kept_checkpoints(store: Store) -> None:
    for _ in range(6):
        last = signed(store, keep=2)
    report = verify_snapshot(log_snapshot(store), ALICE.public)
    assert (report.checkpoints, report.checkpoint_size, report.uncovered) == (2, last, 0)
    covered, note = export_snapshot(store)
    assert covered.checkpoint.size == last and len(covered.rows) == last
    assert note == covered.checkpoint.note


def test_fewer_than_two_kept_checkpoints_is_refused(store: Store) -> None:
    signed(store, keep=2)
    with pytest.raises(NodeError, match="keep at least 2"):
        signed(store, keep=1)
    assert len(sizes(store)) == 1
