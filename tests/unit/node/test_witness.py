"""The witness carrying out its rules (node/witness_rules.py) against a fake log: what it stores,
audits, logs and cosigns for each answer, with an injected clock and no network."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from node.peer_client import Answer, AnswerTooLarge, DeliveryFailed
from node.peer_info import PeerInfo
from node.runtime import run_inline
from node.storage import Store, Witnessed
from node.storage.sqlite import open_store
from node.witness import Witness
from protocol.audit import AuditEntry, origin_of
from protocol.checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    cosign,
    sign_checkpoint,
    verify_cosignature,
)
from protocol.identity import Identity
from protocol.merkle import MerkleTree, leaf_hash
from tests.conftest import NOW, fixed_identity
from tests.peering import peer_record

ALICE, BOB = fixed_identity("alice"), fixed_identity("bob")
LOG = origin_of(BOB.node_id)


class Log:
    """Bob's log as the witness sees it over the wire; each answer can be made hostile."""

    def __init__(self, size: int) -> None:
        self.tree = MerkleTree(leaf_hash(b"%d" % i) for i in range(size))
        self.signer: Identity = BOB
        self.note_status = 200
        self.extra = ""  # lines appended to the note (other witnesses' cosignatures)
        self.proof_status = 200
        self.alter: Callable[[int], bool] = lambda _n: False  # alter the n-th proof served?
        self.proofs: list[tuple[int, int]] = []
        self.posted: list[dict[str, object]] = []
        self.cosign_status = 200
        self.fail: Exception | None = None
        self.served: str | None = None  # a note served instead of the current one (a replay)

    def grow(self, n: int) -> None:
        for _ in range(n):
            self.tree.append(leaf_hash(b"%d" % self.tree.size))

    def note(self) -> str:
        if self.served is not None:
            return self.served
        return self.signed(self.tree.size, self.tree.root())

    def signed(self, size: int, root: bytes) -> str:
        cp = Checkpoint(LOG, size, root)
        return sign_checkpoint(cp, LOG, self.signer.signing_key) + self.extra

    async def checkpoint(self, peer: PeerInfo) -> Answer:
        if self.fail is not None:
            raise self.fail
        return Answer(self.note_status, "text/plain", self.note().encode())

    async def consistency(self, peer: PeerInfo, old: int, new: int) -> Answer:
        self.proofs.append((old, new))
        proof = self.tree.consistency_proof(old, new)
        if self.alter(len(self.proofs)):
            proof = [bytes(32), *proof[1:]]
        body = msgspec.json.encode({"old": old, "new": new, "proof": proof})
        return Answer(self.proof_status, "application/json", body)

    async def post_cosignature(self, peer: PeerInfo, payload: bytes) -> Answer:
        self.posted.append(msgspec.json.decode(payload))
        return Answer(self.cosign_status, "application/json", b"{}")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


record = peer_record


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "alice.db")
    with s.unit(NOW) as u:
        u.put_peer(record(BOB, "bob"))
    yield s
    s.close()


def witness(store: Store, log: Log, clock: Clock) -> Witness:
    return Witness(ALICE, store, run_inline, log, clock)


def audit(store: Store) -> list[AuditEntry]:
    return [msgspec.json.decode(r.entry, type=AuditEntry) for r in store.audit_rows()]


async def test_a_first_checkpoint_is_kept_audited_and_cosigned(store: Store) -> None:
    log, clock = Log(3), Clock(NOW + 7)
    log.extra = cosign(  # another witness's line: not the log's word, not kept
        log.note().split("\n\n")[0] + "\n", "carol", fixed_identity("carol").signing_key, NOW
    )
    w = witness(store, log, clock)
    await w.round()
    assert w.outcomes() == {"bob": "cosigned size 3"}
    signed = log.note().removesuffix(log.extra)
    assert store.witnessed(BOB.node_id) == Witnessed(BOB.node_id, 3, log.tree.root(), signed)
    assert audit(store) == [
        AuditEntry(
            time=int(clock.now * 1000),
            actor="node",
            kind="checkpoint.received",
            peer="bob",
            peer_id=BOB.node_id.hex(),
            outcome="size 3",
            hashes={"root": log.tree.root().hex()},
        )
    ]
    [posted] = log.posted
    assert (posted["witness"], posted["size"]) == (ALICE.node_id.hex(), 3)
    verifier = CosignatureVerifier(origin_of(ALICE.node_id), ALICE.public.sign_key)
    assert verify_cosignature(signed + str(posted["line"]), verifier) == NOW + 7
    assert log.proofs == []


async def test_the_same_checkpoint_again_is_consistent_and_writes_nothing(store: Store) -> None:
    log, clock = Log(3), Clock(NOW)
    w = witness(store, log, clock)
    await w.round()
    await w.round()
    assert w.outcomes() == {"bob": "consistent at size 3"}
    assert len(audit(store)) == 1 and len(log.posted) == 1


