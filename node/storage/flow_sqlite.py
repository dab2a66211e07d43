"""The flow tables in SQLite (PROTOCOL.md 14): this node's own events, written in the same
transaction as the outbox or inbox change they describe (so an event is never lost nor invented
by a crash), what its units reported, and the reads the dashboard, monitor and metrics make.

Each event is written before the row it describes changes, from that row (``INSERT ... SELECT``),
and only when the change is one: a delivery marked twice, or a retry failing for the same reason
as the last, records nothing. Called by sqlite.py only; the only other module that speaks SQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from node.storage.flow_rows import (
    EVERYTHING,
    LATENCY_BUCKETS,
    Disagreement,
    FlowCursor,
    FlowFilter,
    FlowRow,
    FlowUnit,
    LatencyHistogram,
    LinkCount,
    PendingLink,
    UnitCounts,
)
from protocol.flow import size_bucket

_SELF = "COALESCE((SELECT id FROM flow_self), X'')"
_NEXT = f"(SELECT COALESCE(MAX(seq), 0) + 1 FROM flow_events WHERE unit = {_SELF})"


def _bucket(column: str) -> str:
    return (
        f"CASE WHEN length({column}) <= 4096 THEN 'small' "
        f"WHEN length({column}) <= 65536 THEN 'medium' ELSE 'large' END"
    )


_COLUMNS = (
    "rid, unit, seq, at, event, msg_id, type, priority, tlp, peer, recipients, size, latency, "
    "reason, action, withheld"
)
_OUT = (
    "INSERT INTO flow_events (unit, seq, at, event, msg_id, type, priority, tlp, peer, size, "
    f"latency, reason) SELECT {_SELF}, {_NEXT}, :now, :event, m.id, m.type, "
    f"COALESCE(m.priority, 'routine'), m.tlp, o.peer, {_bucket('m.envelope')}, :latency, :reason "
    "FROM outbox o JOIN messages m ON m.id = o.msg_id WHERE o.msg_id = :id AND o.peer = :peer "
)


def set_self(db: sqlite3.Connection, node_id: bytes) -> None:
    """Name this node (the unit of its own events); events written before it was named (the
    CLI queues while the node is down, before its first start) take the name."""
    db.execute("INSERT OR REPLACE INTO flow_self (k, id) VALUES (0, ?)", (node_id,))
    db.execute("UPDATE flow_events SET unit = ? WHERE unit = X''", (node_id,))


def queued(
    db: sqlite3.Connection,
    now: float,
    msg_id: bytes,
    type_name: str,
    priority: str,
    tlp: str | None,
    envelope_size: int,
    peers: Sequence[bytes],
) -> None:
    size = size_bucket(envelope_size)
    db.execute(
        "INSERT INTO flow_events (unit, seq, at, event, msg_id, type, priority, tlp, recipients, "
        f"size) VALUES ({_SELF}, {_NEXT}, ?, 'queued', ?, ?, ?, ?, ?, ?)",
        (now, msg_id, type_name, priority, tlp, b"".join(peers), size),
    )


def delivered(db: sqlite3.Connection, now: float, peer: bytes, ids: Iterable[bytes]) -> None:
    db.executemany(
        _OUT.replace(":latency", "MAX(0, :now - m.queued_at)") + "AND o.status <> 'delivered'",
        [{"now": now, "event": "delivered", "id": i, "peer": peer, "reason": None} for i in ids],
    )


def failed(
    db: sqlite3.Connection, now: float, peer: bytes, failures: Iterable[tuple[bytes, str]]
) -> None:
    """A failure only when the entry was not failing already for the same reason."""
    db.executemany(
        _OUT.replace(":latency", "NULL")
        + "AND (o.status <> 'failed' OR o.last_error IS NOT :reason)",
        [
            {"now": now, "event": "failed", "id": i, "peer": peer, "reason": why}
            for i, why in failures
        ],
    )


def ended(
    db: sqlite3.Connection, now: float, event: str, peer: bytes, ids: Iterable[bytes], why: str
) -> None:
    """Expired or rejected: the entry will not be tried again."""
    db.executemany(
        _OUT.replace(":latency", "NULL") + "AND o.status NOT IN ('delivered', 'expired')",
        [{"now": now, "event": event, "id": i, "peer": peer, "reason": why or None} for i in ids],
    )


def received(
    db: sqlite3.Connection,
    now: float,
    msg_id: bytes,
    sender: bytes,
    type_name: str,
    priority: str,
    tlp: str | None,
    created: int,
    envelope_size: int,
) -> None:
    size = size_bucket(envelope_size)
    db.execute(
        "INSERT INTO flow_events (unit, seq, at, event, msg_id, type, priority, tlp, peer, size, "
        f"latency) VALUES ({_SELF}, {_NEXT}, ?, 'received', ?, ?, ?, ?, ?, ?, ?)",
        (now, msg_id, type_name, priority, tlp, sender, size, max(0.0, now - created)),
    )


def acknowledged(
    db: sqlite3.Connection, now: float, sender: bytes, msg_id: bytes, action: str
) -> None:
    """Its type, priority and TLP as the message's 'received' event recorded them."""
    db.execute(
        "INSERT INTO flow_events (unit, seq, at, event, msg_id, type, priority, tlp, peer, action)"
        f" SELECT {_SELF}, {_NEXT}, :now, 'acknowledged', :id, r.type, r.priority, r.tlp, :s, :a "
        "FROM (SELECT :id AS id) LEFT JOIN (SELECT type, priority, tlp FROM flow_events WHERE "
        f"msg_id = :id AND peer = :s AND event = 'received' AND unit = {_SELF} LIMIT 1) r",
        {"now": now, "id": msg_id, "s": sender, "a": action},
    )


