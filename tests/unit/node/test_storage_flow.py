"""Flow events in the store (PROTOCOL.md 14.1): written with the change they describe, once per
change, in the unit's own seq order; what units report is kept by (unit, seq), so a replay adds
nothing; a unit's state is replaced only by a newer one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.storage import Accepted, QueuedMessage, Store
from node.storage.flow_rows import FlowRow, FlowUnit
from node.storage.sqlite import open_store

ME, PEER, OTHER = b"m" * 32, b"p" * 32, b"q" * 32
NOW = 1_790_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "n.db")
    with s.unit(NOW) as u:
        u.set_flow_self(ME)
    yield s
    s.close()


def _queue(store: Store, msg_id: bytes, peers: list[bytes], *, tlp: str = "AMBER") -> None:
    with store.unit(NOW) as u:
        u.enqueue(
            QueuedMessage(
                id=msg_id,
                type="seizure-alert",
                created=int(NOW),
                expires=int(NOW) + 3600,
                content_hash=b"h" * 32,
                envelope=b"e" * 5000,
                priority="flash",
                tlp=tlp,
            ),
            peers,
        )


def _events(store: Store) -> list[tuple[str, bytes | None]]:
    return [(r.event, r.peer) for r in store.flow_own_after(0, 100)]


def test_queue_deliver_twice_records_one_delivery_with_its_latency(store: Store) -> None:
    _queue(store, b"a" * 16, [PEER, OTHER])
    for _ in range(2):  # a receipt for a redelivery marks it again
        with store.unit(NOW + 2.5) as u:
            u.mark_delivered(PEER, [(b"a" * 16, b"receipt")])
    rows = store.flow_own_after(0, 100)
    assert [(r.event, r.seq) for r in rows] == [("queued", 1), ("delivered", 2)]
    queued, delivered = rows
    assert queued.recipients == [PEER, OTHER] and queued.size == "medium"
    assert (delivered.peer, delivered.latency, delivered.priority, delivered.tlp) == (
        PEER,
        2.5,
        "flash",
        "AMBER",
    )


def test_a_failure_is_recorded_when_it_starts_or_its_reason_changes(store: Store) -> None:
    _queue(store, b"a" * 16, [PEER])
    for at, why in ((1, "connection refused"), (2, "connection refused"), (3, "timeout")):
        with store.unit(NOW + at) as u:
            u.mark_failed(PEER, [(b"a" * 16, why, NOW + at + 10)])
    failed = [r for r in store.flow_own_after(0, 100) if r.event == "failed"]
    assert [(r.at, r.reason) for r in failed] == [
        (NOW + 1, "connection refused"),
        (NOW + 3, "timeout"),
    ]
    [link] = store.flow_pending_links()
    assert (link.peer, link.depth, link.failing, link.failing_since, link.last_error) == (
        PEER,
        1,
        1,
        NOW + 1,
        "timeout",
    )
    with store.unit(NOW + 5) as u:
        u.mark_expired(PEER, [b"a" * 16])
        u.mark_expired(PEER, [b"a" * 16])
    assert [e for e, _ in _events(store)] == ["queued", "failed", "failed", "expired"]
    assert store.flow_pending_links() == []


def test_received_and_acknowledged_carry_the_messages_metadata(store: Store) -> None:
    item = Accepted(
        id=b"r" * 16,
        sender=PEER,
        type="risk-profile",
        created=int(NOW) - 3,
        expires=int(NOW) + 60,
        content_hash=b"h" * 32,
        envelope=b"x" * 100,
        priority="urgent",
        tlp="GREEN",
    )
    with store.unit(NOW) as u:
        u.insert_inbox(item, b"receipt")
    with store.unit(NOW + 9) as u:
        u.mark_acked(PEER, b"r" * 16, "controlled")
    received, acked = store.flow_own_after(0, 100)
    assert (received.event, received.peer, received.latency, received.tlp) == (
        "received",
        PEER,
        3.0,
        "GREEN",
    )
    assert (acked.event, acked.type, acked.priority, acked.tlp, acked.action) == (
        "acknowledged",
        "risk-profile",
        "urgent",
        "GREEN",
        "controlled",
    )


def test_events_written_before_the_node_was_named_take_its_name(tmp_path: Path) -> None:
    s = open_store(tmp_path / "early.db")
    try:
        _queue(s, b"a" * 16, [PEER])  # the CLI queues while the node never ran
        assert s.flow_own_after(0, 10)[0].unit == b""
        with s.unit(NOW) as u:
            u.set_flow_self(ME)
        assert [r.unit for r in s.flow_own_after(0, 10)] == [ME]
        _queue(s, b"b" * 16, [PEER])
        assert [r.seq for r in s.flow_own_after(0, 10)] == [1, 2]
    finally:
        s.close()


def _row(seq: int, event: str = "delivered") -> FlowRow:
    return FlowRow(
        rid=0,
        unit=OTHER,
        seq=seq,
        at=NOW + seq,
        event=event,
        msg_id=bytes([seq]) * 16,
        type="seizure-alert",
        priority="routine",
        tlp="GREEN",
        peer=PEER,
        recipients=None,
        size="small",
        latency=0.01,
        reason=None,
        action=None,
        withheld=[],
    )


def _unit(time: float, through: int) -> FlowUnit:
    return FlowUnit(
        unit=OTHER,
        state=b"\x80",
        report_time=time,
        received_at=time,
        through=through,
        policy=b"\x80",
    )


def test_a_replayed_report_stores_nothing_and_an_older_state_does_not_win(store: Store) -> None:
    with store.unit(NOW) as u:
        assert u.ingest_flow(OTHER, [_row(1), _row(2)], _unit(NOW + 10, 2)) == 2
    with store.unit(NOW) as u:
        assert u.ingest_flow(OTHER, [_row(1), _row(2)], _unit(NOW + 5, 2)) == 0
    [held] = store.flow_units()
    assert held.report_time == NOW + 10
    assert [r.seq for r in store.flow_after(0, 10) if r.unit == OTHER] == [1, 2]
    assert store.flow_own_after(0, 10) == []  # a unit's events are not this node's own


def test_a_delivery_its_recipient_never_reported_is_a_disagreement(store: Store) -> None:
    """Unit Z reports two deliveries to this node; this node stored only the second: the first
    stands out, once the grace for the recipient's own account has passed."""
    z = b"z" * 32
    with store.unit(NOW) as u:
        u.ingest_flow(
            z,
            [_to_me(1), _to_me(2)],
            FlowUnit(
                unit=z, state=b"\x80", report_time=NOW, received_at=NOW, through=2, policy=b"\x80"
            ),
        )
        u.insert_inbox(
            Accepted(
                id=bytes([2]) * 16,
                sender=z,
                type="seizure-alert",
                created=int(NOW),
                expires=int(NOW) + 60,
                content_hash=b"h" * 32,
                envelope=b"x",
            ),
            b"receipt",
        )
    found = store.flow_disagreements(0.0, 30.0, NOW + 1000)
    assert [(d.msg_id, d.sender, d.recipient) for d in found] == [(bytes([1]) * 16, z, ME)]
    assert store.flow_disagreements(0.0, 30.0, NOW + 10) == []  # within the grace: not yet


