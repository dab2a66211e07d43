"""The inbox listing filtered by type, sender and priority, in pages; the TLP kept with each
message (and unknown for messages stored before it was); message ids abbreviated to a unique
prefix (node/inbox.py, node/message_ids.py, node/sending.py) on a real SQLite store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from keys.trust import PeerRecord
from node.inbox import Inbox, Wanted
from node.runtime import run_inline
from node.sending import Sender
from node.storage import Accepted, Store
from node.storage.sqlite import open_store
from protocol.errors import BorderlinkError, UnknownPeer, UsageError
from protocol.schemas import encode_body
from protocol.templates import template
from tests.conftest import NOW, fixed_identity
from tests.peering import peer_record

ALICE, BOB, MALLORY = (fixed_identity(n) for n in ("alice", "bob", "mallory"))
ALERT = encode_body(template("seizure-alert"))


class Woken:
    async def ensure(self, rec: PeerRecord, *, now: bool = False) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "alice.db")
    with s.unit(NOW) as u:
        u.put_peer(peer_record(BOB, "bob"))
        u.put_peer(peer_record(MALLORY, "mallory"))
    yield s
    s.close()


def stored(
    store: Store,
    msg_id: bytes,
    sender: bytes,
    at: float,
    *,
    priority: str = "routine",
    type_name: str = "seizure-alert",
    tlp: str | None = "AMBER",
) -> str:
    item = Accepted(
        id=msg_id,
        sender=sender,
        type=type_name,
        created=int(at),
        expires=int(at) + 600,
        content_hash=bytes(32),
        envelope=b"sealed",
        priority=priority,
        tlp=tlp,
    )
    with store.unit(at) as u:
        u.mark_seen(sender, msg_id, item.expires)
        u.insert_inbox(item, b"receipt")
    return msg_id.hex()


def inbox(store: Store) -> Inbox:
    return Inbox(Sender(ALICE, store, run_inline, run_inline, Woken(), lambda: NOW))


async def every_id(box: Inbox, wanted: Wanted, limit: int) -> list[str]:
    out, after = [], None
    while True:
        page = await box.listing(unread=False, limit=limit, after=after, wanted=wanted)
        out += [v.id for v in page.items]
        if page.next is None:
            return out
        after = page.next


async def test_filters_combine_and_their_pages_reach_every_match_once(store: Store) -> None:
    kinds = ("seizure-alert", "feedback", "risk-profile")
    rows = {}
    for i in range(30):
        who = (BOB, MALLORY)[i % 2]
        priority = ("routine", "urgent", "flash")[i % 3]
        msg_id = stored(
            store, i.to_bytes(16, "big"), who.node_id, NOW + i,
            priority=priority, type_name=kinds[i % 5 % 3],
        )  # fmt: skip
        rows[msg_id] = (who, priority, kinds[i % 5 % 3], NOW + i)
    box = inbox(store)
    wanted = Wanted(
        types=("seizure-alert", "feedback"), sender="bob", priorities=("flash", "routine")
    )
    got = await every_id(box, wanted, limit=2)
    expected = sorted(
        (
            m
            for m, (who, p, t, _) in rows.items()
            if who is BOB and p in ("flash", "routine") and t in ("seizure-alert", "feedback")
        ),
        key=lambda m: (rows[m][1] != "flash", -rows[m][3]),
    )
    assert len(expected) > 2 and got == expected
    only_flash = await every_id(box, Wanted(priorities=("flash",)), limit=3)
    assert only_flash == sorted(
        (m for m, r in rows.items() if r[1] == "flash"), key=lambda m: -rows[m][3]
    )
    assert await every_id(box, Wanted(types=("retraction",)), limit=5) == []


async def test_a_filter_naming_nothing_real_is_refused(store: Store) -> None:
    box = inbox(store)
    with pytest.raises(UnknownPeer, match="no peer named 'dave'"):
        await box.listing(unread=False, wanted=Wanted(sender="dave"))
    with pytest.raises(UsageError, match="priority must be one of flash, urgent, routine"):
        await box.listing(unread=False, wanted=Wanted(priorities=("high",)))
    with pytest.raises(UsageError, match="type must be one of seizure-alert"):
        await box.listing(unread=False, wanted=Wanted(types=("memo",)))


async def test_the_tlp_is_kept_and_unknown_for_messages_stored_before_it_was(
    store: Store, tmp_path: Path
) -> None:
    amber = stored(store, b"\x01" * 16, BOB.node_id, NOW)
    [view] = (await inbox(store).listing(unread=False)).items
    assert (view.id, view.tlp) == (amber, "AMBER")
    store.close()
    # The database as an earlier release left it: no tlp column.
    db = sqlite3.connect(tmp_path / "alice.db")
    db.execute("ALTER TABLE inbox DROP COLUMN tlp")
    db.commit()
    db.close()
    reopened = open_store(tmp_path / "alice.db")
    try:
        [old] = (await inbox(reopened).listing(unread=False)).items
        assert (old.id, old.tlp) == (amber, None)
        red = stored(reopened, b"\x02" * 16, BOB.node_id, NOW + 1, tlp="RED")
        tlps = {v.id: v.tlp for v in (await inbox(reopened).listing(unread=False)).items}
        assert tlps == {amber: None, red: "RED"}
    finally:
        reopened.close()


async def test_an_id_may_be_abbreviated_to_a_unique_prefix(store: Store) -> None:
    one = stored(store, bytes.fromhex("abcd1111" + "0" * 24), BOB.node_id, NOW)
    stored(store, bytes.fromhex("abcd2222" + "0" * 24), BOB.node_id, NOW)
    box = inbox(store)
    assert (await box.resolve("ABCD1")).hex() == one  # case does not matter
    assert (await box.resolve(one)).hex() == one
    full = "42" * 16  # a full id is taken as it is: the caller says whether it exists
    assert (await box.resolve(full)).hex() == full
    with pytest.raises(UsageError, match="ambiguous: 2 messages in the inbox start with it"):
        await box.resolve("abcd")
    for bad, why in (("abc", "too short"), ("abcz", "not a message id"), ("", "not a message")):
        with pytest.raises(UsageError, match=why) as caught:
            await box.resolve(bad)
        assert caught.value.exit_code == 2
    with pytest.raises(BorderlinkError, match="no message in the inbox has an id starting") as no:
        await box.resolve("ffff")
    assert no.value.exit_code == 1


async def test_an_outbox_id_is_one_of_this_nodes_own_messages(store: Store) -> None:
    sender = Sender(ALICE, store, run_inline, run_inline, Woken(), lambda: NOW)
    msg_id = await sender.send(["bob"], "seizure-alert", ALERT, 600)
    received = stored(store, msg_id[:2] + b"\x00" * 14, BOB.node_id, NOW)
    assert await sender.resolve(msg_id.hex()[:6]) == msg_id  # received messages do not count
    assert (await inbox(store).resolve(received[:6])).hex() == received
    with pytest.raises(BorderlinkError, match="no message in the outbox"):
        await sender.resolve("0000" if not msg_id.hex().startswith("0000") else "ffff")