def ingest(db: sqlite3.Connection, unit: bytes, rows: Sequence[FlowRow]) -> int:
    """A unit's reported events; those already held (a replayed report) or already pruned
    (an old report replayed after its events were pruned) are ignored."""
    pruned = db.execute("SELECT through FROM flow_pruned WHERE unit = ?", (unit,)).fetchone()
    if pruned is not None:
        rows = [r for r in rows if r.seq > int(pruned[0])]
    before = db.total_changes
    db.executemany(
        "INSERT OR IGNORE INTO flow_events (unit, seq, at, event, msg_id, type, priority, tlp, "
        "peer, recipients, size, latency, reason, action, withheld) VALUES "
        "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            (
                unit,
                r.seq,
                r.at,
                r.event,
                r.msg_id,
                r.type,
                r.priority,
                r.tlp,
                r.peer,
                None if r.recipients is None else b"".join(r.recipients),
                r.size,
                r.latency,
                r.reason,
                r.action,
                ",".join(r.withheld),
            )
            for r in rows
        ],
    )
    return db.total_changes - before


def put_unit(db: sqlite3.Connection, u: FlowUnit) -> bool:
    """Keep a unit's state if it is newer than the one held (reports may arrive out of order)."""
    cur = db.execute(
        "INSERT INTO flow_units (unit, state, report_time, received_at, through, policy) "
        "VALUES (?,?,?,?,?,?) ON CONFLICT (unit) DO UPDATE SET state = excluded.state, "
        "report_time = excluded.report_time, received_at = excluded.received_at, "
        "through = MAX(through, excluded.through), policy = excluded.policy "
        "WHERE excluded.report_time > flow_units.report_time",
        (u.unit, u.state, u.report_time, u.received_at, u.through, u.policy),
    )
    return cur.rowcount > 0


def put_cursor(db: sqlite3.Connection, c: FlowCursor) -> None:
    db.execute(
        "INSERT OR REPLACE INTO flow_cursors (coordinator, through, sent_at, failing_since, "
        "last_error) VALUES (?,?,?,?,?)",
        (c.coordinator, c.through, c.sent_at, c.failing_since, c.last_error),
    )


# reads ---------------------------------------------------------------------------------------


def self_id(db: sqlite3.Connection) -> bytes | None:
    row = db.execute("SELECT id FROM flow_self").fetchone()
    return None if row is None else bytes(row[0])


