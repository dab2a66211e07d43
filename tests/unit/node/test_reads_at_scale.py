"""Operator reads that do not grow with history (issue 12), on a real database of 10,000 messages
and audit entries written through the store: every query a listing, status or the audit log runs
is answered through an index (EXPLAIN QUERY PLAN, and dropping an index is caught); keyset pages
give every row once while rows arrive between them; the counters status reads equal a count of
the rows after many writes, and a database without them gains them when opened; the reader
connection reads committed state while the writer holds a unit open."""

from __future__ import annotations

import random
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.history import START, fill, message_id, peers, queued, received
from node.audit_ops import log_entries
from node.status import snapshot_of
from node.storage import InboxKey, OutboxKey, Reader, Store
from node.storage.rows import InboxFilter
from node.storage.sqlite import SqliteReader, open_reader, open_store
from protocol.audit import decode_entry

ROWS = 10_000
BIG = ("inbox", "outbox", "messages", "audit")  # tables that grow with the history
ALIASES = {"o": "outbox", "m": "messages"}
GROWING = re.compile(r"\b(" + "|".join(BIG) + r")\b")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("history") / "node.db"
    store = open_store(path)
    fill(store, ROWS)
    store.close()
    yield path


def operator_reads(reader: Reader) -> None:
    """What ``inbox``, ``outbox``, ``status`` and ``audit log`` ask of storage, pages included."""
    first = reader.inbox_rows(limit=51)
    key = InboxKey(first[-1].priority, first[-1].received_at, first[-1].sender, first[-1].id)
    reader.inbox_rows(limit=51, after=key)
    reader.inbox_rows(unread=True, limit=51, after=key)
    sender = first[0].sender
    for only in (
        InboxFilter(sender=sender),
        InboxFilter(types=("alert",)),
        InboxFilter(types=("alert", "notice")),
        InboxFilter(priorities=("flash", "urgent")),
        InboxFilter(types=("notice",), sender=sender),
    ):
        reader.inbox_rows(limit=51, only=only)
        reader.inbox_rows(limit=51, only=only, after=key)
    out = reader.outbox_rows(limit=51)
    reader.outbox_rows(limit=51, after=OutboxKey(out[-1].queued_at, out[-1].id, out[-1].peer))
    reader.outbox_rows(out[0].id)
    snapshot_of(reader)
    for kind, msg in ((None, None), ("message.received", None), ("message.", None)):
        log_entries(reader, since_ms=None, kind=kind, message_id=msg, start=100, limit=51)
    log_entries(reader, since_ms=None, kind=None, message_id=message_id("in", 7).hex(), limit=5)


def traced(path: Path, reads: Callable[[Reader], None]) -> list[str]:
    reader = open_reader(path)
    assert isinstance(reader, SqliteReader)
    seen: list[str] = []
    reader._db.set_trace_callback(seen.append)  # the statements as run, parameters bound
    reads(reader)
    reader.close()
    return [q for q in dict.fromkeys(seen) if q.lstrip().upper().startswith("SELECT")]


def bad_plans(db: sqlite3.Connection, queries: list[str]) -> list[tuple[str, list[str]]]:
    """The queries whose plan reads a growing table through no index that fits, or sorts."""
    bad = []
    for q in queries:
        try:
            plan = [str(r[3]) for r in db.execute("EXPLAIN QUERY PLAN " + q)]
        except sqlite3.OperationalError as exc:  # INDEXED BY an index that is gone
            bad.append((q, [str(exc)]))
            continue
        grows = GROWING.search(q) is not None
        for step in plan:
            scan = re.match(r"SCAN (\w+)", step)
            table = ALIASES.get(scan[1], scan[1]) if scan else None
            # Walking a whole index is a page's cost only when nothing is filtered (the first
            # page of a listing, LIMIT ends it) or the index holds the few rows wanted (partial).
            walk = scan is not None and " WHERE " in q and "outbox_pending" not in step
            whole = table in BIG and ("INDEX" not in step or walk)
            # The audit log by its primary key, filtering each entry's JSON: a scan of the log.
            whole = whole or ("json_extract" in q and "INTEGER PRIMARY KEY" in step)
            # A sort of one message's own recipients by peer is bounded by the page; a sort of
            # the entries --since matches alone is allowed (they come from audit_time).
            sort = grows and "TEMP B-TREE" in step and "RIGHT PART" not in step
            sort = sort and "audit_time" not in q
            if whole or sort:
                bad.append((q, plan))
                break
    return bad


def test_every_operator_query_uses_an_index_and_sorts_nothing(history: Path) -> None:
    queries = traced(history, operator_reads)
    assert len(queries) > 25
    with sqlite3.connect(history) as db:
        assert bad_plans(db, queries) == []