def _to_me(seq: int) -> FlowRow:
    r = _row(seq)
    return FlowRow(
        rid=0,
        unit=b"z" * 32,
        seq=seq,
        at=r.at,
        event="delivered",
        msg_id=r.msg_id,
        type=r.type,
        priority=r.priority,
        tlp=r.tlp,
        peer=ME,
        recipients=None,
        size="small",
        latency=0.01,
        reason=None,
        action=None,
        withheld=[],
    )


def test_the_feed_the_picture_and_the_disagreements_are_narrowed_as_the_view_is(
    store: Store,
) -> None:
    """A dashboard filtered by type, priority or unit counts only that traffic in the feed, the
    who-talks-to-whom picture and the disagreements (they used to ignore the filters)."""
    import msgspec

    from node.storage.flow_rows import FlowFilter

    def delivery(seq: int, type_: str, priority: str, to: bytes) -> FlowRow:
        return msgspec.structs.replace(_row(seq), type=type_, priority=priority, peer=to)

    rows = [
        delivery(1, "seizure-alert", "flash", ME),
        delivery(2, "risk-profile", "routine", ME),
        delivery(3, "risk-profile", "urgent", PEER),
    ]
    with store.unit(NOW) as u:  # OTHER reported them, after its grace: ME received none
        u.ingest_flow(OTHER, rows, _unit(NOW + 100, 3))
    everything = FlowFilter()
    risk = FlowFilter(type="risk-profile")
    flash = FlowFilter(priority="flash")
    to_peer = FlowFilter(units=frozenset({PEER}))
    nobody = FlowFilter(units=frozenset())

    def links(only: FlowFilter) -> set[tuple[bytes, bytes, int]]:
        return {(c.unit, c.peer, c.count) for c in store.flow_links(0.0, only)}

    assert links(everything) == {(OTHER, ME, 2), (OTHER, PEER, 1)}
    assert links(risk) == {(OTHER, ME, 1), (OTHER, PEER, 1)}
    assert links(flash) == {(OTHER, ME, 1)}
    assert links(to_peer) == {(OTHER, PEER, 1)}
    assert links(nobody) == set()

    def feed(only: FlowFilter) -> list[int]:
        return [r.seq for r in store.flow_latest(10, 0.0, only)]

    assert (feed(everything), feed(risk), feed(flash), feed(to_peer)) == (
        [3, 2, 1],
        [3, 2],
        [1],
        [3],
    )

    def mismatches(only: FlowFilter) -> list[bytes]:
        return [d.msg_id for d in store.flow_disagreements(0.0, 30.0, NOW + 1000, only)]

    assert mismatches(everything) == [bytes([2]) * 16, bytes([1]) * 16]  # only ME can disagree
    assert mismatches(risk) == [bytes([2]) * 16]
    assert mismatches(FlowFilter(priority="flash", type="risk-profile")) == []
    assert mismatches(to_peer) == [] and mismatches(FlowFilter(units=frozenset({ME}))) == [
        bytes([2]) * 16,
        bytes([1]) * 16,
    ]


