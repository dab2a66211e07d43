"""The delivery worker, driven by an injected clock and a fake peer against a real SQLite outbox.

What tests/integration/test_outage.py used to check by watching a real node retry in real time
(backoff grows, is jittered, stays capped, and no try comes before it is due) is decided here
with ``now`` under the test's control. No real time has to pass, so a loaded machine cannot
change the outcome: each step is one ``PeerWorker._step`` at a chosen instant. The fake peers
answer as a real one does (signed receipts, error bodies), so each test states what a given
answer does to the outbox and the audit log.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from node.config import Delivery
from node.delivery import Deliveries, GroupWriter, LinkState, PeerWorker, backoff
from node.peer_client import Answer, DeliveryFailed
from node.peer_info import PeerInfo
from node.runtime import run_inline
from node.storage import OutboxRow, QueuedMessage, Store
from node.storage.sqlite import open_store
from protocol.audit import AuditEntry
from protocol.batch import (
    BATCH_CONTENT_TYPE,
    BatchResponse,
    ItemResult,
    decode_batch,
    encode_response,
)
from protocol.envelope import decode_envelope, seal
from protocol.identity import Identity
from protocol.receipt import receipt_digest, sign_receipt
from protocol.schemas import encode_body, template
from tests.conftest import NOW, fixed_identity
from tests.peering import peer_record

POLICY = Delivery(backoff_base=1.0, backoff_max=60.0, concurrency=1)
SEED = 1337
TICK = 1e-3  # "just before due": the worker then waits this long (real time) and sends nothing
ALICE, BOB = fixed_identity("alice"), fixed_identity("bob")


class Clock:
    """What the worker reads as the time: moves only when the test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class PeerDown:
    """A client whose peer never answers, as a stopped node's refused connection."""

    def __init__(self) -> None:
        self.calls = 0

    async def post_batch(self, peer: PeerInfo, body: bytes) -> Answer:
        self.calls += 1
        raise DeliveryFailed(f"connection refused by {peer.name}")


Decision = Callable[[int, bytes, bytes], ItemResult | None]  # (position, id, hash) -> result


class Peer:
    """A peer that answers like a real one: signed receipts for what ``decide`` accepts (None:
    accepted), or the HTTP error ``status``/``error`` for the whole request."""

    def __init__(
        self,
        decide: Decision | None = None,
        *,
        status: int = 200,
        error: str = "",
        signer: Identity = BOB,
    ) -> None:
        self.decide = decide or (lambda _i, _id, _h: None)
        self.status, self.error, self.signer = status, error, signer
        self.batches: list[list[bytes]] = []  # message ids per POST
        self.receipts: list[bytes] = []

    async def post_batch(self, peer: PeerInfo, body: bytes) -> Answer:
        envs = [decode_envelope(e) for e in decode_batch(body, max_items=1024)]
        assert all(e.for_recipient(BOB.node_id) == e for e in envs)  # only bob's key slot
        self.batches.append([e.id for e in envs])
        if self.status != 200:
            error = msgspec.json.encode({"error": self.error, "message": "no"})
            return Answer(self.status, "application/json", error)
        results, covered = [], []
        for i, env in enumerate(envs):
            got = self.decide(i, env.id, env.content_hash())
            if got is None:
                covered.append((env.id, env.content_hash()))
                got = ItemResult("accepted", id=env.id, receipt=0)
            results.append(got)
        receipt = sign_receipt(self.signer, ALICE.node_id, covered, now=NOW)
        self.receipts.append(receipt)
        return Answer(200, BATCH_CONTENT_TYPE, encode_response(BatchResponse(results, [receipt])))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "node.db")
    yield s
    s.close()


@pytest.fixture
def peer() -> PeerInfo:
    return PeerInfo("bob", BOB.node_id, BOB.public, "http://127.0.0.1:1")


def queue_one(store: Store, peer: PeerInfo, *, ttl: int = 30 * 86400, at: float = NOW) -> bytes:
    """One real sealed envelope for ``peer``, queued at ``at`` (due at once). The default ttl
    outlives every retry below: nothing expires."""
    env = seal(
        ALICE,
        [peer.identity],
        "seizure-alert",
        encode_body(template("seizure-alert")),
        now=NOW,
        ttl=ttl,
    )
    with store.unit(at) as u:
        u.enqueue(
            QueuedMessage(
                id=env.id,
                type="seizure-alert",
                created=env.created,
                expires=env.expires,
                content_hash=env.content_hash(),
                envelope=env.encode(),
            ),
            [peer.node_id],
        )
    return env.id


