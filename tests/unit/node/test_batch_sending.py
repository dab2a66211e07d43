"""A batch send as a service (node/sending.py ``send_batch``) on a real store, inline runners and a
fixed clock: every message, outbox row and audit entry in one unit or none of them; bodies checked
before anything is sealed, named by index; sealing in bounded chunks; delivery woken once."""

from __future__ import annotations

import json
import pickle
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from node.batches import MAX_BATCH, MAX_BATCH_BYTES, SEAL_CHUNK, check_batch, chunks
from node.outgoing import Refused, prepared, sealed
from node.storage import Store
from protocol.envelope import open_envelope
from protocol.errors import UsageError, ValidationError
from protocol.schemas import decode_body, encode_body
from protocol.templates import template
from tests.conftest import NOW, fixed_identity
from tests.peering import peer_record
from tests.stores import peered
from tests.unit.node.test_sending_and_inbox import Woken, audit, sender

ALICE, BOB, DAVE = (fixed_identity(n) for n in ("alice", "bob", "dave"))
ALERT = encode_body(template("seizure-alert"))


def alert(**meta: str) -> bytes:
    body = json.loads(ALERT)
    body["meta"].update(meta)
    return json.dumps(body).encode()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with peered(
        tmp_path / "alice.db", peer_record(BOB, "bob"), peer_record(DAVE, "dave"), now=NOW
    ) as s:
        yield s


class Recording:
    """An inline crypto runner that remembers how many bodies each call was given, and may
    change what a call returns (to make the commit fail)."""

    def __init__(self, after: Callable[[Any], Any] = lambda result: result) -> None:
        self.calls: list[tuple[str, int]] = []
        self.after = after

    async def __call__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        bodies = {prepared: 1, sealed: 3}.get(fn)  # where each takes its chunk of bodies
        self.calls.append((fn.__name__, 0 if bodies is None else len(args[bodies])))
        result = fn(*args, **kwargs)
        return self.after(result) if fn is sealed else result


async def test_a_batch_is_queued_in_order_audited_and_each_peer_woken_once(store: Store) -> None:
    woken = Woken()
    bodies = [alert(tlp=t) for t in ("GREEN", "AMBER", "CLEAR", "RED")]
    ids = await sender(store, woken).send_batch(["bob", "dave"], "seizure-alert", bodies, 600)
    assert len(set(ids)) == 4
    assert woken.peers == ["bob", "dave"]
    entries = audit(store)
    assert [e.message_id for e in entries] == [i.hex() for i in ids]
    assert {(e.kind, e.actor, e.detail) for e in entries} == {
        ("message.queued", "operator", "to bob,dave")
    }
    # Each id holds its own body: bob opens them in input order.
    opened = []
    for msg_id in ids:
        rows = store.outbox_rows(msg_id)
        assert sorted(r.peer for r in rows) == sorted([BOB.node_id, DAVE.node_id])
        [due] = [d for d in store.due(BOB.node_id, NOW, 10) if d.id == msg_id]
        env = open_envelope(due.envelope, BOB, sender_of=lambda _: ALICE.public, now=int(NOW))
        opened.append(decode_body("seizure-alert", env.body).meta.tlp)
    assert opened == ["GREEN", "AMBER", "CLEAR", "RED"]


async def test_a_bad_body_refuses_the_batch_by_index_and_seals_nothing(store: Store) -> None:
    run = Recording()
    bodies = [alert()] * 3 + [alert(tlp="PURPLE")] + [alert()] * 2
    with pytest.raises(ValidationError) as err:
        await sender(store, Woken(), run_cpu=run).send_batch(["bob"], "seizure-alert", bodies, 600)
    assert err.value.path == "bodies[3].meta.tlp"
    assert [name for name, _ in run.calls] == ["prepared"]  # checked, never sealed
    assert audit(store) == [] and store.outbox_rows() == []
    with pytest.raises(ValidationError, match=r"^bodies\[1\]: body is empty"):
        await sender(store, Woken()).send_batch(["bob"], "seizure-alert", [ALERT, b" "], 600)


async def test_a_failing_commit_queues_none_of_the_batch(store: Store) -> None:
    """The last message of the batch takes the id of the first: its insert fails inside the unit
    (a real constraint of the store), after all the others were written in it."""

    def collide(result: list[Any]) -> list[Any]:
        if len(result) > 1:
            result[-1] = msgspec.structs.replace(result[-1], id=result[0].id)
        return result

    run = Recording(collide)
    with pytest.raises(sqlite3.IntegrityError):  # the store's own error
        await sender(store, Woken(), run_cpu=run).send_batch(
            ["bob"], "seizure-alert", [ALERT] * 5, 600
        )
    assert audit(store) == [] and store.outbox_rows() == []


async def test_sealing_goes_in_chunks_and_bounds_are_checked_first(store: Store) -> None:
    run = Recording()
    count = 2 * SEAL_CHUNK + 3
    ids = await sender(store, Woken(), run_cpu=run).send_batch(
        ["bob"], "seizure-alert", [ALERT] * count, 600
    )
    assert len(store.outbox_rows(limit=1000)) == len(ids) == count
    seals = [n for name, n in run.calls if name == "sealed"]
    assert seals == [SEAL_CHUNK, SEAL_CHUNK, 3]
    for bad, words in (
        ([ALERT] * (MAX_BATCH + 1), f"at most {MAX_BATCH:,} messages"),
        ([], "holds no message"),
    ):
        run = Recording()
        with pytest.raises(UsageError, match=words):
            await sender(store, Woken(), run_cpu=run).send_batch(["bob"], "seizure-alert", bad, 600)
        assert run.calls == []
    for to, ttl, words in (
        (["bob"], 0, r"^ttl: must be between 1 second and 30 days"),
        (["bob", "bob"], 600, r"^to: a recipient is listed twice"),
        ([], 600, r"^to: at least one recipient is needed"),
    ):
        run = Recording()
        with pytest.raises(ValidationError, match=words):
            await sender(store, Woken(), run_cpu=run).send_batch(to, "seizure-alert", [ALERT], ttl)
        assert run.calls == []


def test_the_byte_bound_counts_the_bodies() -> None:
    check_batch(2, MAX_BATCH_BYTES)
    with pytest.raises(UsageError, match="at most 32 MiB of bodies"):
        check_batch(2, MAX_BATCH_BYTES + 1)


def test_chunks_cover_the_items_in_order_with_their_first_index() -> None:
    assert list(chunks("abcdefg", 3)) == [(0, "abc"), (3, "def"), (6, "g")]
    assert list(chunks([], 3)) == []


def test_prepared_sets_the_priority_and_keeps_the_canonical_encoding() -> None:
    [same, urgent] = prepared("seizure-alert", [ALERT], None) + prepared(
        "seizure-alert", [ALERT], "urgent"
    )
    assert same.body == ALERT and (same.priority, same.tlp) == ("flash", "AMBER")
    assert decode_body("seizure-alert", urgent.body).meta.priority == "urgent"
    assert encode_body(decode_body("seizure-alert", urgent.body)) == urgent.body
    huge = json.loads(ALERT)
    huge["narrative"] = "x" * (600 * 1024)
    refused = prepared("seizure-alert", [ALERT, json.dumps(huge).encode()], None, first=10)
    assert isinstance(refused, Refused)
    assert refused.error().path.startswith("bodies[11].narrative")
    # What a worker process sends back instead of an exception: plain data.
    assert pickle.loads(pickle.dumps(refused)) == refused
