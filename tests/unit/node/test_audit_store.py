"""The node's audit storage on a real SQLite file: appends cost O(log n) however long the log is,
and ``sign_checkpoint`` never signs a tree that does not extend the one it signed before."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.audit_store import event
from node.store import Store
from protocol.audit import AuditEntry, decode_entry, encode_entry, origin_of, verify_log
from protocol.checkpoint import Checkpoint, open_checkpoint
from protocol.errors import AuditError
from protocol.identity import Identity
from protocol.merkle import MerkleAccumulator, leaf_hash, root_from_leaf_hashes
from protocol.signednote import Verifier
from tests.conftest import NOW

REFUSAL = (
    "refusing to sign: the audit log no longer extends the checkpoint of size {size} signed "
    "before; run 'borderlink audit verify'"
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "node.db")
    yield s
    s.close()


def queued(i: int) -> AuditEntry:
    return AuditEntry(
        time=NOW * 1000 + i, actor="node", kind="message.queued", message_id=f"{i:032x}"
    )


def fill(store: Store, n: int, start: int = 0, batch: int = 5_000) -> None:
    """Append n entries the way the node does: audit_append inside the caller's transaction."""
    for lo in range(start, start + n, batch):
        with store.transaction() as db:
            for i in range(lo, min(lo + batch, start + n)):
                store.audit_append(db, queued(i))


def opened(note: str, who: Identity) -> Checkpoint:
    return open_checkpoint(note, [Verifier(origin_of(who.node_id), who.public.sign_key)])


def raw(store: Store) -> sqlite3.Connection:
    """A second connection, as someone editing node.db with the sqlite3 shell would have."""
    path = store.db.execute("PRAGMA database_list").fetchone()[2]
    return sqlite3.connect(path, isolation_level=None)


# appending --------------------------------------------------------------------------------------


def test_append_records_each_root_and_the_right_edge(store: Store) -> None:
    fill(store, 37)
    rows = store.audit_rows()
    assert [i for i, _, _ in rows] == list(range(37))
    acc = MerkleAccumulator()
    for _, entry, root in rows:
        acc.append(leaf_hash(entry))
        assert root == acc.root()
    size, peaks = store.db.execute("SELECT size, peaks FROM audit_state").fetchone()
    assert (size, bytes(peaks)) == (37, b"".join(acc.peaks))
    assert store.audit_size() == 37
    assert verify_log([e for _, e, _ in rows], [r for _, _, r in rows], []).root == acc.root()


def test_append_returns_the_index_and_refuses_unknown_kinds(store: Store) -> None:
    assert store.audit(event("peer.added", peer="x")) == 0
    assert store.audit(event("peer.removed", peer="x")) == 1
    with pytest.raises(AuditError, match=r"^unknown audit event kind 'peer\.eaten'$"):
        store.audit(event("peer.eaten"))
    assert store.audit_size() == 2  # the failed append left nothing behind


def _append_cost(store: Store, start: int, count: int) -> tuple[int, int]:
    """(SQLite VM instructions, SHA-256 computations) for ``count`` appends in one transaction.

    An append's cost, counted rather than timed: a comparison of timings flakes when the machine
    is loaded (the suite runs on 2 busy cores), a count does not change. Reading or rehashing the
    log would show in one or the other."""
    steps, hashes = [0], [0]
    real = hashlib.sha256  # what protocol.merkle hashes with

    def step() -> int:
        steps[0] += 1
        return 0  # go on

    def counted(data: bytes = b"") -> Any:
        hashes[0] += 1
        return real(data)

    with pytest.MonkeyPatch.context() as mp, store.transaction() as db:
        mp.setattr("protocol.merkle.sha256", counted)
        db.set_progress_handler(step, 1)
        try:
            for i in range(start, start + count):
                store.audit_append(db, queued(i))
        finally:
            db.set_progress_handler(None, 0)
    return steps[0], hashes[0]


def test_append_cost_does_not_grow_with_the_log(store: Store) -> None:
    """O(log n) per entry (audit_state holds the right edge): appending at 50,000 entries costs
    about what it costs at 1,000. A linear append (rereading or rehashing the log) would cost
    ~50x as much."""
    fill(store, 1_000)
    small = _append_cost(store, 1_000, 300)
    fill(store, 48_700, start=1_300)
    assert store.audit_size() == 50_000
    large = _append_cost(store, 50_000, 300)
    assert small[0] > 0 and small[1] >= 300  # counted: a leaf hash per entry at least
    assert large[0] < 2 * small[0] and large[1] < 2 * small[1], (
        f"300 appends at n=1,000: {small}, at n=50,000: {large} (VM steps, hashes)"
    )


# signing checkpoints ----------------------------------------------------------------------------


def test_sign_covers_the_whole_log_including_its_own_entry(store: Store, alice: Identity) -> None:
    fill(store, 10)
    note, new = store.sign_checkpoint(alice)
    assert new
    cp = opened(note, alice)
    assert cp.origin == origin_of(alice.node_id)
    assert cp.size == 11 == store.audit_size()
    assert cp.root_hash == root_from_leaf_hashes(store.leaf_hashes())
    last = decode_entry(store.audit_rows()[-1][1])
    assert (last.kind, last.outcome) == ("checkpoint.published", "size 11")
    assert store.latest_checkpoint() == (11, cp.root_hash, note)


def test_sign_again_without_new_entries_returns_the_same_note(
    store: Store, alice: Identity
) -> None:
    fill(store, 3)
    note, _ = store.sign_checkpoint(alice)
    assert store.sign_checkpoint(alice) == (note, False)
    assert store.sign_checkpoint(alice, force=True) == (note, False)
    assert len(store.own_checkpoints()) == 1


