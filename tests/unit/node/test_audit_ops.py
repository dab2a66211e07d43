"""Signing this node's checkpoints (node/audit_ops.py) on a real SQLite file: a checkpoint covers
the whole log including its own entry, and is never signed over a tree that does not extend the
one signed before (PROTOCOL.md 12.2)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.audit_ops import sign_checkpoint
from node.auditing import record
from node.storage import Cosignature, SignedCheckpoint, Store, Witnessed
from node.storage.sqlite import SqliteStore
from protocol.audit import AuditEntry, decode_entry, encode_entry, origin_of
from protocol.checkpoint import Checkpoint, open_checkpoint
from protocol.errors import AuditError
from protocol.identity import Identity
from protocol.merkle import MerkleAccumulator, leaf_hash, root_from_leaf_hashes
from protocol.signednote import Verifier
from tests.conftest import NOW
from tests.stores import audit

REFUSAL = (
    "refusing to sign: the audit log no longer extends the checkpoint of size {size} signed "
    "before; run 'borderlink audit verify'"
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "node.db")
    yield s
    s.close()


def sign(store: Store, who: Identity, **kw: Any) -> tuple[str, bool]:
    signed = sign_checkpoint(store, who, NOW, **kw)
    return signed.note, signed.new


def queued(i: int) -> AuditEntry:
    return AuditEntry(
        time=NOW * 1000 + i, actor="node", kind="message.queued", message_id=f"{i:032x}"
    )


def fill(store: Store, n: int, start: int = 0) -> None:
    with store.unit(NOW) as u:
        for i in range(start, start + n):
            u.append_audit(queued(i))


def leaves(store: Store) -> list[bytes]:
    return [leaf_hash(r.entry) for r in store.audit_rows()]


def cosigned(store: Store, size: int, witness: bytes, line: str) -> None:
    """What accepting a witness's cosignature writes (node/cosigning.py)."""
    with store.unit(NOW) as u:
        record(u, "checkpoint.cosigned", peer="bob", peer_id=witness.hex(), outcome=f"size {size}")
        u.add_cosignature(size, Cosignature(witness, line, NOW))


def witnessed(store: Store, node: bytes, cp: Checkpoint) -> None:
    """What accepting a peer's checkpoint writes (node/witness.py)."""
    with store.unit(NOW) as u:
        u.put_witnessed(Witnessed(node, cp.size, cp.root_hash, "note"))
        record(u, "checkpoint.received", peer="bob", peer_id=node.hex())


def opened(note: str, who: Identity) -> Checkpoint:
    return open_checkpoint(note, [Verifier(origin_of(who.node_id), who.public.sign_key)])


def raw(store: SqliteStore) -> sqlite3.Connection:
    """A second connection, as someone editing node.db with the sqlite3 shell would have."""
    path = store._db.execute("PRAGMA database_list").fetchone()[2]
    return sqlite3.connect(path, isolation_level=None)


# signing checkpoints ----------------------------------------------------------------------------


def test_sign_covers_the_whole_log_including_its_own_entry(
    store: SqliteStore, alice: Identity
) -> None:
    fill(store, 10)
    note, new = sign(store, alice)
    assert new
    cp = opened(note, alice)
    assert cp.origin == origin_of(alice.node_id)
    assert cp.size == 11 == store.audit_state().size
    assert cp.root_hash == root_from_leaf_hashes(leaves(store))
    last = decode_entry(store.audit_rows()[-1].entry)
    assert (last.kind, last.outcome) == ("checkpoint.published", "size 11")
    assert store.latest_checkpoint() == SignedCheckpoint(11, cp.root_hash, note)


def test_sign_again_without_new_entries_returns_the_same_note(
    store: SqliteStore, alice: Identity
) -> None:
    fill(store, 3)
    note, _ = sign(store, alice)
    assert sign(store, alice) == (note, False)
    assert sign(store, alice, force=True) == (note, False)
    assert len(store.checkpoints()) == 1