DAY = 86400.0


def test_section_14_4_pruned_events_still_count_and_are_never_stored_again(store: Store) -> None:
    """Retention: events older than the bound go, after their counts went into the rollups
    (the metrics' totals and latency histogram do not drop); a replay of the old report
    stores nothing; this node's own events go only as far as what coordinators were sent."""
    import msgspec

    old, new = NOW - 40 * DAY, NOW
    reported = [msgspec.structs.replace(_row(i), at=old + i) for i in (1, 2, 3)]
    reported += [msgspec.structs.replace(_row(i), at=new + i) for i in (4, 5)]
    with store.unit(new) as u:
        u.ingest_flow(OTHER, reported, _unit(new + 10, 5))
    for i, at in ((1, old), (2, old), (3, new)):  # own: queued + delivered, two old, one new
        msg_id = bytes([i]) * 16
        with store.unit(at) as u:
            u.enqueue(
                QueuedMessage(
                    id=msg_id, type="risk-profile", created=int(at), expires=int(at) + 60,
                    content_hash=b"h" * 32, envelope=b"e", priority="routine", tlp="GREEN",
                ),
                [PEER],
            )  # fmt: skip
        with store.unit(at + 0.02 * i) as u:
            u.mark_delivered(PEER, [(msg_id, b"receipt")])
    totals = {o: sorted(store.flow_totals(o)) for o in (ME, OTHER)}
    histogram = store.flow_latency_histogram(ME)
    assert sum(histogram.counts) == 3 and histogram.counts[2] == 1  # 0.02 s, 0.04, 0.06

    with store.unit(new) as u:  # own seq 1..4 old; coordinators were sent up to seq 3
        assert u.prune_flow(new - 30 * DAY, 3, limit=2) == 2 + 2  # at most 2 per unit
    with store.unit(new) as u:
        assert u.prune_flow(new - 30 * DAY, 3, limit=2) == 1 + 1
    with store.unit(new) as u:
        assert u.prune_flow(new - 30 * DAY, 3, limit=2) == 0
    assert [r.seq for r in store.flow_after(0, 100) if r.unit == OTHER] == [4, 5]
    assert [r.seq for r in store.flow_own_after(0, 100)] == [4, 5, 6]  # 4: old, not yet sent
    assert {o: sorted(store.flow_totals(o)) for o in (ME, OTHER)} == totals
    assert store.flow_latency_histogram(ME) == histogram

    with store.unit(new) as u:  # the old report, replayed
        assert u.ingest_flow(OTHER, reported, _unit(new + 20, 5)) == 0
    assert [r.seq for r in store.flow_after(0, 100) if r.unit == OTHER] == [4, 5]
    with store.unit(new) as u:  # no coordinator to wait for: the rest of the old ones go
        assert u.prune_flow(new - 30 * DAY, None) == 1
    assert [r.seq for r in store.flow_own_after(0, 100)] == [5, 6]
    assert {o: sorted(store.flow_totals(o)) for o in (ME, OTHER)} == totals