def own_after(db: sqlite3.Connection, after: int, limit: int) -> list[FlowRow]:
    """This node's events after its seq ``after``, in seq order (what a report carries)."""
    return [
        _row(r)
        for r in db.execute(
            f"SELECT {_COLUMNS} FROM flow_events WHERE unit = {_SELF} AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (after, limit),
        )
    ]


def own_last_seq(db: sqlite3.Connection) -> int:
    row = db.execute(f"SELECT MAX(seq) FROM flow_events WHERE unit = {_SELF}").fetchone()
    return int(row[0] or 0)


def after_rid(db: sqlite3.Connection, after: int, limit: int) -> list[FlowRow]:
    """Events stored after ``after`` (rid), oldest first: what a live feed has not shown yet."""
    return [
        _row(r)
        for r in db.execute(
            f"SELECT {_COLUMNS} FROM flow_events WHERE rid > ? ORDER BY rid LIMIT ?",
            (after, limit),
        )
    ]


def _listed(prefix: str, values: Iterable[Any]) -> tuple[str, dict[str, Any]]:
    """``:prefix0, :prefix1, ...`` for an ``IN (...)`` list, and their parameters."""
    params = {f"{prefix}{i}": v for i, v in enumerate(sorted(values))}
    return ", ".join(f":{name}" for name in params), params


def _narrowed(only: FlowFilter, table: str = "flow_events") -> tuple[str, dict[str, Any]]:
    """The SQL condition (``AND ...``, or nothing) and parameters that keep ``only``'s events."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if only.type:
        where.append(f"{table}.type = :f_type")
        params["f_type"] = only.type
    if only.priority:
        where.append(f"{table}.priority = :f_priority")
        params["f_priority"] = only.priority
    if only.units is not None:
        listed, units = _listed("f_u", only.units)
        params |= units
        listed = listed or "NULL"  # no unit chosen: nothing matches
        where.append(f"({table}.unit IN ({listed}) OR {table}.peer IN ({listed}))")
    return "".join(f" AND {w}" for w in where), params


def latest(
    db: sqlite3.Connection, limit: int, since: float, only: FlowFilter = EVERYTHING
) -> list[FlowRow]:
    """The newest events stored since ``since`` that ``only`` keeps, newest first."""
    cond, params = _narrowed(only)
    return [
        _row(r)
        for r in db.execute(
            f"SELECT {_COLUMNS} FROM flow_events WHERE at >= :since{cond} "
            "ORDER BY rid DESC LIMIT :limit",
            {"since": since, "limit": limit, **params},
        )
    ]


def last_rid(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COALESCE(MAX(rid), 0) FROM flow_events").fetchone()[0])


def counts(
    db: sqlite3.Connection, hour: float, minute: float, only: FlowFilter = EVERYTHING
) -> list[UnitCounts]:
    """Per unit, its ``delivered`` and ``received`` events since ``hour`` and since ``minute``:
    counted in SQL, exactly, however many events another unit stored."""
    cond, params = _narrowed(only)
    return [
        UnitCounts(
            unit=bytes(r[0]),
            out_1m=int(r[1]),
            out_1h=int(r[2]),
            in_1m=int(r[3]),
            in_1h=int(r[4]),
        )
        for r in db.execute(
            "SELECT unit, SUM(event = 'delivered' AND at >= :minute), SUM(event = 'delivered'), "
            "SUM(event = 'received' AND at >= :minute), SUM(event = 'received') "
            f"FROM flow_events WHERE at >= :hour AND event IN ('delivered', 'received'){cond} "
            "GROUP BY unit",
            {"hour": hour, "minute": minute, **params},
        )
    ]


def latency_sample(
    db: sqlite3.Connection, since: float, per_unit: int, only: FlowFilter = EVERYTHING
) -> dict[bytes, list[float]]:
    """Per unit, the latencies of its newest ``per_unit`` deliveries since ``since`` (what its
    p50 and p95 are computed from): one unit's flood of events fills only its own sample."""
    cond, params = _narrowed(only, "e")
    out: dict[bytes, list[float]] = {}
    for unit, latency in db.execute(
        "SELECT unit, latency FROM (SELECT e.unit, e.latency, ROW_NUMBER() OVER "
        "(PARTITION BY e.unit ORDER BY e.at DESC) AS n FROM flow_events e "
        f"WHERE e.event = 'delivered' AND e.latency IS NOT NULL AND e.at >= :since{cond}) "
        "WHERE n <= :per_unit",
        {"since": since, "per_unit": per_unit, **params},
    ):
        out.setdefault(bytes(unit), []).append(float(latency))
    return out


