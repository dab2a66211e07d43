"""Envelope cryptography in worker processes (node/runtime.py) answers exactly as the crypto
thread does, and the receiver's group commit stores concurrent requests exactly once.

The pool is real (spawned processes holding the identity); the store is a real SQLite file.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import pytest

from keys.trust import PeerRecord
from node.delivery import LinkState
from node.receiver import Receiver, SenderKeys, open_batch, sender_keys
from node.rejections import Rejections
from node.runtime import GIVE_UP_AFTER, CryptoPool, Threads, WorkerLost, in_process, run_inline
from node.storage import Store
from node.storage.sqlite import open_reader, open_store
from protocol.envelope import Envelope, seal
from protocol.identity import Identity
from protocol.receipt import receipt_covers, verify_receipt
from protocol.schemas import encode_body, template
from tests.conftest import fixed_identity
from tests.peering import peer_record

in_process(time.sleep)  # a call a worker holds while the test kills it

BOB, ALICE, MALLORY, CAROL = (fixed_identity(n) for n in ("bob", "alice", "mallory", "carol"))
NOW = int(time.time())


def sealed(sender: Any = ALICE, to: Any = BOB, *, ttl: int = 3600) -> bytes:
    env = seal(
        sender,
        [to.public],
        "seizure-alert",
        encode_body(template("seizure-alert")),
        now=NOW,
        ttl=ttl,
    )
    return env.for_recipient(to.node_id).encode()


def tampered() -> bytes:
    env = msgspec.msgpack.decode(sealed(), type=Envelope)
    env.payload = env.payload[:-1] + bytes([env.payload[-1] ^ 1])
    return env.encode()


def forged() -> bytes:
    """Signed with Mallory's key under Alice's node id, sealed so it decrypts."""
    posing = Identity.from_secret_bytes(MALLORY.secret_bytes(), node_id=ALICE.node_id)
    return sealed(posing)


@pytest.fixture
async def pool() -> AsyncIterator[CryptoPool]:
    p = CryptoPool(BOB, 1)
    await p.warm()
    yield p
    await p.aclose()


def senders(rec: PeerRecord | None = None) -> dict[bytes, SenderKeys]:
    record = rec or peer_record(ALICE, "alice")
    return {ALICE.node_id: sender_keys(record, ALICE.node_id, {}, NOW)}


async def test_a_worker_opens_every_envelope_as_the_crypto_thread_does(pool: CryptoPool) -> None:
    batch = [sealed(), tampered(), forged(), sealed(to=CAROL), sealed(MALLORY), sealed(ttl=1)]
    here = open_batch(batch, BOB, senders(), NOW + 10)
    there = await pool.run(open_batch, (batch, BOB, senders(), NOW + 10), {})
    assert there == here  # same messages, same (reason, words) for each refusal
    assert not isinstance(here[0], tuple) and here[0].sender == ALICE.node_id
    reasons = [r[0] if isinstance(r, tuple) else "ok" for r in here]
    assert reasons == [
        "ok",
        "decryption_failed",
        "bad_signature",
        "not_recipient",
        "unknown_sender",
        "expired",
    ]


async def test_a_revoked_sender_is_refused_in_the_same_words_by_a_worker(
    pool: CryptoPool,
) -> None:
    rec = peer_record(ALICE, "alice", status="revoked")
    batch = [sealed()]
    here = open_batch(batch, BOB, senders(rec), NOW)
    assert here == await pool.run(open_batch, (batch, BOB, senders(rec), NOW), {})
    assert here == [("unknown_sender", "sender 'alice' has been revoked")]


async def test_a_worker_killed_during_a_call_fails_it_as_lost_and_the_next_gets_a_new_one(
    pool: CryptoPool,
) -> None:
    [pid] = pool.pids()
    held = asyncio.ensure_future(pool.run(time.sleep, (30,), {}))  # a call it is holding
    await asyncio.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerLost):
        await held
    [opened] = await pool.run(open_batch, ([sealed()], BOB, senders(), NOW), {})
    assert not isinstance(opened, tuple)
    assert pool.pids() and pool.pids() != [pid]


async def test_workers_end_with_their_input_and_leave_no_process(pool: CryptoPool) -> None:
    """What kill -9 of the node does to a worker's pipe, done here by closing it."""
    pids = pool.pids()
    await pool.aclose()
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped: it exited


async def test_a_rotated_identity_gets_workers_with_the_new_keys() -> None:
    me = fixed_identity("dave")
    p = CryptoPool(me, 1)
    try:
        me.take_over(fixed_identity("erin"))  # a rotation: the node's object, new keys
        batch = [sealed(to=me)]
        [opened] = await p.run(open_batch, (batch, me, senders(), NOW), {})
        assert not isinstance(opened, tuple), opened
    finally:
        await p.aclose()