async def test_growth_is_checked_with_a_proof_then_cosigned(store: Store) -> None:
    log, clock = Log(3), Clock(NOW)
    w = witness(store, log, clock)
    await w.round()
    log.grow(5)
    await w.round()
    assert w.outcomes() == {"bob": "cosigned size 8"}
    assert log.proofs == [(3, 8)]
    assert [e.outcome for e in audit(store)] == ["size 3", "size 8"]


async def test_one_altered_proof_is_asked_again_and_not_held_against_the_log(
    store: Store,
) -> None:
    log, clock = Log(3), Clock(NOW)
    w = witness(store, log, clock)
    await w.round()
    log.grow(5)
    log.alter = lambda n: n == 1
    with capture_logs() as logs:
        await w.round()
    assert w.outcomes() == {"bob": "cosigned size 8"}
    assert log.proofs == [(3, 8), (3, 8)]
    assert store.evidence() == []
    assert [e["event"] for e in logs] == ["witness.bad_proof_retry"]


async def test_a_proof_that_fails_twice_is_kept_as_evidence_once(store: Store) -> None:
    log, clock = Log(3), Clock(NOW + 1)
    w = witness(store, log, clock)
    await w.round()
    held = store.witnessed(BOB.node_id)
    assert held is not None
    log.grow(5)
    log.alter = lambda _n: True
    with capture_logs() as logs:
        await w.round()
        await w.round()  # the same offending note again: no second record
    outcome = w.outcomes()["bob"]
    assert outcome.startswith("MISBEHAVIOUR: ") and "\n" not in outcome
    [evidence] = store.evidence()
    assert (evidence.kind, evidence.old_note, evidence.new_note, evidence.at) == (
        "badconsistencyproof",
        held.note,
        log.note(),
        NOW + 1,
    )
    assert "\nproof:\n" in evidence.detail
    entries = audit(store)
    assert [e.kind for e in entries] == ["checkpoint.received", "checkpoint.inconsistent"]
    assert (entries[1].outcome, entries[1].detail) == ("badconsistencyproof", evidence.detail)
    assert store.witnessed(BOB.node_id) == held  # the bad checkpoint is not taken
    events = [e["event"] for e in logs]
    assert events.count("witness.misbehaviour") == 1
    assert events.count("witness.bad_proof_retry") == 2
    assert len(log.posted) == 1


async def test_another_root_at_the_same_size_is_evidence(store: Store) -> None:
    log, clock = Log(4), Clock(NOW)
    w = witness(store, log, clock)
    await w.round()
    log.tree = MerkleTree(leaf_hash(b"other %d" % i) for i in range(4))
    await w.round()
    assert w.outcomes()["bob"].startswith("MISBEHAVIOUR: ")
    [evidence] = store.evidence()
    assert evidence.kind == "fork"
    assert log.proofs == []


# Issue 9: a replayed old checkpoint the log really signed was recorded as a rollback ------------


async def held_85_then(store: Store, log: Log) -> tuple[Witness, Witnessed]:
    """The witness holds Bob's size 85 (after 10); then the log serves what the test sets."""
    w = witness(store, log, Clock(NOW))
    await w.round()
    log.grow(75)
    await w.round()
    held = store.witnessed(BOB.node_id)
    assert held is not None and held.size == 85
    log.proofs.clear()
    return w, held


async def test_regression_a_replayed_old_checkpoint_is_stale_not_evidence(store: Store) -> None:
    log = Log(10)
    old_note = log.note()
    w, held = await held_85_then(store, log)
    log.served = old_note  # genuinely signed by Bob, when his log had 10 entries
    with capture_logs() as logs:
        await w.round()
    assert w.outcomes() == {"bob": "stale checkpoint (size 10, holding 85)"}
    assert log.proofs == [(10, 85)]  # a prefix of the held tree: checked, not assumed
    assert store.evidence() == []
    assert store.witnessed(BOB.node_id) == held
    assert [e.kind for e in audit(store)] == ["checkpoint.received"] * 2
    assert len(log.posted) == 2  # nothing cosigned for the stale one
    assert [e["event"] for e in logs] == ["witness.stale"]