@pytest.mark.parametrize(
    "index",
    [
        "inbox_listing",
        "inbox_by_sender",
        "inbox_by_type",
        "audit_kind",
        "audit_message",
        "outbox_pending",
        "messages_age",
    ],
)
def test_dropping_an_index_is_caught(history: Path, index: str) -> None:
    queries = traced(history, operator_reads)
    db = sqlite3.connect(history, isolation_level=None)
    db.execute("BEGIN")
    try:
        db.execute(f"DROP INDEX {index}")
        assert bad_plans(db, queries) != []
    finally:
        db.execute("ROLLBACK")
        db.close()


def test_unread_pages_read_only_unread_rows(history: Path) -> None:
    """Without inbox_unread a page of unread messages filters inbox_listing: cheap here, where
    most rows are unread, a scan of the history on a node that has read nearly all of them."""

    def reads(reader: Reader) -> None:
        reader.inbox_rows(unread=True, limit=51)
        reader.inbox_rows(unread=True, limit=51, after=InboxKey("urgent", START, b"", b""))

    with sqlite3.connect(history) as db:
        for query in traced(history, reads):
            plan = [str(r[3]) for r in db.execute("EXPLAIN QUERY PLAN " + query)]
            assert plan[0].split(" (")[0].endswith("USING INDEX inbox_unread"), plan