# Group commit ------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "bob.db")
    with s.unit(time.time()) as u:
        u.put_peer(peer_record(ALICE, "alice"))
    yield s
    s.close()


def held_db(gate: asyncio.Event) -> tuple[Callable[..., Any], ThreadPoolExecutor]:
    """A database thread whose first group commit waits for ``gate`` (before it reaches the
    thread, which goes on serving the other requests' reads): the requests that finish opening
    meanwhile queue for the next commit, as they do behind a slow fsync."""
    executor = ThreadPoolExecutor(1)
    held = [False]

    async def run_db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if getattr(fn, "__name__", "") == "_store_group" and not held[0]:
            held[0] = True
            await gate.wait()
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    return run_db, executor


async def test_opening_does_not_wait_behind_the_writers_thread(
    store: Store, tmp_path: Path
) -> None:
    """The look before opening (peer table, stored re-deliveries) reads on the reader's own
    connection and thread (issue 12): with the writer's one thread held, as by a long group
    commit, a request is decided and opened and waits only for its own commit; stored once the
    thread is free. Before, it waited for the writer's thread before any cryptography."""
    writer, reader = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    reads = open_reader(tmp_path / "bob.db")
    gate = threading.Event()

    async def on(executor: ThreadPoolExecutor, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            executor, functools.partial(fn, *args)
        )

    run_db = functools.partial(on, writer)
    rejections = Rejections(store, run_db, time.time)
    rx = Receiver(
        BOB,
        store,
        run_db,
        run_inline,
        rejections,
        reads=reads,
        run_read=functools.partial(on, reader),
    )
    held = asyncio.ensure_future(run_db(gate.wait, 20.0))
    try:
        answer = asyncio.ensure_future(
            rx.receive([sealed()], source="192.0.2.7", peer=ALICE.node_id)
        )
        for _ in range(500):  # until it waits for its commit: opened, with the thread still held
            if rx._committer is not None or answer.done():
                break
            await asyncio.sleep(0.01)
        # Its group commit is under way (so it was opened) while the thread is still held.
        assert rx._committer is not None and not rx._committer.done()
        assert not held.done() and store.inbox_stats().total == 0
    finally:
        gate.set()
        await held
    resp = await answer
    assert [r.outcome for r in resp.results] == ["accepted"] and store.inbox_stats().total == 1
    reads.close()
    writer.shutdown()
    reader.shutdown()


async def test_concurrent_batches_share_a_commit_and_are_each_stored_exactly_once(
    store: Store,
) -> None:
    gate = asyncio.Event()
    run_db, executor = held_db(gate)
    rx = Receiver(BOB, store, run_db, run_inline, Rejections(store, run_db, time.time))
    batches = [[sealed() for _ in range(3)] for _ in range(6)]
    again = batches[1][0]  # the same message in two concurrent requests of one group
    batches.append([again])
    first = asyncio.create_task(rx.receive(batches[0], source="192.0.2.7", peer=ALICE.node_id))
    for _ in range(500):  # until the first request's commit is under way (taken off the queue)
        if rx._committer is not None and not rx._queue:
            break
        await asyncio.sleep(0.01)
    rest = [
        asyncio.create_task(rx.receive(b, source="192.0.2.7", peer=ALICE.node_id))
        for b in batches[1:]
    ]
    for _ in range(500):
        if len(rx._queue) == len(rest):
            break
        await asyncio.sleep(0.01)
    assert len(rx._queue) == len(rest) and not first.done()
    gate.set()
    answers = [await first, *[await t for t in rest]]
    executor.shutdown()

    assert rx.commits == 2  # the first alone, the six that waited for it together
    outcomes = [[r.outcome for r in a.results] for a in answers]
    assert outcomes[:-1] == [["accepted"] * 3] * 6
    assert outcomes[-1] == ["duplicate"]  # the group's earlier request stored it first
    assert store.inbox_stats().total == 18  # every message once, the repeated one once
    # Each answer's receipts verify and cover its messages (the duplicate: the original one).
    for batch, answer in zip(batches, answers, strict=True):
        for data, res in zip(batch, answer.results, strict=True):
            assert res.receipt is not None
            body = verify_receipt(
                answer.receipts[res.receipt], signer=BOB.public, sender=ALICE.node_id
            )
            env = msgspec.msgpack.decode(data, type=Envelope)
            assert receipt_covers(body, env.id, env.content_hash())