def test_section_14_2_hidden_tlps_stay_out_of_the_pending_links(store: Store) -> None:
    _queue(store, b"r" * 16, [PEER], tlp="RED")
    _queue(store, b"a" * 16, [PEER], tlp="AMBER")
    with store.unit(NOW + 1) as u:
        u.mark_failed(PEER, [(b"r" * 16, "refused by p", NOW + 9), (b"a" * 16, "timeout", NOW + 5)])
    [everything] = store.flow_pending_links()
    assert (everything.depth, everything.failing, everything.next_retry) == (2, 2, NOW + 5)
    [shown] = store.flow_pending_links(frozenset({"RED"}))
    assert (shown.depth, shown.failing, shown.last_error) == (1, 1, "timeout")
    assert store.flow_pending_links(frozenset({"RED", "AMBER"})) == []


def test_section_14_4_one_unit_fills_only_its_own_share_of_the_disagreements(
    store: Store,
) -> None:
    """A unit claiming 50 deliveries to this node that never happened (attack review F6) holds
    at most 20 places; another unit's real disagreement, older than all of them, still shows."""
    import msgspec

    from node.storage.flow_sqlite import DISAGREEMENTS_PER_SENDER

    z = b"z" * 32
    honest = msgspec.structs.replace(_to_me(1), unit=z, at=NOW)
    fakes = [msgspec.structs.replace(_to_me(i), unit=OTHER, at=NOW + i) for i in range(2, 52)]
    with store.unit(NOW) as u:
        u.ingest_flow(z, [honest], msgspec.structs.replace(_unit(NOW, 1), unit=z))
        u.ingest_flow(OTHER, fakes, _unit(NOW + 60, 51))
    found = store.flow_disagreements(0.0, 30.0, NOW + 1000)
    by_sender = Counter(d.sender for d in found)
    assert by_sender == {OTHER: DISAGREEMENTS_PER_SENDER, z: 1}
    assert [d.delivered_at for d in found if d.sender == OTHER] == [
        NOW + i for i in range(51, 51 - DISAGREEMENTS_PER_SENDER, -1)
    ]  # its newest


def test_one_units_flood_does_not_blind_the_counts_of_another(store: Store) -> None:
    """52,000 events dated ahead took the whole 50,000-row window the rows were counted from, so
    every other unit read 0 (attack reviews F4, N3). Counts are now per unit in SQL, and each
    unit's latency sample holds only its own newest deliveries."""
    import msgspec

    z = b"z" * 32
    flood = [
        msgspec.structs.replace(
            _row(1), seq=i, msg_id=i.to_bytes(16, "big"), at=NOW + 290, latency=9.0
        )
        for i in range(1, 3001)
    ]
    mine = [msgspec.structs.replace(_row(i), unit=z, at=NOW - 30, latency=0.02) for i in (1, 2)]
    with store.unit(NOW) as u:
        u.ingest_flow(OTHER, flood, _unit(NOW, 3000))
        u.ingest_flow(z, mine, msgspec.structs.replace(_unit(NOW, 2), unit=z))
    counts = {c.unit: c for c in store.flow_counts(NOW - 3600, NOW - 60)}
    assert (counts[z].out_1h, counts[z].out_1m, counts[z].in_1h, counts[z].in_1m) == (2, 2, 0, 0)
    assert counts[OTHER].out_1h == 3000
    sample = store.flow_latency_sample(NOW - 3600, 100)
    assert sample[z] == [0.02, 0.02] and len(sample[OTHER]) == 100


def test_a_unit_cannot_make_this_node_store_more_than_its_quota(store: Store) -> None:
    """One unit stored 248,000 events, 153 MB, in 10 s (second attack review): with a quota,
    only its newest stay; the older still count in the metrics, and a replay stores nothing."""
    import msgspec

    rows = [
        msgspec.structs.replace(_row(1), seq=i, msg_id=i.to_bytes(16, "big"), at=NOW + i)
        for i in range(1, 31)
    ]
    with store.unit(NOW) as u:
        assert u.ingest_flow(OTHER, rows[:20], _unit(NOW, 20), keep=10) == 20
    with store.unit(NOW) as u:
        assert u.ingest_flow(OTHER, rows[20:], _unit(NOW + 1, 30), keep=10) == 10
    assert [r.seq for r in store.flow_after(0, 100) if r.unit == OTHER] == list(range(21, 31))
    assert store.flow_totals(OTHER) == [("delivered", PEER, "seizure-alert", 30)]
    with store.unit(NOW) as u:
        assert u.ingest_flow(OTHER, rows, _unit(NOW + 2, 30), keep=10) == 0
