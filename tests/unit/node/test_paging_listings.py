"""The inbox, outbox and audit listings in pages (node/inbox.py, node/sending.py, node/operations.py)
on a real store: most urgent first, every row reachable through the cursors whatever arrives
meanwhile, cursors opaque but checked. Also ``outbox retry`` as a service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from keys.card import Card
from keys.trust import PeerRecord
from node.auditing import record
from node.inbox import Inbox
from node.operations import LIST_AUDIT, ListAudit, OperationDeps
from node.runtime import run_inline
from node.sending import Sender
from node.storage import Accepted, Store
from node.storage.sqlite import open_store
from protocol.audit import AuditEntry
from protocol.errors import BorderlinkError, PeerRevoked, UnknownPeer, UsageError
from protocol.schemas import encode_body
from protocol.templates import template
from tests.conftest import NOW, fixed_identity
from tests.peering import peer_record

ALICE, BOB, CAROL, MALLORY = (fixed_identity(n) for n in ("alice", "bob", "carol", "mallory"))
ALERT = encode_body(template("seizure-alert"))


class Woken:
    def __init__(self) -> None:
        self.peers: list[str] = []

    async def ensure(self, rec: PeerRecord, *, now: bool = False) -> None:
        self.peers.append(rec.name)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "alice.db")
    with s.unit(NOW) as u:
        u.put_peer(peer_record(BOB, "bob"))
        u.put_peer(peer_record(MALLORY, "mallory"))
        u.put_peer(peer_record(CAROL, "carol", status="revoked"))
    yield s
    s.close()


def stored(store: Store, n: int, sender: bytes, at: float, priority: str = "routine") -> bytes:
    """A message as the receiver stores it (the listing never opens it)."""
    msg_id = n.to_bytes(16, "big")
    item = Accepted(
        id=msg_id,
        sender=sender,
        type="seizure-alert",
        created=int(at),
        expires=int(at) + 600,
        content_hash=bytes(32),
        envelope=b"sealed",
        priority=priority,
    )
    with store.unit(at) as u:
        u.mark_seen(sender, msg_id, item.expires)
        u.insert_inbox(item, b"receipt")
    return msg_id


def sender(store: Store, woken: Woken | None = None, at: float = NOW) -> Sender:
    return Sender(ALICE, store, run_inline, run_inline, woken or Woken(), lambda: at)


async def every_page(inbox: Inbox, *, unread: bool, limit: int) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = await inbox.listing(unread=unread, limit=limit, after=after)
        pages.append([v.id for v in page.items])
        if page.next is None:
            return pages
        after = page.next


async def test_regression_600_small_messages_pushed_a_real_alert_out_of_the_unread_listing(
    store: Store,
) -> None:
    """A hostile peer's 600 routine messages arrive after Bob's flash alert: the alert heads the
    first page, and the cursors reach every one of the 601 unread messages."""
    alert = stored(store, 10_000, BOB.node_id, NOW - 60, "flash").hex()
    flood = {stored(store, i, MALLORY.node_id, NOW + i / 100).hex() for i in range(600)}
    inbox = Inbox(sender(store))
    first = await inbox.listing(unread=True)
    assert len(first.items) == 50 and first.items[0].id == alert
    assert first.items[0].priority == "flash"
    pages = await every_page(inbox, unread=True, limit=50)
    seen = [i for page in pages for i in page]
    assert len(seen) == len(set(seen)) == 601
    assert set(seen) == flood | {alert}
    assert store.inbox_stats().unread == 601


async def test_the_listing_is_most_urgent_first_then_newest(store: Store) -> None:
    rows = [
        ("routine", NOW + 3),
        ("urgent", NOW + 1),
        ("flash", NOW),
        ("routine", NOW + 5),
        ("urgent", NOW + 4),
    ]
    ids = [stored(store, i, BOB.node_id, at, p).hex() for i, (p, at) in enumerate(rows)]
    page = await Inbox(sender(store)).listing(unread=False, limit=10)
    assert [v.id for v in page.items] == [ids[2], ids[4], ids[1], ids[3], ids[0]]
    assert page.next is None


async def test_a_page_starts_after_its_cursor_whatever_arrives_meanwhile(store: Store) -> None:
    old = [stored(store, i, BOB.node_id, NOW + i).hex() for i in range(10)]
    inbox = Inbox(sender(store))
    first = await inbox.listing(unread=False, limit=4)
    for i in range(10, 15):  # newer messages, and one flash, arrive between the two pages
        stored(store, i, MALLORY.node_id, NOW + 100 + i, "flash" if i == 12 else "routine")
    rest = await every_page_from(inbox, first.next)
    assert [v.id for v in first.items] + rest == old[::-1]  # none repeated, none skipped


async def every_page_from(inbox: Inbox, after: str | None) -> list[str]:
    out: list[str] = []
    while after is not None:
        page = await inbox.listing(unread=False, limit=4, after=after)
        out += [v.id for v in page.items]
        after = page.next
    return out


async def test_reading_between_pages_hides_no_other_unread_message(store: Store) -> None:
    ids = [stored(store, i, BOB.node_id, NOW + i).hex() for i in range(6)]
    inbox = Inbox(sender(store))
    first = await inbox.listing(unread=True, limit=3)
    with store.unit(NOW + 10) as u:
        u.mark_read(BOB.node_id, bytes.fromhex(first.items[0].id))
    second = await inbox.listing(unread=True, limit=3, after=first.next)
    assert [v.id for v in first.items + second.items] == ids[::-1]
    assert second.next is None


@pytest.mark.parametrize("cursor", ["", "nonsense", "i!!!", "iAAAA", "o" + "A" * 30])
async def test_a_cursor_not_made_by_the_listing_is_a_usage_error(store: Store, cursor: str) -> None:
    stored(store, 1, BOB.node_id, NOW)
    with pytest.raises(UsageError, match="--after takes the cursor"):
        await Inbox(sender(store)).listing(unread=False, after=cursor)


@pytest.mark.parametrize("limit", [0, -1, 1001])
async def test_a_page_holds_1_to_1000_rows(store: Store, limit: int) -> None:
    with pytest.raises(UsageError, match="--limit takes 1 to 1000"):
        await Inbox(sender(store)).listing(unread=False, limit=limit)


async def test_the_outbox_pages_through_every_entry_newest_message_first(store: Store) -> None:
    ids = [
        await sender(store, at=NOW + i).send(["bob", "mallory"], "seizure-alert", ALERT, 600)
        for i in range(3)
    ]
    send = sender(store)
    seen, after = [], None
    while True:
        page = await send.outbox(limit=1, after=after)
        seen += [(v.id, v.peer) for v in page.items]
        if page.next is None:
            break
        after = page.next
    assert seen == [(i.hex(), p) for i in ids[::-1] for p in ("bob", "mallory")]
    stored(store, 1, BOB.node_id, NOW)
    stored(store, 2, BOB.node_id, NOW)
    inbox_cursor = (await Inbox(send).listing(unread=False, limit=1)).next
    assert inbox_cursor is not None
    with pytest.raises(UsageError):  # an inbox cursor is not an outbox cursor
        await send.outbox(after=inbox_cursor)


async def test_the_audit_log_pages_oldest_first_and_filters_across_pages(store: Store) -> None:
    with store.unit(NOW) as u:
        for i in range(30):
            record(u, "message.queued" if i % 3 else "message.shown", message_id=f"{i:032x}")
    deps = OperationDeps(store=store, run_db=run_inline, clock=lambda: NOW, own_card=_no_card)
    seen, after = [], None
    while True:
        page = await LIST_AUDIT.run(deps, ListAudit(kind="message.shown", limit=4, after=after))
        seen += [e["message_id"] for e in page.items]
        if page.next is None:
            break
        after = page.next
    assert seen == [f"{i:032x}" for i in range(0, 30, 3)]
    everything = await LIST_AUDIT.run(deps, ListAudit())
    assert (len(everything.items), everything.next) == (30, None)


def _no_card() -> Card:
    raise AssertionError("listing needs no card")


# outbox retry ------------------------------------------------------------------------------------


def audit(store: Store) -> list[AuditEntry]:
    return [msgspec.json.decode(r.entry, type=AuditEntry) for r in store.audit_rows()]


async def test_a_failed_or_rejected_delivery_is_queued_again_now_audited_and_woken(
    store: Store,
) -> None:
    msg_id = await sender(store).send(["bob", "mallory"], "seizure-alert", ALERT, 600)
    with store.unit(NOW + 1) as u:
        u.mark_rejected(BOB.node_id, msg_id, "bob refused the message (malformed)")
        u.mark_failed(MALLORY.node_id, [(msg_id, "connection refused", NOW + 300)])
    woken = Woken()
    done = await sender(store, woken, NOW + 2).retry(msg_id)
    assert (done.id, done.to) == (msg_id.hex(), ["bob", "mallory"])
    rows = {r.peer: r for r in store.outbox_rows(msg_id)}
    assert {(r.status, r.next_attempt) for r in rows.values()} == {("queued", NOW + 2)}
    assert [r.id for r in store.due(BOB.node_id, NOW + 2, 10)] == [msg_id]
    assert woken.peers == ["bob", "mallory"]
    last = audit(store)[-1]
    assert (last.kind, last.actor, last.message_id) == (
        "message.requeued",
        "operator",
        msg_id.hex(),
    )
    assert (last.outcome, last.detail) == ("failed,rejected", "to bob,mallory")


async def test_retry_to_one_peer_requeues_only_that_delivery(store: Store) -> None:
    msg_id = await sender(store).send(["bob", "mallory"], "seizure-alert", ALERT, 600)
    with store.unit(NOW + 1) as u:
        u.mark_rejected(BOB.node_id, msg_id, "refused")
        u.mark_rejected(MALLORY.node_id, msg_id, "refused")
    assert (await sender(store, at=NOW + 2).retry(msg_id, "mallory")).to == ["mallory"]
    status = {r.peer: r.status for r in store.outbox_rows(msg_id)}
    assert status == {BOB.node_id: "rejected", MALLORY.node_id: "queued"}


async def test_retry_refuses_in_our_words(store: Store) -> None:
    msg_id = await sender(store).send(["bob"], "seizure-alert", ALERT, 600)
    with pytest.raises(BorderlinkError, match="no message 4242") as unknown:
        await sender(store).retry(b"\x42" * 16)
    assert unknown.value.exit_code == 1  # as 'inbox show' says of an unknown id
    with pytest.raises(BorderlinkError, match=r"nothing to retry: .* is queued to bob") as none:
        await sender(store).retry(msg_id)
    assert none.value.exit_code == 1
    with pytest.raises(BorderlinkError, match="was not sent to 'mallory'"):
        await sender(store).retry(msg_id, "mallory")
    with pytest.raises(UnknownPeer):
        await sender(store).retry(msg_id, "dave")
    with pytest.raises(PeerRevoked):
        await sender(store).retry(msg_id, "carol")
    with store.unit(NOW + 1) as u:
        u.mark_failed(BOB.node_id, [(msg_id, "down", NOW + 60)])
    with pytest.raises(BorderlinkError, match="nothing to retry"):  # expired meanwhile
        await sender(store, at=NOW + 601).retry(msg_id)
    assert [e.kind for e in audit(store)] == ["message.queued"]