def units(db: sqlite3.Connection) -> list[FlowUnit]:
    return [
        FlowUnit(
            unit=bytes(r[0]),
            state=bytes(r[1]),
            report_time=float(r[2]),
            received_at=float(r[3]),
            through=int(r[4]),
            policy=bytes(r[5]),
        )
        for r in db.execute(
            "SELECT unit, state, report_time, received_at, through, policy FROM flow_units"
        )
    ]


def cursors(db: sqlite3.Connection) -> list[FlowCursor]:
    return [
        FlowCursor(
            coordinator=bytes(r[0]),
            through=int(r[1]),
            sent_at=r[2],
            failing_since=r[3],
            last_error=r[4],
        )
        for r in db.execute(
            "SELECT coordinator, through, sent_at, failing_since, last_error FROM flow_cursors"
        )
    ]


def links(db: sqlite3.Connection, since: float, only: FlowFilter = EVERYTHING) -> list[LinkCount]:
    cond, params = _narrowed(only)
    return [
        LinkCount(bytes(r[0]), bytes(r[1]), int(r[2]), r[3])
        for r in db.execute(
            "SELECT unit, peer, COUNT(*), AVG(latency) FROM flow_events WHERE event = 'delivered' "
            f"AND peer IS NOT NULL AND at >= :since{cond} GROUP BY unit, peer",
            {"since": since, **params},
        )
    ]


DISAGREEMENTS_PER_SENDER = 20


def disagreements(
    db: sqlite3.Connection, since: float, grace: float, now: float, only: FlowFilter = EVERYTHING
) -> list[Disagreement]:
    """Deliveries whose recipient has reported since (``grace`` after), never as received.
    A recipient that reports nothing, or withholds the id (TLP:RED), cannot disagree. At most
    DISAGREEMENTS_PER_SENDER per sender: a unit claiming deliveries that never happened fills
    only its own share of the list, never pushes out what another unit's account shows."""
    me = _SELF
    cond, params = _narrowed(only, "d")
    return [
        Disagreement(
            msg_id=bytes(r[0]),
            sender=bytes(r[1]),
            recipient=bytes(r[2]),
            delivered_at=r[3],
            tlp=r[4],
        )
        for r in db.execute(
            "SELECT msg_id, unit, peer, at, tlp FROM (SELECT d.msg_id, d.unit, d.peer, d.at, "
            "d.tlp, ROW_NUMBER() OVER (PARTITION BY d.unit ORDER BY d.at DESC) AS n "
            "FROM flow_events d "
            "WHERE d.event = 'delivered' AND d.at >= :since AND d.msg_id IS NOT NULL "
            "AND d.peer IS NOT NULL AND d.peer <> d.unit "
            "AND (d.peer = " + me + " OR EXISTS (SELECT 1 FROM flow_units u WHERE u.unit = d.peer "
            "AND u.report_time > d.at + :grace)) "
            "AND (d.peer <> " + me + " OR d.at + :grace < :now) "
            "AND NOT EXISTS (SELECT 1 FROM flow_events r WHERE r.msg_id = d.msg_id "
            "AND r.unit = d.peer AND r.event = 'received')" + cond + ") "
            "WHERE n <= :per_sender ORDER BY at DESC LIMIT 100",
            {
                "since": since,
                "grace": grace,
                "now": now,
                "per_sender": DISAGREEMENTS_PER_SENDER,
                **params,
            },
        )
    ]


