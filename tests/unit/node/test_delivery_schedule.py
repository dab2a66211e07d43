"""The delivery worker's retry schedule, driven by an injected clock against a real SQLite outbox.

What tests/integration/test_outage.py used to check by watching a real node retry in real time
(backoff grows, is jittered, stays capped, and no try comes before it is due) is decided here
with ``now`` under the test's control. No real time has to pass, so a loaded machine cannot
change the outcome: each step is one ``PeerWorker._step`` at a chosen instant.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.config import Delivery
from node.delivery import PeerWorker, backoff
from node.peer_info import PeerInfo
from node.store import Store
from node.transport import DeliveryFailed
from protocol.envelope import seal
from protocol.schemas import encode_body, template
from tests.conftest import NOW, fixed_identity

POLICY = Delivery(backoff_base=1.0, backoff_max=60.0, concurrency=1)
SEED = 1337
TICK = 1e-3  # "just before due": the worker then waits this long (real time) and sends nothing


class Clock:
    """What the worker reads as ``time.time()``: moves only when the test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class PeerDown:
    """A transport whose peer never answers, as a stopped node's refused connection."""

    def __init__(self) -> None:
        self.calls = 0

    async def post_batch(
        self, peer_name: str, endpoint: str, sender: bytes, body: bytes
    ) -> tuple[int, str, bytes]:
        self.calls += 1
        raise DeliveryFailed(f"connection refused by {peer_name}")


async def run_db(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """In the loop's thread: the test is the only user of the database."""
    return fn(*args, **kwargs)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "node.db")
    yield s
    s.close()


def queue_one(store: Store, peer: PeerInfo) -> bytes:
    """One real sealed envelope for ``peer``, queued at NOW (due at once)."""
    env = seal(
        fixed_identity("alice"),
        [peer.identity],
        "seizure-alert",
        encode_body(template("seizure-alert")),
        now=NOW,
        ttl=30 * 86400,  # outlives every retry below: nothing expires
    )
    store.enqueue(
        msg_id=env.id,
        type_name="seizure-alert",
        created=env.created,
        expires=env.expires,
        content_hash=env.content_hash(),
        envelope=env.encode(),
        peers=[peer.node_id],
        now=NOW,
    )
    return env.id


def worker(store: Store, peer: PeerInfo, transport: PeerDown, clock: Clock) -> PeerWorker:
    w = PeerWorker(
        peer,
        me=fixed_identity("alice").node_id,
        store=store,
        run_db=run_db,
        transport=transport,
        policy=POLICY,
        clock=clock,
    )
    w.rng = random.Random(SEED)
    return w


def row(store: Store, msg_id: bytes) -> dict[str, Any]:
    [r] = store.outbox_rows(msg_id)
    return r


@pytest.fixture
def peer() -> PeerInfo:
    bob = fixed_identity("bob")
    return PeerInfo("bob", bob.node_id, bob.public, "http://127.0.0.1:1")


async def test_backoff_grows_is_jittered_stays_capped_and_no_try_comes_early(
    store: Store, peer: PeerInfo
) -> None:
    msg_id = queue_one(store, peer)
    down, clock = PeerDown(), Clock(NOW)
    w = worker(store, peer, down, clock)
    twin = random.Random(SEED)  # draws the same jitter as the worker, in the same order
    delays = []
    for attempt in range(12):
        await w._step()  # due now: one try, which fails and schedules the next
        assert down.calls == attempt + 1
        r = row(store, msg_id)
        assert (r["status"], r["attempts"]) == ("failed", attempt + 1)
        assert r["last_error"] == "connection refused by bob"
        delay = r["next_attempt"] - clock.now
        assert delay == pytest.approx(backoff(attempt, POLICY, twin))
        ideal = min(POLICY.backoff_max, POLICY.backoff_base * 2**attempt)
        assert 0.5 * ideal <= delay <= ideal
        delays.append(delay)

        clock.now = r["next_attempt"] - TICK
        await w._step()  # not due yet: the worker waits, and sends nothing
        assert down.calls == attempt + 1
        assert row(store, msg_id)["attempts"] == attempt + 1
        clock.now = r["next_attempt"]

    assert delays[5] > delays[0]  # 16..32 s after 0.5..1 s: it grew
    assert all(d >= 0.5 * POLICY.backoff_max for d in delays[7:])  # 2^7 s is past the cap...
    assert max(delays) <= POLICY.backoff_max  # ...and the cap holds


async def test_a_restarted_worker_keeps_the_persisted_schedule(
    store: Store, peer: PeerInfo
) -> None:
    """The next try's time is on disk, so a new worker (a restarted node) does not hammer a peer
    that is down: it waits for the time the last failure set."""
    msg_id = queue_one(store, peer)
    down, clock = PeerDown(), Clock(NOW)
    for _ in range(3):
        await worker(store, peer, down, clock)._step()
        clock.now = row(store, msg_id)["next_attempt"]
    assert down.calls == 3
    due = row(store, msg_id)["next_attempt"]

    clock.now = due - TICK
    await worker(store, peer, down, clock)._step()
    assert down.calls == 3 and row(store, msg_id)["attempts"] == 3
    clock.now = due
    await worker(store, peer, down, clock)._step()
    assert down.calls == 4 and row(store, msg_id)["attempts"] == 4