async def test_a_smaller_checkpoint_of_another_history_is_a_rollback(store: Store) -> None:
    log = Log(10)
    w, held = await held_85_then(store, log)
    forked = MerkleTree(leaf_hash(b"other %d" % i) for i in range(10))
    log.served = log.signed(10, forked.root())  # signed by Bob's key, not a prefix of his log
    await w.round()
    assert w.outcomes()["bob"].startswith("MISBEHAVIOUR: log ")
    assert log.proofs == [(10, 85), (10, 85)]  # an unsigned proof is asked for twice
    [evidence] = store.evidence()
    assert (evidence.kind, evidence.old_note, evidence.new_note) == (
        "rollback",
        held.note,
        log.served,
    )
    assert "not a prefix" in evidence.detail and "\nproof:\n" in evidence.detail
    assert store.witnessed(BOB.node_id) == held


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (400, "MISBEHAVIOUR: log "),  # the log refuses, twice, to link two trees it signed
        (503, "stale checkpoint (size 10, holding 85), no consistency proof (HTTP 503)"),
    ],
)
async def test_a_smaller_checkpoint_without_a_proof(
    store: Store, status: int, outcome: str
) -> None:
    log = Log(10)
    old_note = log.note()
    w, _held = await held_85_then(store, log)
    log.served, log.proof_status = old_note, status
    await w.round()
    assert w.outcomes()["bob"].startswith(outcome)
    assert [e.kind for e in store.evidence()] == (["rollback"] if status == 400 else [])


async def test_growth_the_log_refuses_to_prove_twice_is_evidence(store: Store) -> None:
    log, clock = Log(3), Clock(NOW)
    w = witness(store, log, clock)
    await w.round()
    log.grow(5)
    log.proof_status = 400
    await w.round()
    assert log.proofs == [(3, 8), (3, 8)]
    [evidence] = store.evidence()
    assert evidence.kind == "badconsistencyproof"
    assert evidence.detail.startswith(f"log {LOG} gives no proof that size 8 extends its size 3")


# Issue 9: every node witnessed every peer at the same fixed interval ----------------------------


def test_rounds_are_jittered_around_the_interval(store: Store) -> None:
    w = Witness(ALICE, store, run_inline, Log(1), Clock(NOW), rng=random.Random(7))
    delays = [w.next_delay(60.0) for _ in range(200)]
    assert all(48.0 <= d <= 72.0 for d in delays)
    assert min(delays) < 52.0 and max(delays) > 68.0  # spread over the whole range
    again = Witness(ALICE, store, run_inline, Log(1), Clock(NOW), rng=random.Random(7))
    assert [again.next_delay(60.0) for _ in range(200)] == delays


@pytest.mark.parametrize(
    ("break_it", "outcome"),
    [
        (lambda log: setattr(log, "note_status", 404), "no checkpoint (HTTP 404)"),
        (lambda log: setattr(log, "proof_status", 500), "no consistency proof (HTTP 500)"),
        (
            lambda log: setattr(log, "fail", DeliveryFailed("connection refused by bob at x")),
            "unreachable: connection refused by bob at x",
        ),
        (
            lambda log: setattr(log, "fail", AnswerTooLarge("checkpoint is over 64 KiB")),
            "bad answer: checkpoint is over 64 KiB",
        ),
        (
            lambda log: setattr(log, "signer", fixed_identity("mallory")),
            "bad answer: note is not signed by any trusted key",
        ),
    ],
    ids=["no-checkpoint", "no-proof", "unreachable", "too-large", "other-key"],
)
async def test_a_peer_that_cannot_be_witnessed_says_why(
    store: Store, break_it: Callable[[Log], None], outcome: str
) -> None:
    log, clock = Log(3), Clock(NOW)
    w = witness(store, log, clock)
    await w.round()
    log.grow(2)
    break_it(log)
    await w.round()
    assert w.outcomes() == {"bob": outcome}
    assert store.evidence() == [] and len(audit(store)) == 1


async def test_a_refused_cosignature_is_logged(store: Store) -> None:
    log, clock = Log(3), Clock(NOW)
    log.cosign_status = 403
    with capture_logs() as logs:
        await witness(store, log, clock).round()
    assert [(e["event"], e["status"]) for e in logs] == [("witness.cosignature_refused", 403)]


async def test_only_trusted_peers_with_an_endpoint_are_witnessed(store: Store) -> None:
    with store.unit(NOW) as u:
        u.put_peer(record(fixed_identity("carol"), "carol", status="revoked"))
        u.put_peer(record(fixed_identity("dave"), "dave", endpoints=0))
    w = witness(store, Log(3), Clock(NOW))
    await w.round()
    assert w.outcomes() == {"bob": "cosigned size 3"}


async def test_a_peer_no_longer_trusted_drops_out_of_the_outcomes(store: Store) -> None:
    """status showed what an old round found at a peer removed since (a stale witnessing line)."""
    w = witness(store, Log(3), Clock(NOW))
    await w.round()
    assert w.outcomes() == {"bob": "cosigned size 3"}
    with store.unit(NOW) as u:
        u.put_peer(record(BOB, "bob", status="revoked"))
    await w.round()
    assert w.outcomes() == {}