def totals(db: sqlite3.Connection, unit: bytes) -> list[tuple[str, bytes | None, str | None, int]]:
    """(event, peer, type, count) of ``unit``'s events over all time, pruned ones included:
    what the metrics count."""
    return [
        (str(r[0]), bytes(r[1]) or None, str(r[2]) or None, int(r[3]))
        for r in db.execute(
            "SELECT event, peer, type, SUM(n) FROM ("
            "SELECT event, COALESCE(peer, X'') AS peer, COALESCE(type, '') AS type, COUNT(*) AS n "
            "FROM flow_events WHERE unit = :u GROUP BY 1, 2, 3 UNION ALL "
            "SELECT event, peer, type, count FROM flow_rollup WHERE unit = :u"
            ") GROUP BY 1, 2, 3",
            {"u": unit},
        )
    ]


_BUCKET = (
    "CASE "
    + " ".join(f"WHEN latency <= {b!r} THEN {i}" for i, b in enumerate(LATENCY_BUCKETS))
    + f" ELSE {len(LATENCY_BUCKETS)} END"
)


def latency_histogram(db: sqlite3.Connection, unit: bytes) -> LatencyHistogram:
    """``unit``'s delivery latencies over all time, pruned ones included, per bucket."""
    counts, total = [0] * (len(LATENCY_BUCKETS) + 1), 0.0
    for bucket, n, subtotal in db.execute(
        f"SELECT {_BUCKET}, COUNT(*), SUM(latency) FROM flow_events WHERE unit = :u "
        "AND event = 'delivered' AND latency IS NOT NULL GROUP BY 1 UNION ALL "
        "SELECT bucket, count, total FROM flow_latency_rollup WHERE unit = :u",
        {"u": unit},
    ):
        counts[int(bucket)] += int(n)
        total += float(subtotal or 0.0)
    return LatencyHistogram(counts, total)


def prune(db: sqlite3.Connection, before: float, own_through: int | None, limit: int) -> int:
    """Delete events stored before ``before`` (by each unit's seq: every event up to the
    unit's last one older than that), this node's own only up to ``own_through`` (what every
    coordinator was sent), at most ``limit`` per unit. What they counted goes into the rollups
    first, so the metrics' totals and histogram do not drop, and each unit's pruned seq is kept,
    so a replayed old report cannot store them again. Returns how many were deleted."""
    me = db.execute("SELECT id FROM flow_self").fetchone()
    deleted = 0
    bounds = db.execute(
        "SELECT unit, MAX(seq) FROM flow_events WHERE at < ? GROUP BY unit", (before,)
    ).fetchall()
    for unit, newest in bounds:
        bound = int(newest)
        if me is not None and bytes(unit) == bytes(me[0]) and own_through is not None:
            bound = min(bound, own_through)
        last = db.execute(  # the seq of the last of the (at most) ``limit`` oldest to go
            "SELECT MAX(seq) FROM (SELECT seq FROM flow_events WHERE unit = ? AND seq <= ? "
            "ORDER BY seq LIMIT ?)",
            (unit, bound, limit),
        ).fetchone()[0]
        if last is not None:
            deleted += _prune_unit(db, bytes(unit), int(last))
    return deleted


def cap_unit(db: sqlite3.Connection, unit: bytes, keep: int) -> int:
    """Keep at most ``keep`` of ``unit``'s events (its newest, by seq), the older ones rolled
    up and deleted: what one unit can make this node store is bounded, however fast it reports
    (second attack review: one unit stored 248,000 events, 153 MB, in 10 s). Returns how many
    were deleted."""
    low, high = db.execute(
        "SELECT MIN(seq), MAX(seq) FROM flow_events WHERE unit = ?", (unit,)
    ).fetchone()
    if high is None or int(high) - int(low) + 1 <= keep:
        return 0
    return _prune_unit(db, unit, int(high) - keep)


