"""Taking in a witness's cosignature and serving consistency proofs (node/cosigning.py) on a real
store: what is stored and audited, and the reason each refusal is given (the peer routes map it
to an HTTP answer)."""

from __future__ import annotations

import asyncio
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
        request(BOB, size, line_by(BOB, note, int(NOW) + 86400)): Refused(
            "bad_signature", "the cosignature is dated 86399 s in the future"
        ),
        request(BOB, size, line_by(BOB, note, 0)): Refused(
            "bad_signature",
            f"the cosignature is dated {int(NOW)} s before the checkpoint was signed",
        ),
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


async def test_a_cosignature_must_be_by_the_peer_the_channel_authenticated(
    store: Store,
) -> None:
    size, note = latest(store)
    body = request(BOB, size, line_by(BOB, note))
    refused = await cosigning(store).accept(body, peer=CAROL.node_id)
    assert refused is not None and refused.reason == "channel_mismatch"
    assert store.cosignatures(size) == []
    assert await cosigning(store).accept(body, peer=BOB.node_id) is None


# attack9 F4: a witness minted endless cosignatures (any past date), each replacing the last ------


async def test_12_3_a_witness_cosigns_each_checkpoint_once_whatever_it_posts(
    store: Store,
) -> None:
    """600 distinct valid lines for one checkpoint (dates across the whole accepted window)
    store and audit the first only, and are each answered as valid; the table and the log grow
    by one per newly signed checkpoint."""
    size, note = latest(store)
    cpu = CountingCpu()
    service = Cosigning(store, run_inline, lambda: NOW + 1, run_cpu=cpu)
    before = len(entries(store))
    first = line_by(BOB, note, int(NOW) + 5)
    assert await service.accept(request(BOB, size, first)) is None
    for at in range(int(NOW) - 300, int(NOW) + 300):
        assert await service.accept(request(BOB, size, line_by(BOB, note, at))) is None
    assert store.cosignatures(size) == [Cosignature(BOB.node_id, first, int(NOW) + 5)]
    assert len(entries(store)) == before + 1
    assert len(cpu.ran) == 600  # each new line checked once, the stored one again never
    refused = await service.accept(request(BOB, size, line_by(BOB, note, 0)))
    assert refused == Refused(
        "bad_signature", f"the cosignature is dated {int(NOW)} s before the checkpoint was signed"
    )
    forged = line_by(CAROL, note).replace(origin_of(CAROL.node_id), origin_of(BOB.node_id))
    assert await service.accept(request(BOB, size, forged)) == Refused("bad_signature")

    audit(store, "peer.added", now=NOW, peer="x")
    sign_checkpoint(store, ALICE, NOW + 1)
    grown, grown_note = latest(store)
    for at in (int(NOW) + 1, int(NOW) + 2, int(NOW) + 3):
        assert await service.accept(request(BOB, grown, line_by(BOB, grown_note, at))) is None
    assert [c.time for c in store.cosignatures(grown)] == [int(NOW) + 1]
    kinds = [e.kind for e in entries(store)[before:]]
    assert kinds.count("checkpoint.cosigned") == 2
    assert store.cosignatures(size) == [Cosignature(BOB.node_id, first, int(NOW) + 5)]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("at", "why"),
    [
        (0, f"dated {int(NOW) + 5000} s before the checkpoint was signed"),
        (int(NOW), "dated 5000 s before the checkpoint was signed"),
        (int(NOW) + 5000 - 301, "dated 301 s before the checkpoint was signed"),
        (int(NOW) + 9000 + 301, "dated 301 s in the future"),
    ],
)
async def test_12_3_a_cosignature_dated_before_the_checkpoint_or_after_now_is_refused(
    store: Store, at: int, why: str
) -> None:
    """Dated by the node's own record of when it signed the checkpoint (the note carries no
    time) and by its injected clock, with CLOCK_SKEW (300 s) allowed either way."""
    audit(store, "peer.added", now=NOW, peer="x")
    sign_checkpoint(store, ALICE, NOW + 5000)
    size, note = latest(store)
    assert store.checkpoint_signed_at(size) == NOW + 5000
    service = Cosigning(store, run_inline, Clock(NOW + 9000))
    before = len(entries(store))
    refused = await service.accept(request(BOB, size, line_by(BOB, note, at)))
    assert refused == Refused("bad_signature", f"the cosignature is {why}")
    assert store.cosignatures(size) == [] and len(entries(store)) == before
    # a refused one does not stand: the witness's next, well dated, cosignature is stored
    for edge in (int(NOW) + 5000 - 300, int(NOW) + 9000 + 300):
        line = line_by(BOB, note, edge)
        assert (
            await Cosigning(store, run_inline, Clock(NOW + 9000)).accept(request(BOB, size, line))
            is None
        )
    assert [c.time for c in store.cosignatures(size)] == [int(NOW) + 5000 - 300]
    assert len(entries(store)) == before + 1


async def test_12_3_two_cosignatures_by_one_witness_at_once_store_and_audit_one(
    store: Store,
) -> None:
    """Both requests find no cosignature and verify theirs; the store keeps the first."""

    async def yielding(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        await asyncio.sleep(0)  # the other request runs meanwhile, as on the crypto thread
        return fn(*args, **kwargs)

    size, note = latest(store)
    service = Cosigning(store, run_inline, lambda: NOW + 1, run_cpu=yielding)
    before = len(entries(store))
    a, b = (request(BOB, size, line_by(BOB, note, int(NOW) + i)) for i in (1, 2))
    assert await asyncio.gather(service.accept(a), service.accept(b)) == [None, None]
    assert len(store.cosignatures(size)) == 1
    assert len(entries(store)) == before + 1


def test_12_3_the_store_keeps_a_witness_first_cosignature_of_a_size(store: Store) -> None:
    size, _ = latest(store)
    first, second = (Cosignature(BOB.node_id, f"line {i}\n", int(NOW) + i) for i in (1, 2))
    with store.unit(NOW) as u:
        assert u.add_cosignature(size, first) is True
        assert u.add_cosignature(size, second) is False
        assert u.add_cosignature(size, Cosignature(CAROL.node_id, "c\n", int(NOW))) is True
    assert store.cosignature_by(size, BOB.node_id) == first
    assert store.cosignature_by(size, ALICE.node_id) is None
    assert store.cosignature_by(size + 1, BOB.node_id) is None
    assert store.checkpoint_signed_at(size) == NOW
    assert store.checkpoint_signed_at(size + 1) is None