def worker(
    store: Store,
    peer: PeerInfo,
    client: PeerDown | Peer,
    clock: Clock,
    policy: Delivery = POLICY,
    on_delivered: Callable[[int], None] | None = None,
) -> PeerWorker:
    return PeerWorker(
        peer,
        me=ALICE.node_id,
        store=store,
        run_db=run_inline,
        client=client,
        policy=policy,
        clock=clock,
        on_delivered=on_delivered,
        rng=random.Random(SEED),
    )


def row(store: Store, msg_id: bytes) -> OutboxRow:
    [r] = store.outbox_rows(msg_id)
    return r


def audit(store: Store) -> list[AuditEntry]:
    """The audit log (queueing writes nothing here: the sender writes ``message.queued``)."""
    return [msgspec.json.decode(r.entry, type=AuditEntry) for r in store.audit_rows()]


async def settle_all(w: PeerWorker) -> None:
    """One step, then wait for the batch it launched (the dispatcher does not). With nothing
    left to deliver the worker would wait for a wake-up: say so instead of hanging."""
    if w.store.next_due(w.peer.node_id, tuple(w.inflight)) is None:
        raise AssertionError("nothing left to deliver: the worker would wait for a wake-up")
    await w._step()
    while w._batches:
        await asyncio.gather(*w._batches)


# The schedule ------------------------------------------------------------------------------------


async def test_backoff_grows_is_jittered_stays_capped_and_no_try_comes_early(
    store: Store, peer: PeerInfo
) -> None:
    msg_id = queue_one(store, peer)
    down, clock = PeerDown(), Clock(NOW)
    w = worker(store, peer, down, clock)
    twin = random.Random(SEED)  # draws the same jitter as the worker, in the same order
    delays = []
    for attempt in range(12):
        await settle_all(w)  # due now: one try, which fails and schedules the next
        assert down.calls == attempt + 1
        r = row(store, msg_id)
        assert (r.status, r.attempts) == ("failed", attempt + 1)
        assert r.last_error == "connection refused by bob"
        delay = r.next_attempt - clock.now
        assert delay == pytest.approx(backoff(attempt, POLICY, twin))
        ideal = min(POLICY.backoff_max, POLICY.backoff_base * 2**attempt)
        assert 0.5 * ideal <= delay <= ideal
        delays.append(delay)

        clock.now = r.next_attempt - TICK
        await w._step()  # not due yet: the worker waits, and sends nothing
        assert down.calls == attempt + 1
        assert row(store, msg_id).attempts == attempt + 1
        clock.now = r.next_attempt

    assert delays[5] > delays[0]  # 16..32 s after 0.5..1 s: it grew
    assert all(d >= 0.5 * POLICY.backoff_max for d in delays[7:])  # 2^7 s is past the cap...
    assert max(delays) <= POLICY.backoff_max  # ...and the cap holds
    assert audit(store) == []  # a failed try is not an audit event
    assert w.link == "down"


async def test_a_restarted_worker_keeps_the_persisted_schedule(
    store: Store, peer: PeerInfo
) -> None:
    """The next try's time is on disk, so a new worker (a restarted node) does not hammer a peer
    that is down: it waits for the time the last failure set."""
    msg_id = queue_one(store, peer)
    down, clock = PeerDown(), Clock(NOW)
    for _ in range(3):
        await settle_all(worker(store, peer, down, clock))
        clock.now = row(store, msg_id).next_attempt
    assert down.calls == 3
    due = row(store, msg_id).next_attempt

    clock.now = due - TICK
    await settle_all(worker(store, peer, down, clock))
    assert down.calls == 3 and row(store, msg_id).attempts == 3
    clock.now = due
    await settle_all(worker(store, peer, down, clock))
    assert down.calls == 4 and row(store, msg_id).attempts == 4


async def test_an_expired_message_is_marked_expired_and_never_sent(
    store: Store, peer: PeerInfo
) -> None:
    msg_id = queue_one(store, peer, ttl=3600)
    later = queue_one(store, peer)
    bob, clock = Peer(), Clock(NOW + 3600)
    w = worker(store, peer, bob, clock, Delivery(batch_size=1, concurrency=1))
    await settle_all(w)  # the expired one was due first: marked, nothing sent
    assert row(store, msg_id).status == "expired"
    assert bob.batches == []
    await settle_all(w)
    assert bob.batches == [[later]]
    assert row(store, msg_id).status == "expired"


