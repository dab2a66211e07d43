"""How much cryptography a trusted peer's batch costs the node (attack9 F3), counted on a real
SQLite store: identical envelopes are opened once, a re-delivery of a message already in the
inbox is answered ``duplicate`` from its header alone (not opened), the rest is opened in chunks
so other peers' work interleaves; and what cannot be abused: another content under a stored id
is opened and refused ``replay``, a sender no longer trusted gets nothing for free, and neither
does another peer's channel. Refusals a peer can repeat at will are audited sampled, per sender
(F4)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from node import peers
from node.ratelimit import RateLimiter
from node.receiver import OPEN_CHUNK, Receiver
from node.rejections import Rejections
from node.runtime import run_inline
from node.storage import Store
from node.storage.sqlite import open_store
from protocol.audit import AuditEntry
from protocol.batch import BatchResponse
from protocol.envelope import Envelope, seal
from protocol.schemas import encode_body, template
from tests.conftest import fixed_identity
from tests.peering import peer_record

BOB, ALICE, MALLORY = (fixed_identity(n) for n in ("bob", "alice", "mallory"))
ME = BOB  # the node under test


class CountingCpu:
    """run_inline for the crypto thread, remembering how many envelopes each call opens."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def __call__(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(len(args[0]))
        return await run_inline(fn, *args, **kwargs)

    @property
    def opened(self) -> int:
        return sum(self.calls)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "bob.db")
    with s.unit(time.time()) as u:
        u.put_peer(peer_record(ALICE, "alice"))
        u.put_peer(peer_record(MALLORY, "mallory"))
    yield s
    s.close()


def receiver(store: Store, cpu: CountingCpu) -> Receiver:
    return Receiver(ME, store, run_inline, cpu, Rejections(store, run_inline, time.time), time.time)


def alert(
    msg_id: bytes | None = None, type_name: str = "seizure-alert", body: bytes = b""
) -> bytes:
    env = seal(
        ALICE,
        [ME.public],
        type_name,  # type: ignore[arg-type]
        body or encode_body(template(type_name)),
        now=int(time.time()),
        ttl=3600,
        msg_id=msg_id,
    )
    return env.for_recipient(ME.node_id).encode()


def deliver(rx: Receiver, batch: list[bytes], peer: bytes = ALICE.node_id) -> BatchResponse:
    return asyncio.run(rx.receive(batch, source="192.0.2.7", peer=peer))


def outcomes(resp: BatchResponse) -> list[tuple[str, str | None]]:
    return [(r.outcome, r.reason) for r in resp.results]


def test_256_copies_of_one_envelope_are_opened_once(store: Store) -> None:
    cpu = CountingCpu()
    rx = receiver(store, cpu)
    resp = deliver(rx, [alert()] * 256)
    assert cpu.opened == 1
    assert outcomes(resp) == [("accepted", None)] + [("rejected", "replay")] * 255
    assert store.inbox_stats().total == 1


def test_a_redelivery_of_a_stored_message_is_answered_from_its_header_without_opening(
    store: Store,
) -> None:
    cpu = CountingCpu()
    rx = receiver(store, cpu)
    data = alert()
    first = deliver(rx, [data])
    cpu.calls.clear()
    again = deliver(rx, [data] * 256)
    assert cpu.opened == 0
    assert outcomes(again) == [("duplicate", None)] * 256
    assert again.receipts == first.receipts  # the stored receipt, once
    assert {r.receipt for r in again.results} == {0}
    # Not opened: a copy whose key slot was mangled is still the same signed message.
    env = msgspec.msgpack.decode(data, type=Envelope)
    env.slots[0].key = bytes(len(env.slots[0].key))
    assert outcomes(deliver(rx, [env.encode()])) == [("duplicate", None)]
    assert cpu.opened == 0


def test_another_content_under_a_stored_id_is_opened_and_refused_as_a_replay(store: Store) -> None:
    cpu = CountingCpu()
    rx = receiver(store, cpu)
    msg_id = b"\x07" * 16
    deliver(rx, [alert(msg_id)])
    cpu.calls.clear()
    other = alert(msg_id, body=encode_body(template("seizure-alert")))  # fresh key: other bytes
    assert outcomes(deliver(rx, [other])) == [("rejected", "replay")]
    assert cpu.opened == 1


def test_a_revoked_sender_gets_no_duplicate_answer_for_free(store: Store) -> None:
    cpu = CountingCpu()
    rx = receiver(store, cpu)
    data = alert()
    deliver(rx, [data])
    peers.revoke(store, "alice", actor="test", now=time.time())
    cpu.calls.clear()
    assert outcomes(deliver(rx, [data])) == [("rejected", "unknown_sender")]
    assert cpu.opened == 1


def test_a_stored_envelope_on_another_peers_channel_is_refused_before_anything(
    store: Store,
) -> None:
    cpu = CountingCpu()
    rx = receiver(store, cpu)
    data = alert()
    deliver(rx, [data])
    cpu.calls.clear()
    assert outcomes(deliver(rx, [data], peer=MALLORY.node_id)) == [("rejected", "channel_mismatch")]
    assert cpu.opened == 0


def test_a_batch_is_opened_in_chunks_so_other_peers_work_interleaves(store: Store) -> None:
    cpu = CountingCpu()
    rx = receiver(store, cpu)
    n = 2 * OPEN_CHUNK + 3
    resp = deliver(rx, [alert() for _ in range(n)])
    assert cpu.calls == [OPEN_CHUNK, OPEN_CHUNK, 3]
    assert outcomes(resp) == [("accepted", None)] * n


def test_a_token_bucket_charges_a_cost_or_nothing() -> None:
    bucket = RateLimiter(rate=1.0, burst=10)
    assert bucket.allow("peer", 0.0)  # 9 left
    assert not bucket.allow("peer", 0.0, cost=10)  # cannot pay: nothing taken
    assert bucket.allow("peer", 0.0, cost=9)
    assert not bucket.allow("peer", 0.0)
    assert bucket.allow("peer", 1.0)  # refilled one


def rejected(store: Store) -> list[AuditEntry]:
    entries = [msgspec.json.decode(r.entry, type=AuditEntry) for r in store.audit_rows()]
    return [e for e in entries if e.kind == "message.rejected"]


def test_f4_one_foreign_reference_reposted_2560_times_is_audited_sampled_per_sender(
    store: Store,
) -> None:
    """Feedback about a message this node never sent, 10 batches of 256 copies: refused every
    time, nothing stored, but audited on the 1st, 2nd, 4th... only, with the count."""
    cpu = CountingCpu()
    rx = receiver(store, cpu)
    fb = msgspec.structs.replace(template("feedback"), refers_to=(b"\x42" * 16).hex())
    data = alert(type_name="feedback", body=encode_body(fb))
    for _ in range(10):
        resp = deliver(rx, [data] * 256)
        assert set(outcomes(resp)) == {("rejected", "foreign_reference")}
    entries = rejected(store)
    assert [e.outcome for e in entries] == ["foreign_reference"] * 12  # 1, 2, 4 ... 2048
    assert entries[-1].detail.startswith("2048 so far from this sender; last: feedback about")
    assert {e.peer_id for e in entries} == {ALICE.node_id.hex()}
    assert cpu.opened == 10  # once per batch
    assert store.inbox_stats().total == 0
