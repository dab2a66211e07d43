"""Taking in a witness's cosignature and serving consistency proofs (node/cosigning.py) on a real
store: what is stored and audited, and the reason each refusal is given (the peer routes map it
to an HTTP answer)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

import msgspec
import pytest

from node.audit_ops import KEEP_CHECKPOINTS, sign_checkpoint
from node.auditing import record
from node.cosigning import Cosigning, ProofCache, Refused
from node.runtime import run_inline
from node.storage import AuditRow, Cosignature, SignedCheckpoint, Store
from node.storage.sqlite import SqliteStore, open_store
from protocol.audit import AuditEntry, origin_of
from protocol.checkpoint import Checkpoint, checkpoint_of, cosign
from protocol.checkpoint import sign_checkpoint as sign_note
from protocol.identity import Identity
from protocol.merkle import MerkleTree, leaf_hash, verify_consistency
from protocol.signednote import parse_note
from tests.conftest import NOW, fixed_identity
from tests.peering import peer_record
from tests.stores import audit

ALICE, BOB, CAROL = (fixed_identity(n) for n in ("alice", "bob", "carol"))
P = ParamSpec("P")
T = TypeVar("T")


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
async def test_a_proof_is_only_within_the_signed_log(store: Store, old: int, new: int) -> None:
    assert latest(store)[0] == 1  # the log holds its publication only
    audit(store, "peer.added", now=NOW, peer="x")  # size 2, never signed
    refused = await cosigning(store).consistency(old, new)
    assert refused == Refused(
        "malformed", "sizes must satisfy 0 < old <= new <= the latest signed size"
    )


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


# Issue 9: requests read every checkpoint; a replayed cosignature was audited again -------------


class NoFullScans(SqliteStore):
    """A store whose list of checkpoints may not be read: what a request path must never need."""

    def checkpoints(self) -> list[SignedCheckpoint]:
        raise AssertionError("checkpoints() read on a request path")


def many_checkpoints(store: Store, n: int) -> None:
    """A log of ``n`` entries with a signed checkpoint at every size, written in two units (fast);
    the checkpoint of size 1 is the fixture's."""
    with store.unit(NOW) as u:
        for i in range(1, n):
            record(u, "peer.added", peer=f"p{i}")
    origin = origin_of(ALICE.node_id)
    with store.unit(NOW) as u:
        for row in u.audit_rows(1):
            size = row.index + 1
            note = sign_note(Checkpoint(origin, size, row.root), origin, ALICE.signing_key)
            u.add_checkpoint(SignedCheckpoint(size, row.root, note))


@pytest.fixture
def big(tmp_path: Path) -> Iterator[NoFullScans]:
    s = NoFullScans(tmp_path / "big.db")
    with s.unit(NOW) as u:
        u.put_peer(peer_record(BOB, "bob"))
    sign_checkpoint(s, ALICE, NOW)
    many_checkpoints(s, 5000)
    yield s
    s.close()


async def test_regression_proofs_and_cosignatures_never_read_every_checkpoint(
    big: NoFullScans,
) -> None:
    service = cosigning(big)
    proof = await service.consistency(100, 4000)
    assert not isinstance(proof, Refused)
    old, new = big.checkpoint_at(100), big.checkpoint_at(4000)
    assert old is not None and new is not None
    verify_consistency(100, 4000, old.root, new.root, proof)
    assert await service.accept(request(BOB, 4000, line_by(BOB, new.note))) is None
    assert [c.witness for c in big.cosignatures(4000)] == [BOB.node_id]


async def test_signing_leaves_a_bounded_number_of_checkpoints(big: NoFullScans) -> None:
    assert len(SqliteStore.checkpoints(big)) == 5000
    await cosigning(big).accept(request(BOB, 10, line_by(BOB, note_at(big, 10))))
    audit(big, "peer.added", now=NOW, peer="new")
    signed = sign_checkpoint(big, ALICE, NOW + 1)
    kept = [c.size for c in SqliteStore.checkpoints(big)]
    assert len(kept) == KEEP_CHECKPOINTS
    # the newest cosigned one stays (with its cosignature), in place of the oldest of the rest
    assert kept == [10, *range(5000 - KEEP_CHECKPOINTS + 3, 5001), signed.size]
    assert len(big.cosignatures(10)) == 1


def note_at(store: Store, size: int) -> str:
    cp = store.checkpoint_at(size)
    assert cp is not None
    return cp.note


class CountingCpu:
    """A ``run_cpu`` that runs inline and counts what it ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        self.ran.append(fn.__name__)
        return fn(*args, **kwargs)


async def test_regression_a_replayed_cosignature_is_stored_and_audited_once(
    store: Store,
) -> None:
    size, note = latest(store)
    cpu = CountingCpu()
    service = Cosigning(store, run_inline, lambda: NOW + 1, run_cpu=cpu)
    body = request(BOB, size, line_by(BOB, note))
    before = len(entries(store))
    for _ in range(200):
        assert await service.accept(body) is None
    assert len(entries(store)) == before + 1
    assert cpu.ran == ["verify_cosignature"]  # checked once, off the event loop
    newer = line_by(BOB, note, int(NOW) + 1)  # a new cosignature by the same witness replaces it
    assert await service.accept(request(BOB, size, newer)) is None
    assert store.cosignatures(size) == [Cosignature(BOB.node_id, newer, int(NOW) + 1)]
    assert len(entries(store)) == before + 2


async def test_a_cosignature_must_be_by_the_peer_the_channel_authenticated(
    store: Store,
) -> None:
    size, note = latest(store)
    body = request(BOB, size, line_by(BOB, note))
    refused = await cosigning(store).accept(body, peer=CAROL.node_id)
    assert refused is not None and refused.reason == "channel_mismatch"
    assert store.cosignatures(size) == []
    assert await cosigning(store).accept(body, peer=BOB.node_id) is None
