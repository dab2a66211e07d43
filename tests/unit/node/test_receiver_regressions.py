"""Receiver bugs found in review, each pinned with the real Receiver over a real SQLite file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from keys.card import Card, make_card
from keys.trust import PeerRecord
from node.receiver import Receiver
from node.rejections import Rejections
from node.runtime import run_inline, wall_clock
from node.storage import Store
from node.storage.sqlite import open_store
from protocol.envelope import Envelope, seal
from protocol.identity import Identity
from protocol.schemas import encode_body, template
from tests.conftest import fixed_identity

NAMES = ("alice", "mallory", "bob")


def card(ident: Identity, name: str) -> Card:
    now = int(time.time())
    return make_card(
        ident,
        name=name,
        unit_type="PCU",
        country="ME",
        location="MEBAR",
        endpoints=["http://127.0.0.1:1"],
        valid_from=now - 10,
        valid_until=now + 86400,
    )


@pytest.fixture
def net(tmp_path: Path) -> tuple[dict[str, Identity], Store, Receiver]:
    ids = {n: fixed_identity(n) for n in NAMES}
    store = open_store(tmp_path / "node.db")
    for n in ("alice", "mallory"):
        c = card(ids[n], n)
        with store.unit(time.time()) as u:
            u.put_peer(
                PeerRecord(
                    name=n,
                    node_id=c.identity.node_id,
                    fingerprint=c.identity.fingerprint,
                    card=c.armored(),
                    verified_by="fingerprint",
                    added_at=int(time.time()),
                )
            )
    rejections = Rejections(store, run_inline, wall_clock)
    return ids, store, Receiver(ids["bob"], store, run_inline, run_inline, rejections)


def sealed(
    ids: dict[str, Identity],
    sender: str,
    type_name: str = "seizure-alert",
    body: bytes | None = None,
    to: tuple[str, ...] = ("bob",),
    **kw: Any,
) -> Envelope:
    return seal(
        ids[sender],
        [ids[n].public for n in to],
        type_name,  # type: ignore[arg-type]
        body or encode_body(template(type_name)),
        now=int(time.time()),
        ttl=3600,
        **kw,
    )


def deliver(rx: Receiver, *envs: Envelope) -> list[tuple[str, str | None]]:
    """One batch, on the channel of the first envelope's sender."""
    me = rx.me.node_id
    batch = [e.for_recipient(me).encode() for e in envs]
    resp = asyncio.run(rx.receive(batch, source="t", peer=envs[0].sender))
    return [(r.outcome, r.reason) for r in resp.results]


def test_regression_co_recipient_cannot_preempt_another_senders_id(net: Any) -> None:
    """Mallory, a co-recipient, reuses the id of Alice's message to Bob before it arrives."""
    ids, store, rx = net
    real = sealed(ids, "alice", to=("bob", "mallory"))
    evil = sealed(ids, "mallory", msg_id=real.id)
    assert deliver(rx, evil) == [("accepted", None)]
    assert deliver(rx, real) == [("accepted", None)]
    senders = [m.row.sender for m in store.inbox_get(real.id)]
    assert sorted(senders) == sorted([ids["alice"].node_id, ids["mallory"].node_id])


def test_regression_retraction_before_its_original_still_withdraws_it(net: Any) -> None:
    ids, store, rx = net
    orig = sealed(ids, "alice")
    r = msgspec.structs.replace(
        template("retraction"), retracts=orig.id.hex(), kind="withdraw", replacement=None
    )
    retraction = sealed(ids, "alice", "retraction", encode_body(r))
    assert deliver(rx, retraction, orig) == [("accepted", None), ("accepted", None)]
    [stored] = store.inbox_get(orig.id)
    assert stored.row.withdrawn_by == retraction.id


def test_regression_retraction_by_another_sender_withdraws_nothing(net: Any) -> None:
    ids, store, rx = net
    orig = sealed(ids, "alice")
    r = msgspec.structs.replace(
        template("retraction"), retracts=orig.id.hex(), kind="withdraw", replacement=None
    )
    for env in (sealed(ids, "mallory", "retraction", encode_body(r)), orig):
        deliver(rx, env)
    [stored] = store.inbox_get(orig.id)
    assert stored.row.withdrawn_by is None


def test_regression_message_opened_offline_then_delivered_is_a_replay_not_a_500(net: Any) -> None:
    """An id already accepted from a sealed file (borderlink open) arrives over the network in a
    batch with another valid message: that one is a replay, the other is still stored."""
    ids, store, rx = net
    offline = sealed(ids, "alice")
    with store.unit(time.time()) as u:
        u.mark_seen(ids["alice"].node_id, offline.id, offline.expires)
    other = sealed(ids, "alice")
    assert deliver(rx, offline, other) == [("rejected", "replay"), ("accepted", None)]
    assert store.inbox_stats().total == 1


def test_regression_anonymous_junk_is_sampled_in_the_audit_log(net: Any) -> None:
    """256 junk envelopes in one request must not add 256 permanent audit entries."""
    _ids, store, rx = net
    before = store.audit_state().size
    asyncio.run(rx.receive([b"junk"] * 256, source="203.0.113.9", peer=_ids["alice"].node_id))
    added = store.audit_state().size - before
    assert added == 9  # the 1st, 2nd, 4th, ..., 256th rejection, each with its running count


def test_regression_reposted_signed_envelopes_are_sampled_too(net: Any) -> None:
    """A replay proves who wrote a message, not who re-posts it: 256 copies of an envelope
    already opened offline must not add 256 audit entries."""
    ids, store, rx = net
    offline = sealed(ids, "alice")
    with store.unit(time.time()) as u:
        u.mark_seen(ids["alice"].node_id, offline.id, offline.expires)
    before = store.audit_state().size
    copy = offline.for_recipient(ids["bob"].node_id).encode()
    asyncio.run(rx.receive([copy] * 256, source="203.0.113.9", peer=ids["alice"].node_id))
    assert store.audit_state().size - before == 9


def test_regression_database_of_an_older_schema_is_refused(tmp_path: Path) -> None:
    import sqlite3

    from protocol.errors import NodeError

    path = tmp_path / "node.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=1")
    with pytest.raises(NodeError, match="schema version 1; this borderlink needs 2"):
        open_store(path)