def _prune_unit(db: sqlite3.Connection, unit: bytes, bound: int) -> int:
    """Roll up and delete ``unit``'s events up to seq ``bound``; remember the bound."""
    args = {"u": unit, "s": bound}
    db.execute(
        "INSERT INTO flow_rollup (unit, event, peer, type, count) "
        "SELECT unit, event, COALESCE(peer, X''), COALESCE(type, ''), COUNT(*) "
        "FROM flow_events WHERE unit = :u AND seq <= :s GROUP BY 1, 2, 3, 4 "
        "ON CONFLICT (unit, event, peer, type) DO UPDATE SET count = count + excluded.count",
        args,
    )
    db.execute(
        "INSERT INTO flow_latency_rollup (unit, bucket, count, total) "
        f"SELECT unit, {_BUCKET}, COUNT(*), SUM(latency) FROM flow_events WHERE unit = :u "
        "AND seq <= :s AND event = 'delivered' AND latency IS NOT NULL GROUP BY 1, 2 "
        "ON CONFLICT (unit, bucket) DO UPDATE SET count = count + excluded.count, "
        "total = total + excluded.total",
        args,
    )
    deleted = db.execute("DELETE FROM flow_events WHERE unit = :u AND seq <= :s", args).rowcount
    db.execute(
        "INSERT INTO flow_pruned (unit, through) VALUES (:u, :s) ON CONFLICT (unit) "
        "DO UPDATE SET through = MAX(through, excluded.through)",
        args,
    )
    return int(deleted)


def sent_totals(db: sqlite3.Connection) -> list[tuple[bytes, str, int]]:
    """(peer, type, entries) of this node's outbox over all time."""
    return [
        (bytes(r[0]), str(r[1]), int(r[2]))
        for r in db.execute(
            "SELECT o.peer, m.type, COUNT(*) FROM outbox o JOIN messages m ON m.id = o.msg_id "
            "GROUP BY o.peer, m.type"
        )
    ]


def pending_links(db: sqlite3.Connection, hide: frozenset[str] = frozenset()) -> list[PendingLink]:
    """Per peer, this node's entries still to deliver; those of messages whose TLP is in
    ``hide`` (a message of unknown TLP counts as RED) are left out, depth, times and reason."""
    listed, params = _listed("h", hide)
    shown_m = f"COALESCE(m.tlp, 'RED') NOT IN ({listed})" if hide else "1"
    shown_e = f"COALESCE(tlp, 'RED') NOT IN ({listed})" if hide else "1"
    rows = db.execute(
        "SELECT o.peer, COUNT(*), MIN(m.queued_at), SUM(o.status = 'failed'), "
        "MIN(CASE WHEN o.status = 'failed' THEN o.next_attempt END) "
        # messages_age covers what is read of each message: not its row, envelope and all.
        "FROM outbox o JOIN messages m INDEXED BY messages_age ON m.id = o.msg_id "
        f"WHERE o.status IN ('queued', 'failed') AND {shown_m} GROUP BY o.peer",
        params,
    ).fetchall()
    out = []
    for peer, depth, oldest, failing, next_retry in rows:
        since, error = None, None
        if failing:
            since, error = db.execute(
                "SELECT MIN(at), (SELECT reason FROM flow_events WHERE peer = :p AND "
                f"event = 'failed' AND unit = {_SELF} AND {shown_e} ORDER BY at DESC LIMIT 1) "
                f"FROM flow_events WHERE peer = :p AND event = 'failed' AND unit = {_SELF} "
                f"AND {shown_e} AND at > "
                "COALESCE((SELECT MAX(at) FROM flow_events WHERE peer = :p AND "
                f"event = 'delivered' AND unit = {_SELF}), 0)",
                {"p": peer, **params},
            ).fetchone()
        out.append(
            PendingLink(
                peer=bytes(peer),
                depth=int(depth),
                oldest=oldest,
                failing=int(failing or 0),
                failing_since=since,
                next_retry=next_retry,
                last_error=error,
            )
        )
    return out


def _row(r: Sequence[Any]) -> FlowRow:
    recipients = None if r[10] is None else bytes(r[10])
    return FlowRow(
        rid=int(r[0]),
        unit=bytes(r[1]),
        seq=int(r[2]),
        at=float(r[3]),
        event=str(r[4]),
        msg_id=None if r[5] is None else bytes(r[5]),
        type=r[6],
        priority=r[7],
        tlp=r[8],
        peer=None if r[9] is None else bytes(r[9]),
        recipients=None
        if recipients is None
        else [recipients[i : i + 32] for i in range(0, len(recipients), 32)],
        size=r[11],
        latency=r[12],
        reason=r[13],
        action=r[14],
        withheld=[w for w in str(r[15]).split(",") if w],
    )