async def test_a_backed_up_queue_goes_in_batches_of_batch_size(
    store: Store, peer: PeerInfo
) -> None:
    ids = [queue_one(store, peer, at=NOW + i / 10) for i in range(5)]
    bob, clock = Peer(), Clock(NOW + 1)
    w = worker(store, peer, bob, clock, Delivery(batch_size=2, concurrency=1))
    for _ in range(3):
        await settle_all(w)
    assert bob.batches == [ids[0:2], ids[2:4], ids[4:5]]
    assert {row(store, i).status for i in ids} == {"delivered"}


# What an answer settles --------------------------------------------------------------------------


async def test_a_verified_receipt_delivers_and_is_audited(store: Store, peer: PeerInfo) -> None:
    msg_id = queue_one(store, peer)
    counted: list[int] = []
    bob, clock = Peer(), Clock(NOW + 5)
    w = worker(store, peer, bob, clock, on_delivered=counted.append)
    assert w.state() == LinkState("unknown", 0)
    await settle_all(w)
    r = row(store, msg_id)
    assert (r.status, r.attempts, r.delivered_at, r.last_error) == ("delivered", 1, NOW + 5, None)
    assert audit(store) == [
        AuditEntry(
            time=int((NOW + 5) * 1000),
            actor="node",
            kind="message.delivered",
            message_id=msg_id.hex(),
            peer_id=BOB.node_id.hex(),
            outcome="receipt verified",
            hashes={"receipt": receipt_digest(bob.receipts[0])},
        )
    ]
    assert counted == [1]
    assert w.state() == LinkState("up", 0)
    assert store.next_due(BOB.node_id) is None  # nothing left to send: the worker would idle
    assert len(bob.batches) == 1


@pytest.mark.parametrize(
    ("status", "error", "permanent"),
    [(422, "expired", True), (403, "not_recipient", True), (503, "unavailable", False)],
)
async def test_an_error_answer_to_one_message_is_final_only_for_a_permanent_reason(
    store: Store, peer: PeerInfo, status: int, error: str, permanent: bool
) -> None:
    msg_id = queue_one(store, peer)
    bob, clock = Peer(status=status, error=error), Clock(NOW)
    w = worker(store, peer, bob, clock)
    await settle_all(w)
    r = row(store, msg_id)
    text = f"bob refused the message ({error}, HTTP {status}): no"  # with what the peer said
    assert (r.attempts, r.last_error) == (1, text)
    assert w.link == "up"  # it answered
    if permanent:
        assert r.status == "rejected"
        assert audit(store) == [
            AuditEntry(
                time=int(NOW * 1000),
                actor="node",
                kind="message.delivery_refused",
                message_id=msg_id.hex(),
                peer_id=BOB.node_id.hex(),
                outcome="refused",
                detail=text,
            )
        ]
        assert store.next_due(BOB.node_id) is None  # never retried
    else:
        assert r.status == "failed" and audit(store) == []
        clock.now = r.next_attempt
        await settle_all(w)
        assert len(bob.batches) == 2


async def test_an_error_answer_to_a_batch_retries_every_message(
    store: Store, peer: PeerInfo
) -> None:
    """Which message the peer meant is not known: none is given up."""
    ids = [queue_one(store, peer, at=NOW + i / 10) for i in range(2)]
    w = worker(store, peer, Peer(status=422, error="expired"), Clock(NOW + 1))
    await settle_all(w)
    assert [row(store, i).status for i in ids] == ["failed", "failed"]
    assert audit(store) == []


async def test_each_message_of_a_batch_is_settled_on_its_own(store: Store, peer: PeerInfo) -> None:
    ids = [queue_one(store, peer, at=NOW + i / 10) for i in range(4)]

    def decide(i: int, msg_id: bytes, _h: bytes) -> ItemResult | None:
        return [
            None,  # accepted, covered by the receipt
            ItemResult("rejected", id=msg_id, reason="replay"),  # permanent
            ItemResult("rejected", id=msg_id, reason="clock_skew"),  # may pass later
            ItemResult("accepted", id=msg_id, receipt=0),  # claims a receipt that omits it
        ][i]

    bob = Peer(decide)
    w = worker(store, peer, bob, Clock(NOW + 1), Delivery(batch_size=8, concurrency=1))
    await settle_all(w)
    assert bob.batches == [ids]
    got = [(r.status, r.last_error) for r in map(lambda i: row(store, i), ids)]
    unconfirmed = "bob did not confirm the message (no valid receipt)"
    assert got == [
        ("delivered", None),
        ("rejected", "bob refused the message (replay)"),
        ("failed", unconfirmed),
        ("failed", unconfirmed),
    ]
    assert [(e.kind, e.message_id) for e in audit(store)] == [
        ("message.delivery_refused", ids[1].hex()),
        ("message.delivered", ids[0].hex()),
    ]