def test_audit_since_reads_the_matching_entries_through_their_index(history: Path) -> None:
    since = (START + ROWS // 2) * 1000  # fill times each batch of 5,000 at its first row

    def reads(reader: Reader) -> None:
        got = log_entries(reader, since_ms=since, kind=None, message_id=None, limit=50)
        assert [e["index"] for e in got] == list(range(ROWS // 2, ROWS // 2 + 50))

    [query] = traced(history, reads)
    with sqlite3.connect(history) as db:
        plan = [str(r[3]) for r in db.execute("EXPLAIN QUERY PLAN " + query)]
    assert plan[0].startswith("SEARCH audit USING INDEX audit_time")


def test_filtered_listings_match_a_brute_force_filter(history: Path) -> None:
    reader = open_reader(history)
    everything = reader.inbox_rows(limit=ROWS)
    assert len(everything) == ROWS
    sender = peers()[1]
    for only in (
        InboxFilter(types=("alert", "feedback")),
        InboxFilter(types=("notice", "alert"), priorities=("flash",)),
        InboxFilter(sender=sender, types=("alert", "notice")),
    ):
        want = [
            r
            for r in everything
            if (not only.types or r.type in only.types)
            and (only.sender is None or r.sender == only.sender)
            and (not only.priorities or r.priority in only.priorities)
        ]
        assert reader.inbox_rows(limit=300, only=only) == want[:300]
    kinds = [decode_entry(r.entry).kind for r in reader.audit_rows()]
    for kind in ("message.", "message.received", "checkpoint.", "message.queued"):
        got = log_entries(reader, since_ms=None, kind=kind, message_id=None, start=3, limit=40)
        want = [
            i
            for i, k in enumerate(kinds)
            if i >= 3 and (k == kind or (kind.endswith(".") and k.startswith(kind)))
        ]
        assert [e["index"] for e in got] == want[:40]
    reader.close()


def test_keyset_pages_give_every_row_once_while_rows_arrive(tmp_path: Path) -> None:
    store = open_store(tmp_path / "node.db")
    fill(store, 600, audit=0)
    before_in = {r.id for r in store.inbox_rows(limit=1000)}
    before_out = {(r.id, r.peer) for r in store.outbox_rows(limit=1000)}
    seen_in: list[bytes] = []
    seen_out: list[tuple[bytes, bytes]] = []
    in_key: InboxKey | None = None
    out_key: OutboxKey | None = None
    arrived = 600
    senders = peers()
    while True:
        page = store.inbox_rows(limit=37, after=in_key)
        out = store.outbox_rows(limit=37, after=out_key)
        if not page and not out:
            break
        seen_in += [r.id for r in page]
        seen_out += [(r.id, r.peer) for r in out]
        if page:
            in_key = InboxKey(page[-1].priority, page[-1].received_at, page[-1].sender, page[-1].id)
        if out:
            out_key = OutboxKey(out[-1].queued_at, out[-1].id, out[-1].peer)
        with store.unit(START + 10 * arrived) as u:  # newer rows, flash ones among them
            for i in range(arrived, arrived + 5):
                u.insert_inbox(received(i, senders), receipt=b"r")
                u.enqueue(queued(i), senders)
        arrived += 5
    assert len(seen_in) == len(set(seen_in)) and before_in <= set(seen_in)
    assert len(seen_out) == len(set(seen_out)) and before_out <= set(seen_out)
    store.close()


def brute_counts(path: Path) -> tuple[object, ...]:
    with sqlite3.connect(path) as db:
        return (
            sorted(db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status")),
            sorted(
                db.execute(
                    "SELECT peer, COUNT(*) FROM outbox "
                    "WHERE status IN ('queued', 'failed', 'delivering') GROUP BY peer"
                )
            ),
            db.execute(
                "SELECT MIN(m.queued_at) FROM outbox o JOIN messages m ON m.id = o.msg_id "
                "WHERE o.status IN ('queued', 'failed', 'delivering')"
            ).fetchone()[0],
            db.execute("SELECT COUNT(*), COUNT(*) - COUNT(read_at) FROM inbox").fetchone(),
            sorted(
                db.execute(
                    "SELECT sender, COUNT(*), COUNT(*) - COUNT(read_at), SUM(LENGTH(envelope)) "
                    "FROM inbox GROUP BY sender"
                )
            ),
        )


def counted(store: Store) -> tuple[object, ...]:
    out = store.outbox_stats()
    inbox = store.inbox_stats()
    senders = store.inbox_senders()
    for s in senders:
        assert store.inbox_usage(s.sender) == s
    return (
        sorted(out.by_status.items()),
        sorted(out.per_peer.items()),
        out.oldest_undelivered,
        (inbox.total, inbox.unread),
        sorted((s.sender, s.messages, s.unread, s.bytes) for s in senders),
    )


def churn(store: Store, rng: random.Random, rounds: int, first: int = 0) -> None:
    """Every write that changes what status counts, in random order."""
    senders = peers()
    n = first
    for r in range(rounds):
        with store.unit(START + r) as u:
            for _ in range(20):
                n += 1
                item = received(n, senders)
                u.insert_inbox(item, receipt=b"r")
                if rng.random() < 0.4:
                    u.mark_read(item.sender, item.id)
                if rng.random() < 0.2:
                    u.mark_acked(item.sender, item.id, "noted")
                msg = queued(n)
                to = rng.sample(senders, rng.randint(1, 3))
                u.enqueue(msg, to)
                peer = to[0]
                match rng.randrange(6):
                    case 0:
                        u.mark_delivered(peer, [(msg.id, b"r")])
                    case 1:
                        u.mark_failed(peer, [(msg.id, "down", START + r + 30)])
                    case 2:
                        u.mark_expired(peer, [msg.id])
                    case 3:
                        u.mark_rejected(peer, msg.id, "no")
                        u.requeue(msg.id, [peer])
                    case 4:
                        u.hold_outbox(peer, "blocked")
                    case _:
                        u.release_outbox(peer)


def test_status_counts_equal_a_count_of_the_rows_after_many_writes(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    store = open_store(path)
    churn(store, random.Random(12), 60)
    with sqlite3.connect(path) as db:  # an older version's in-flight rows, then a restart
        db.execute("UPDATE outbox SET status = 'delivering' WHERE rowid % 7 = 0")
    assert counted(store) == brute_counts(path)
    with store.unit(START + 99) as u:
        u.resume_inflight()
    assert counted(store) == brute_counts(path)
    store.close()


def test_a_database_of_an_earlier_release_gains_indexes_and_counters(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    store = open_store(path)
    churn(store, random.Random(5), 20)
    store.close()
    with sqlite3.connect(path) as db:  # as the release before issue 12 left it
        for name, kind in db.execute(
            "SELECT name, type FROM sqlite_master WHERE name IN ('outbox_counts', "
            "'inbox_counts', 'inbox_by_sender', 'inbox_by_type', 'audit_kind', "
            "'audit_message', 'audit_time', 'audit_verified', 'messages_age') OR type = 'trigger'"
        ).fetchall():
            db.execute(f"DROP {kind.upper()} IF EXISTS {name}")
    store = open_store(path)
    assert counted(store) == brute_counts(path)
    churn(store, random.Random(6), 10, first=10_000)  # the triggers count from now on
    assert counted(store) == brute_counts(path)
    with sqlite3.connect(path) as db:
        names = {n for (n,) in db.execute("SELECT name FROM sqlite_master")}
    assert {
        "inbox_by_sender",
        "inbox_by_type",
        "audit_kind",
        "audit_verified",
        "messages_age",
    } <= names
    store.close()


def test_the_reader_reads_committed_state_while_the_writer_holds_a_unit(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    store = open_store(path)
    reader = open_reader(path)
    fill(store, 10, audit=3)
    senders = peers()
    with store.unit(START + 100) as u:
        u.insert_inbox(received(500, senders), receipt=b"r")
        u.enqueue(queued(500), senders)
        # The writer holds its write lock (BEGIN IMMEDIATE) and has written: the reader, on
        # another connection, is not kept waiting (it would fail "database is locked" after
        # its busy timeout) and sees the last commit.
        assert reader.inbox_stats().total == 10
        assert len(reader.outbox_rows(limit=100)) == 10
        assert reader.audit_state().size == 3
    assert reader.inbox_stats().total == 11
    with reader.snapshot() as snap:  # one state for every read in it, whatever commits
        with store.unit(START + 101) as u:
            u.insert_inbox(received(501, senders), receipt=b"r")
        assert snap.inbox_stats().total == 11
    assert reader.inbox_stats().total == 12
    with pytest.raises(sqlite3.OperationalError):  # read-only: never a second writer
        reader._db.execute("DELETE FROM inbox")
    reader.close()
    store.close()