def test_entries_about_witnessing_alone_do_not_call_for_a_checkpoint(
    store: SqliteStore, alice: Identity, bob: Identity
) -> None:
    """Two nodes witnessing each other would otherwise extend each other's logs for ever."""
    fill(store, 3)
    note, _ = sign(store, alice)
    cp = opened(note, alice)
    cosigned(store, cp.size, bob.node_id, "\u2014 bob AAAA\n")
    other = Checkpoint(origin_of(bob.node_id), 1, bytes(32))
    witnessed(store, bob.node_id, other)
    assert store.audit_state().size == cp.size + 2
    assert sign(store, alice) == (note, False)
    assert len(store.checkpoints()) == 1


def test_a_real_event_after_witnessing_entries_is_signed(
    store: SqliteStore, alice: Identity
) -> None:
    fill(store, 3)
    sign(store, alice)
    cosigned(store, 4, b"\x01" * 32, "line")
    audit(store, "peer.added", peer="carol")
    note, new = sign(store, alice)
    assert new
    assert opened(note, alice).size == store.audit_state().size == 7
    assert [c.size for c in store.checkpoints()] == [4, 7]


def test_force_signs_witnessing_entries_too(store: SqliteStore, alice: Identity) -> None:
    fill(store, 3)
    sign(store, alice)
    cosigned(store, 4, b"\x01" * 32, "line")
    note, new = sign(store, alice, force=True)
    assert new and opened(note, alice).size == 6


def _signed_then(store: SqliteStore, alice: Identity, sql: str, *args: object) -> int:
    fill(store, 12)
    note, _ = sign(store, alice)
    with raw(store) as db:
        db.execute(sql, args)
    return opened(note, alice).size


def test_refuses_to_sign_after_an_entry_was_edited(store: SqliteStore, alice: Identity) -> None:
    entry = encode_entry(queued(99))
    size = _signed_then(store, alice, "UPDATE audit SET entry = ? WHERE idx = 5", entry)
    audit(store, "peer.added", peer="carol")  # a real event: a checkpoint is due
    before = store.audit_state().size
    with pytest.raises(AuditError, match="^" + re.escape(REFUSAL.format(size=size)) + "$"):
        sign(store, alice)
    with pytest.raises(AuditError, match=r"^refusing to sign"):
        sign(store, alice, force=True)
    assert store.audit_state().size == before  # nothing was appended for the refused signature
    assert len(store.checkpoints()) == 1


def test_refuses_to_sign_after_two_entries_were_swapped(
    store: SqliteStore, alice: Identity
) -> None:
    _signed_then(
        store,
        alice,
        "UPDATE audit SET entry = CASE idx WHEN 2 THEN (SELECT entry FROM audit WHERE idx = 8) "
        "ELSE (SELECT entry FROM audit WHERE idx = 2) END WHERE idx IN (2, 8)",
    )
    audit(store, "peer.added", peer="carol")
    with pytest.raises(AuditError, match=r"^refusing to sign"):
        sign(store, alice)


def test_refuses_to_sign_after_the_tail_was_deleted(store: SqliteStore, alice: Identity) -> None:
    size = _signed_then(store, alice, "DELETE FROM audit WHERE idx >= 6")
    acc = MerkleAccumulator.from_leaf_hashes(leaves(store))
    with raw(store) as db:
        db.execute("UPDATE audit_state SET size = ?, peaks = ?", (acc.size, b"".join(acc.peaks)))
    audit(store, "peer.added", peer="carol")
    with pytest.raises(AuditError, match=r"^refusing to sign"):
        sign(store, alice, force=True)
    # Enough new events to pass the signed size do not hide the gap either.
    fill(store, size, start=500)
    with pytest.raises(AuditError, match=f"^refusing to sign.*size {size} signed before"):
        sign(store, alice)


def test_signs_afresh_once_the_checkpoints_are_gone(store: SqliteStore, alice: Identity) -> None:
    """Why witnesses exist: with its own checkpoints deleted, the full recomputation still
    refuses an edited entry, but the fast check (recorded roots only) signs afresh, and an
    attacker who also rewrites the recorded roots passes both: only witnesses catch that."""
    _signed_then(store, alice, "UPDATE audit SET entry = ? WHERE idx = 5", encode_entry(queued(99)))
    with raw(store) as db:
        db.execute("DELETE FROM checkpoints")
    with pytest.raises(AuditError, match="no longer give the root recorded"):
        sign(store, alice)
    note, new = sign(store, alice, full=False)
    assert new and opened(note, alice).size == 14