class Answers:
    """A peer that answers ``body`` (HTTP 200) to every batch."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def post_batch(self, peer: PeerInfo, body: bytes) -> Answer:
        return Answer(200, BATCH_CONTENT_TYPE, self.body)


def too_many() -> Answers:
    results = [ItemResult("accepted", receipt=0), ItemResult("accepted", receipt=0)]
    return Answers(encode_response(BatchResponse(results, [])))


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: Peer(signer=fixed_identity("mallory")), "receipt names another signer"),
        (too_many, "bob answered for 2 of 1 messages"),
        (lambda: Answers(b"\xc1"), "batch answer is not well formed"),
    ],
    ids=["receipt-by-another-key", "answer-for-too-many", "not-msgpack"],
)
async def test_an_answer_or_receipt_that_does_not_verify_delivers_nothing(
    store: Store, peer: PeerInfo, make: Callable[[], Peer | Answers], error: str
) -> None:
    msg_id = queue_one(store, peer)
    w = worker(store, peer, make(), Clock(NOW))  # type: ignore[arg-type]
    await settle_all(w)
    r = row(store, msg_id)
    assert r.status == "failed"
    assert r.last_error is not None
    assert r.last_error.startswith("bob sent an invalid answer or receipt: ")
    assert error in r.last_error
    assert audit(store) == []


async def test_a_receipt_that_omits_the_message_delivers_nothing(
    store: Store, peer: PeerInfo
) -> None:
    msg_id = queue_one(store, peer)
    liar = Peer(lambda _i, _id, _h: ItemResult("accepted", receipt=0))  # receipt covers nothing
    await settle_all(worker(store, peer, liar, Clock(NOW)))
    r = row(store, msg_id)
    assert (r.status, r.last_error) == (
        "failed",
        "bob did not confirm the message (no valid receipt)",
    )
    assert audit(store) == []


async def test_a_peer_without_an_endpoint_is_failed_in_words(store: Store, peer: PeerInfo) -> None:
    msg_id = queue_one(store, peer)
    nowhere = PeerInfo(peer.name, peer.node_id, peer.identity, None)
    bob = Peer()
    w = worker(store, nowhere, bob, Clock(NOW))
    await settle_all(w)
    assert bob.batches == []
    assert row(store, msg_id).last_error == "bob has no endpoint in its contact card"
    assert w.link == "down"


async def test_an_internal_error_fails_the_batch_and_frees_its_slot(
    store: Store, peer: PeerInfo
) -> None:
    class Broken:
        async def post_batch(self, *_args: object) -> Answer:
            raise RuntimeError("bug")

    msg_id = queue_one(store, peer)
    w = worker(store, peer, Broken(), Clock(NOW))  # type: ignore[arg-type]
    w.policy = Delivery(backoff_base=0.001, backoff_max=0.001, concurrency=1)
    await settle_all(w)
    r = row(store, msg_id)
    assert (r.status, r.last_error) == (
        "failed",
        "internal error while delivering; see the node's log",
    )
    assert w.inflight == set() and not w._batches


# Deliveries: the workers of a node ---------------------------------------------------------------


record = peer_record


async def test_deliveries_start_workers_for_pending_trusted_peers_only(store: Store) -> None:
    carol = fixed_identity("carol")
    bob_rec, carol_rec = record(BOB, "bob"), record(carol, "carol", status="revoked")
    with store.unit(NOW) as u:
        u.put_peer(bob_rec)
        u.put_peer(carol_rec)
    bob_info = PeerInfo.of(bob_rec)
    msg_id = queue_one(store, bob_info)
    queue_one(store, PeerInfo.of(carol_rec))
    delivered = asyncio.Event()
    bob = Peer()
    deliveries = Deliveries(
        ALICE.node_id,
        store,
        run_inline,
        bob,
        POLICY,
        clock=Clock(NOW),
        on_delivered=lambda _n: delivered.set(),
    )
    assert deliveries.link(BOB.node_id) == LinkState("idle", 0)
    try:
        await deliveries.start()
        await asyncio.wait_for(delivered.wait(), timeout=30)
        assert row(store, msg_id).status == "delivered"
        assert deliveries.link(BOB.node_id).link == "up"
        assert deliveries.link(carol.node_id) == LinkState("idle", 0)  # revoked: no worker
        await deliveries.ensure(carol_rec)
        assert deliveries.link(carol.node_id) == LinkState("idle", 0)
    finally:
        await deliveries.stop()
    assert bob.batches == [[msg_id]]
    await deliveries.ensure(bob_rec)  # after stop: starts nothing
    assert deliveries.link(BOB.node_id) == LinkState("idle", 0)


async def test_ensure_wakes_the_worker_for_a_new_message(store: Store) -> None:
    bob_rec = record(BOB, "bob")
    delivered: list[int] = []
    done = asyncio.Event()

    first_done = asyncio.Event()

    def count(n: int) -> None:
        delivered.append(n)
        first_done.set()
        if len(delivered) == 2:
            done.set()

    bob = Peer()
    deliveries = Deliveries(
        ALICE.node_id, store, run_inline, bob, POLICY, clock=Clock(NOW), on_delivered=count
    )
    try:
        first = queue_one(store, PeerInfo.of(bob_rec))
        await deliveries.ensure(bob_rec)
        await asyncio.wait_for(first_done.wait(), timeout=30)
        second = queue_one(store, PeerInfo.of(bob_rec))
        await deliveries.ensure(bob_rec)  # without it the idle worker would wait for ever
        await asyncio.wait_for(done.wait(), timeout=30)
    finally:
        await deliveries.stop()
    assert bob.batches == [[first], [second]]


# A link that is down backs off as one ------------------------------------------------------------


async def test_a_down_peer_gets_one_try_per_backoff_step_not_one_per_message(
    store: Store, peer: PeerInfo
) -> None:
    """Ten queued messages, batches of two, two in flight: while the peer is down each backoff
    step makes one try (a batch), the rest of the backlog and what is queued meanwhile wait for
    the next step (and the outbox says so), and once it answers the backlog goes."""
    policy = Delivery(batch_size=2, concurrency=2, backoff_base=1.0, backoff_max=60.0)
    ids = [queue_one(store, peer) for _ in range(10)]
    down, clock = PeerDown(), Clock(NOW)
    w = worker(store, peer, down, clock, policy)
    steps = []
    for step in range(4):
        await settle_all(w)
        assert down.calls == step + 1  # one try for the step, not one per message or batch
        rows = [row(store, i) for i in ids]
        retry_at = w.link_retry_at
        assert retry_at is not None and retry_at > clock.now
        assert {r.next_attempt for r in rows} == {retry_at}  # the whole backlog waits for it
        steps.append(retry_at - clock.now)
        late = queue_one(store, peer, at=clock.now)  # queued while the link is down
        ids.append(late)
        clock.now = retry_at - TICK
        await w._step()  # before the step: nothing goes, the new message waits for it too
        assert down.calls == step + 1
        assert row(store, late).next_attempt == retry_at
        assert row(store, late).attempts == 0
        clock.now = retry_at
    assert steps[3] > steps[0]  # the link's backoff grew with its steps
    # Each try was one batch; attempts are counted on the rows tried, none other.
    assert sum(row(store, i).attempts for i in ids) == 4 * policy.batch_size
    assert w.link == "down"

    bob = Peer()
    w.client = bob
    while store.next_due(peer.node_id, ()) is not None:
        await settle_all(w)
    assert sorted(i for b in bob.batches for i in b) == sorted(ids)
    assert {row(store, i).status for i in ids} == {"delivered"}
    assert (w.link, w.link_retry_at, w.link_failures) == ("up", None, 0)


async def test_batches_that_finish_together_share_one_commit(store: Store, peer: PeerInfo) -> None:
    """Three batches in flight, answered at once (as a broadcast's peers answer together): what
    they settle is written in one unit, and each batch's rows are delivered with their audit
    entries."""
    clock = Clock(NOW)
    ids = [queue_one(store, peer) for _ in range(3)]
    w = worker(store, peer, Peer(), clock, Delivery(batch_size=1, concurrency=3))
    for _ in ids:
        await w._step()  # one batch each, all three in flight
    assert len(w._batches) == 3
    await asyncio.gather(*w._batches)
    assert w.writer.commits == 1
    assert {row(store, i).status for i in ids} == {"delivered"}
    delivered = [e for e in audit(store) if e.kind == "message.delivered"]
    assert sorted(bytes.fromhex(e.message_id or "") for e in delivered) == sorted(ids)


async def test_a_write_that_fails_in_the_shared_unit_fails_alone(store: Store) -> None:
    """One batch's write raising must not undo another's: each is tried again in its own unit."""
    writer = GroupWriter(store, run_inline, Clock(NOW))

    def bad(_u: Any) -> None:
        raise RuntimeError("disk full")

    good_ran: list[bool] = []
    results = await asyncio.gather(
        writer.write(lambda u: good_ran.append(True)), writer.write(bad), return_exceptions=True
    )
    assert results[0] is None and isinstance(results[1], RuntimeError)
    assert good_ran == [True, True]  # in the shared unit (rolled back), then in its own