async def test_one_requests_unexpected_error_fails_it_alone_not_its_group(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that meets an error nobody foresaw (a bug, a constraint) inside a group commit
    gets its own 500; the other requests of the group are stored and answered (attack review of
    h12, F3: the whole group's transaction rolled back and every request failed)."""
    gate = asyncio.Event()
    run_db, executor = held_db(gate)
    rx = Receiver(BOB, store, run_db, run_inline, Rejections(store, run_db, time.time))
    cursed = sealed()
    cursed_id = msgspec.msgpack.decode(cursed, type=Envelope).id
    real_check = rx._check_reference

    def check(op: Any) -> None:
        if op.id == cursed_id:
            raise RuntimeError("a fault this request alone meets")
        real_check(op)

    monkeypatch.setattr(rx, "_check_reference", check)
    first = asyncio.create_task(rx.receive([sealed()], source="192.0.2.7", peer=ALICE.node_id))
    for _ in range(500):
        if rx._committer is not None and not rx._queue:
            break
        await asyncio.sleep(0.01)
    good = [[sealed(), sealed()], [sealed()]]
    tasks = [
        asyncio.create_task(rx.receive(b, source="192.0.2.7", peer=ALICE.node_id))
        for b in [good[0], [cursed], good[1]]
    ]
    for _ in range(500):
        if len(rx._queue) == len(tasks):
            break
        await asyncio.sleep(0.01)
    assert len(rx._queue) == len(tasks)
    gate.set()
    await first
    done = await asyncio.gather(*tasks, return_exceptions=True)
    executor.shutdown()
    assert isinstance(done[1], RuntimeError)
    stored = [a for a in (done[0], done[2]) if not isinstance(a, BaseException)]
    assert [[r.outcome for r in a.results] for a in stored] == [
        ["accepted", "accepted"],
        ["accepted"],
    ]
    assert store.inbox_stats().total == 4  # the first request's, and the group's good three
    assert store.inbox_lookup(ALICE.node_id, cursed_id) is None


async def test_workers_that_keep_dying_leave_the_cryptography_to_the_thread() -> None:
    """A worker that cannot run here (killed at every call, say) must not stop the node from
    receiving: a dead one is replaced at once, but after a few lost calls in a row none is, and
    run_cpu opens on its crypto thread."""
    threads = Threads(BOB, 1)
    pool = threads.pool
    assert pool is not None
    try:
        await pool.warm()
        for _ in range(GIVE_UP_AFTER):
            for _ in range(200):  # the one lost before was replaced, ready for the next call
                if pool.idle:
                    break
                await asyncio.sleep(0.01)
            assert pool.idle == 1
            held = asyncio.ensure_future(pool.run(time.sleep, (30,), {}))
            await asyncio.sleep(0.2)
            os.kill(pool.pids()[0], signal.SIGKILL)
            with pytest.raises(WorkerLost):
                await held
        await asyncio.sleep(0.5)
        assert pool.failing and pool.idle == 0 and pool.pids() == []
        [opened] = await threads.run_cpu(open_batch, [sealed()], BOB, senders(), NOW)
        assert not isinstance(opened, tuple)
    finally:
        await threads.aclose()
        threads.shutdown()


async def test_workers_start_only_once_the_crypto_thread_is_busy() -> None:
    """``[node] crypto_start = "busy"`` (the default): calls one at a time never start a worker
    (a quiet node pays nothing for them); the first call that finds the thread busy starts them
    all, and the calls after it can use them."""
    threads = Threads(BOB, 2)
    pool = threads.pool
    assert pool is not None
    try:
        for _ in range(5):
            [opened] = await threads.run_cpu(open_batch, [sealed()], BOB, senders(), NOW)
            assert not isinstance(opened, tuple)
        assert pool.pids() == [] and pool.idle == 0
        held = asyncio.ensure_future(threads.run_cpu(time.sleep, 0.5))  # the thread, busy
        await asyncio.sleep(0)
        [opened] = await threads.run_cpu(open_batch, [sealed()], BOB, senders(), NOW)
        assert not isinstance(opened, tuple)
        await held
        for _ in range(500):  # bounded: the workers import for a while
            if pool.idle == 2:
                break
            await asyncio.sleep(0.02)
        assert len(pool.pids()) == 2 and pool.idle == 2
    finally:
        await threads.aclose()
        threads.shutdown()


async def test_status_says_when_the_workers_were_given_up_on(tmp_path: Path) -> None:
    """After the workers died at every call, the node keeps its cryptography on one thread
    until restarted; ``status`` says so (JSON and words), not only one log line (attack review
    of issue 12, F2)."""
    from cli.status import _human
    from node.status import CryptoStatus, Running, report, snapshot

    s = open_store(tmp_path / "status.db")
    try:
        snap = snapshot(s)
    finally:
        s.close()
    for failing in (False, True):
        me = Running(
            "bob",
            BOB.node_id,
            time.time(),
            lambda: "127.0.0.1:7443",
            crypto=functools.partial(CryptoStatus, processes=2, running=0, failing=failing),
        )
        rep = msgspec.to_builtins(report(me, snap, lambda _n: LinkState("up", 0), {}, time.time()))
        assert rep["crypto"] == {"processes": 2, "running": 0, "failing": failing}
        words = _human(rep)
        assert ("all cryptography runs on one thread" in words) is failing
        assert ("restart the node" in words) is failing