def test_entries_about_witnessing_alone_do_not_call_for_a_checkpoint(
    store: Store, alice: Identity, bob: Identity
) -> None:
    """Two nodes witnessing each other would otherwise extend each other's logs for ever."""
    fill(store, 3)
    note, _ = store.sign_checkpoint(alice)
    cp = opened(note, alice)
    store.add_cosignature(cp.size, bob.node_id, "\u2014 bob AAAA\n", NOW, "bob")
    other = Checkpoint(origin_of(bob.node_id), 1, bytes(32))
    store.record_witnessed(bob.node_id, other, "note", "bob")
    assert store.audit_size() == cp.size + 2
    assert store.sign_checkpoint(alice) == (note, False)
    assert len(store.own_checkpoints()) == 1


def test_a_real_event_after_witnessing_entries_is_signed(store: Store, alice: Identity) -> None:
    fill(store, 3)
    store.sign_checkpoint(alice)
    store.add_cosignature(4, b"\x01" * 32, "line", NOW, "bob")
    store.audit(event("peer.added", peer="carol"))
    note, new = store.sign_checkpoint(alice)
    assert new
    assert opened(note, alice).size == store.audit_size() == 7
    assert [s for s, _, _ in store.own_checkpoints()] == [4, 7]


def test_force_signs_witnessing_entries_too(store: Store, alice: Identity) -> None:
    fill(store, 3)
    store.sign_checkpoint(alice)
    store.add_cosignature(4, b"\x01" * 32, "line", NOW, "bob")
    note, new = store.sign_checkpoint(alice, force=True)
    assert new and opened(note, alice).size == 6


def _signed_then(store: Store, alice: Identity, sql: str, *args: object) -> int:
    fill(store, 12)
    note, _ = store.sign_checkpoint(alice)
    with raw(store) as db:
        db.execute(sql, args)
    return opened(note, alice).size


def test_refuses_to_sign_after_an_entry_was_edited(store: Store, alice: Identity) -> None:
    entry = encode_entry(queued(99))
    size = _signed_then(store, alice, "UPDATE audit SET entry = ? WHERE idx = 5", entry)
    store.audit(event("peer.added", peer="carol"))  # a real event: a checkpoint is due
    before = store.audit_size()
    with pytest.raises(AuditError, match="^" + re.escape(REFUSAL.format(size=size)) + "$"):
        store.sign_checkpoint(alice)
    with pytest.raises(AuditError, match=r"^refusing to sign"):
        store.sign_checkpoint(alice, force=True)
    assert store.audit_size() == before  # nothing was appended for the refused signature
    assert len(store.own_checkpoints()) == 1


def test_refuses_to_sign_after_two_entries_were_swapped(store: Store, alice: Identity) -> None:
    _signed_then(
        store,
        alice,
        "UPDATE audit SET entry = CASE idx WHEN 2 THEN (SELECT entry FROM audit WHERE idx = 8) "
        "ELSE (SELECT entry FROM audit WHERE idx = 2) END WHERE idx IN (2, 8)",
    )
    store.audit(event("peer.added", peer="carol"))
    with pytest.raises(AuditError, match=r"^refusing to sign"):
        store.sign_checkpoint(alice)


def test_refuses_to_sign_after_the_tail_was_deleted(store: Store, alice: Identity) -> None:
    size = _signed_then(store, alice, "DELETE FROM audit WHERE idx >= 6")
    acc = MerkleAccumulator.from_leaf_hashes(store.leaf_hashes())
    with raw(store) as db:
        db.execute("UPDATE audit_state SET size = ?, peaks = ?", (acc.size, b"".join(acc.peaks)))
    store.audit(event("peer.added", peer="carol"))
    with pytest.raises(AuditError, match=r"^refusing to sign"):
        store.sign_checkpoint(alice, force=True)
    # Enough new events to pass the signed size do not hide the gap either.
    fill(store, size, start=500)
    with pytest.raises(AuditError, match=f"^refusing to sign.*size {size} signed before"):
        store.sign_checkpoint(alice)


def test_signs_afresh_once_the_checkpoints_are_gone(store: Store, alice: Identity) -> None:
    """Why witnesses exist: with its own checkpoints deleted, the full recomputation still
    refuses an edited entry, but the fast check (recorded roots only) signs afresh, and an
    attacker who also rewrites the recorded roots passes both: only witnesses catch that."""
    _signed_then(store, alice, "UPDATE audit SET entry = ? WHERE idx = 5", encode_entry(queued(99)))
    with raw(store) as db:
        db.execute("DELETE FROM checkpoints")
    with pytest.raises(AuditError, match="no longer give the root recorded"):
        store.sign_checkpoint(alice)
    note, new = store.sign_checkpoint(alice, full=False)
    assert new and opened(note, alice).size == 14


# witnessing -------------------------------------------------------------------------------------


def test_evidence_keeps_both_notes_and_is_logged(store: Store, bob: Identity) -> None:
    store.record_evidence(bob.node_id, "fork", "old note", "new note", "two roots", "bob")
    [ev] = store.evidence()
    assert (ev["node"], ev["kind"], ev["old_note"], ev["new_note"], ev["detail"]) == (
        bob.node_id,
        "fork",
        "old note",
        "new note",
        "two roots",
    )
    entry = decode_entry(store.audit_rows()[-1][1])
    assert (entry.kind, entry.peer, entry.peer_id, entry.outcome, entry.detail) == (
        "checkpoint.inconsistent",
        "bob",
        bob.node_id.hex(),
        "fork",
        "two roots",
    )
