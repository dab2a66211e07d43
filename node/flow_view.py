"""The region's message flow as a coordinator (or a unit, for its own traffic) sees it: one row per
unit, a feed of events, who talks to whom, and what stands out (PROTOCOL.md 14, README "Watching
the region"). The dashboard, ``borderlink monitor`` and /metrics all read this one model, so their
numbers cannot disagree.

Built from one read of the store on the database thread (:meth:`FlowView.snapshot`), then pure
(:func:`build`): the same rows and time in, the same view out. Names come from this node's peers
(a node id it does not know is shown as the first 8 bytes in hex); text a peer supplied (reasons)
is passed as data, and every screen escapes it. Nothing here reads a message body: only events.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from keys.card import Card
from keys.trust import PeerRecord
from node.flow_reports import unit_state
from node.peer_info import parsed_card
from node.runtime import Clock, Run
from node.storage import Evidence, Store
from node.storage.flow_rows import (
    Disagreement,
    FlowCursor,
    FlowFilter,
    FlowRow,
    FlowUnit,
    LinkCount,
    UnitCounts,
)
from protocol.flow import UnitState
from protocol.identity import Identity

HOUR = 3600.0
LATENCY_SAMPLE = 1_000  # a unit's newest deliveries its p50 and p95 are computed from
FEED = 200  # events in the feed
GRACE = 30.0  # a recipient reporting this long after a delivery should have reported it
SHARE_FOR = 0.5  # seconds a snapshot serves every view asked for the same filters
SHARED_FILTERS = 32  # snapshots held at once, one per filters asked for
_STATE = msgspec.msgpack.Decoder(UnitState)
_POLICY = msgspec.msgpack.Decoder(dict[str, list[str]])


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    """What the operator narrowed the view to; empty means everything."""

    country: str = ""
    unit: str = ""  # a unit's name: its events, either side
    type: str = ""
    priority: str = ""
    window: float = HOUR  # seconds back from now


class UnitRow(msgspec.Struct, frozen=True, kw_only=True):
    node_id: str
    name: str
    country: str
    location: str
    unit_type: str
    me: bool  # this node
    link: str  # up | failing | silent | never reported
    key_status: str  # ok | expiring | expired | revoked | blocked
    key_expires: float | None
    outbox_depth: int
    oldest_undelivered: float | None  # seconds since it was queued
    p50_ms: float | None
    p95_ms: float | None
    failing_since: float | None
    failing: str | None  # why, in words
    next_retry: float | None
    out_1m: int  # deliveries completed (one per recipient)
    out_1h: int
    in_1m: int  # messages received
    in_1h: int
    reported_at: float | None
    witness_alarms: int
    withholds: dict[str, list[str]]


class FeedEvent(msgspec.Struct, frozen=True, kw_only=True):
    rid: int
    at: float
    unit: str
    event: str
    id: str | None
    type: str | None
    priority: str | None
    tlp: str | None
    peer: str | None
    recipients: list[str] | None
    size: str | None
    latency_ms: float | None
    reason: str | None
    action: str | None
    withheld: list[str]


class LinkCell(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    target: str
    count: int
    mean_ms: float | None


class Mismatch(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    sender: str
    recipient: str
    delivered_at: float


class View(msgspec.Struct, frozen=True, kw_only=True):
    now: float
    me: str
    coordinator: bool
    filters: Filters
    units: list[UnitRow]
    feed: list[FeedEvent]
    links: list[LinkCell]
    disagreements: list[Mismatch]
    alarms: list[str]  # what stands out, in words: witness evidence, blocked or expiring keys
    last_rid: int  # the newest event this view saw (a live feed continues after it)


@dataclass(frozen=True)
class Snapshot:
    """Everything :func:`build` needs, read in one go."""

    now: float
    me: bytes
    card: Card
    peers: list[PeerRecord]
    own_state: UnitState
    units: list[FlowUnit]
    counts: dict[bytes, UnitCounts]  # per unit, in the last minute and hour of the window
    latencies: dict[bytes, list[float]]  # per unit, its newest deliveries' latencies
    feed: list[FlowRow]
    links: list[LinkCount]
    disagreements: list[Disagreement]
    evidence: list[Evidence]
    cursors: list[FlowCursor]
    last_rid: int
    silent_after: float


def short(node_id: bytes) -> str:
    return node_id[:8].hex()


class Names:
    def __init__(self, me: bytes, card: Card, peers: list[PeerRecord]) -> None:
        self.by_id = {p.node_id: p.name for p in peers}
        self.by_id[me] = card.body.name
        self.cards = {p.node_id: parsed_card(p.card) for p in peers}
        self.cards[me] = card

    def __call__(self, node_id: bytes | None) -> str | None:
        return None if node_id is None else self.by_id.get(node_id, short(node_id))


def _pct(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0] * 1000, 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000, 1)


def _ago(t: float, now: float) -> str:
    s = max(0, int(now - t))
    return f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s // 3600} h"


def _matches(r: FlowRow, f: Filters, names: Names, units: set[bytes] | None) -> bool:
    if f.type and r.type != f.type:
        return False
    if f.priority and r.priority != f.priority:
        return False
    if units is not None and r.unit not in units and r.peer not in units:
        return False
    return True


def _selected_units(f: Filters, names: Names) -> set[bytes] | None:
    if not f.unit and not f.country:
        return None
    out = set()
    for node_id, card in names.cards.items():
        if f.unit and card.body.name != f.unit and names(node_id) != f.unit:
            continue
        if f.country and card.body.country != f.country.upper():
            continue
        out.add(node_id)
    return out


def narrowing(f: Filters, names: Names) -> FlowFilter:
    """``f`` as the store's reads apply it."""
    chosen = _selected_units(f, names)
    return FlowFilter(
        type=f.type,
        priority=f.priority,
        units=None if chosen is None else frozenset(chosen),
    )


def build(s: Snapshot, f: Filters) -> View:
    names = Names(s.me, s.card, s.peers)
    now = s.now
    chosen = _selected_units(f, names)
    states: dict[bytes, tuple[UnitState, FlowUnit | None]] = {s.me: (s.own_state, None)}
    for u in s.units:
        states[u.unit] = (_STATE.decode(u.state), u)
    # Every trusted coordinator's view includes its trusted peers that never reported.
    if s.card.body.unit_type == "coordinator":
        for p in s.peers:
            if p.status == "trusted" and p.node_id not in states:
                states[p.node_id] = (UnitState(), None)
    failing_to: dict[bytes, list[tuple[float, str]]] = {}
    for node_id, (st, _) in states.items():
        for lk in st.links:
            if lk.state == "retrying" and lk.failing_since_ms is not None:
                failing_to.setdefault(lk.peer, []).append(
                    (
                        lk.failing_since_ms / 1000,
                        f"{names(node_id)} cannot deliver to it: {lk.reason or 'no answer'}",
                    )
                )
    rows: list[UnitRow] = []
    for node_id, (st, reported) in states.items():
        if chosen is not None and node_id not in chosen:
            continue
        counted = s.counts.get(node_id) or UnitCounts(
            unit=node_id, out_1m=0, out_1h=0, in_1m=0, in_1h=0
        )
        lat = s.latencies.get(node_id, [])
        card = names.cards.get(node_id)
        peer = next((p for p in s.peers if p.node_id == node_id), None)
        link: str = "up"
        since: float | None = None
        why: str | None = None
        retry: float | None = None
        if node_id != s.me:
            if reported is None:
                link, why = "never reported", "no flow report received from it yet"
            elif now - reported.received_at > s.silent_after:
                link, since = "silent", reported.received_at
                why = f"no report for {_ago(reported.received_at, now)}: down or unreachable"
        own_failing = [
            lk for lk in st.links if lk.state == "retrying" and lk.failing_since_ms is not None
        ]
        if why is None and own_failing:
            worst = min(own_failing, key=lambda lk: lk.failing_since_ms or 0)
            link, since = "failing", (worst.failing_since_ms or 0) / 1000
            why = f"cannot deliver to {names(worst.peer)}: {worst.reason or 'no answer'}"
            retry = min((lk.next_retry_ms or 0) / 1000 for lk in own_failing) or None
        if why is None and failing_to.get(node_id):
            since, why = min(failing_to[node_id])
            link = "failing"
        key_status: str = st.key_status
        if peer is not None and peer.status != "trusted":
            key_status = "revoked" if peer.status == "revoked" else "blocked"
        depth = sum(lk.depth for lk in st.links)
        oldest = [lk.oldest_ms / 1000 for lk in st.links if lk.oldest_ms is not None]
        rows.append(
            UnitRow(
                node_id=node_id.hex(),
                name=names(node_id) or short(node_id),
                country=card.body.country if card else "",
                location=card.body.location if card else "",
                unit_type=card.body.unit_type if card else "",
                me=node_id == s.me,
                link=link,
                key_status=key_status,
                key_expires=None if st.key_expires is None else st.key_expires / 1000,
                outbox_depth=depth,
                oldest_undelivered=round(now - min(oldest), 1) if oldest else None,
                p50_ms=_pct(lat, 50),
                p95_ms=_pct(lat, 95),
                failing_since=since,
                failing=why,
                next_retry=retry,
                out_1m=counted.out_1m,
                out_1h=counted.out_1h,
                in_1m=counted.in_1m,
                in_1h=counted.in_1h,
                reported_at=reported.received_at if reported else None,
                witness_alarms=st.witness_alarms,
                withholds=_POLICY.decode(reported.policy) if reported else {},
            )
        )
    rows.sort(key=lambda r: (not r.me, r.link == "up", r.name))
    # The snapshot's feed, links and disagreements were read narrowed to ``f`` (FlowView.view
    # keys snapshots by filters): nothing to filter again here.
    feed = [_feed(r, names) for r in s.feed]
    links = [
        LinkCell(
            source=names(c.unit) or "",
            target=names(c.peer) or "",
            count=c.count,
            mean_ms=None if c.mean_latency is None else round(c.mean_latency * 1000, 1),
        )
        for c in s.links
    ]
    mismatches = [
        Mismatch(
            id=d.msg_id.hex(),
            sender=names(d.sender) or "",
            recipient=names(d.recipient) or "",
            delivered_at=d.delivered_at,
        )
        for d in s.disagreements
        if not _withholds_receipt(states.get(d.recipient), d.tlp)
    ]
    return View(
        now=now,
        me=s.card.body.name,
        coordinator=s.card.body.unit_type == "coordinator",
        filters=f,
        units=rows,
        feed=feed,
        links=links,
        disagreements=mismatches,
        alarms=_alarms(s, names, states),
        last_rid=s.last_rid,
    )


def _withholds_receipt(state: tuple[UnitState, FlowUnit | None] | None, tlp: str | None) -> bool:
    """Whether the recipient's policy hides the id of what it received at this TLP (it cannot
    then be joined, so its silence is no disagreement)."""
    if state is None or state[1] is None:
        return False
    policy = _POLICY.decode(state[1].policy)
    fields = policy.get(tlp or "RED", [])
    return "id" in fields or "recipients" in fields


def _feed(r: FlowRow, names: Names) -> FeedEvent:
    return FeedEvent(
        rid=r.rid,
        at=r.at,
        unit=names(r.unit) or "",
        event=r.event,
        id=None if r.msg_id is None else r.msg_id.hex(),
        type=r.type,
        priority=r.priority,
        tlp=r.tlp,
        peer=names(r.peer),
        recipients=None if r.recipients is None else [names(p) or "" for p in r.recipients],
        size=r.size,
        latency_ms=None if r.latency is None else round(r.latency * 1000, 1),
        reason=r.reason,
        action=r.action,
        withheld=r.withheld,
    )


def _alarms(
    s: Snapshot, names: Names, states: dict[bytes, tuple[UnitState, FlowUnit | None]]
) -> list[str]:
    out = [f"witness alarm: {e.kind} in the log of {names(e.node)}: {e.detail}" for e in s.evidence]
    for node_id, (st, _) in states.items():
        if node_id != s.me and st.witness_alarms:
            out.append(f"{names(node_id)} holds {st.witness_alarms} witness alarm(s)")
        if st.key_status in ("expiring", "expired", "revoked"):
            out.append(f"the key of {names(node_id)} is {st.key_status}")
    for p in s.peers:
        if p.status == "blocked" or p.pending_card:
            out.append(f"{p.name}: key changed, blocked until a custodian verifies it")
    for c in s.cursors:
        if c.failing_since is not None:
            out.append(
                f"flow reports to {names(c.coordinator)} failing since "
                f"{_ago(c.failing_since, s.now)} ago: {c.last_error}"
            )
    return out


class FlowView:
    """Reads a :class:`Snapshot` and builds the :class:`View`; the dashboard, monitor and
    metrics each hold one."""

    def __init__(
        self,
        identity: Identity,
        store: Store,
        run_db: Run,
        clock: Clock,
        *,
        own_card: Callable[[], Card],
        link_of: Callable[[bytes], str],
        silent_after: float,
    ) -> None:
        self.identity = identity
        self.store = store
        self.run_db = run_db
        self.clock = clock
        self.own_card = own_card
        self.link_of = link_of
        self.silent_after = silent_after
        self._snapshots: dict[Filters, Snapshot] = {}  # per filters: the last one read

    def snapshot(self, filters: Filters | None = None) -> Snapshot:
        """Runs on the database thread. The feed, the picture and the disagreements are read
        narrowed to ``filters`` (a view filtered by type shows only that type's traffic
        everywhere); the per-unit rows are narrowed by :func:`build`."""
        f = filters or Filters()
        now = self.clock()
        st = self.store
        evidence = st.evidence()
        card = self.own_card()
        peers = st.peers()
        only = narrowing(f, Names(self.identity.node_id, card, peers))
        return Snapshot(
            now=now,
            me=self.identity.node_id,
            card=card,
            peers=peers,
            own_state=unit_state(st, self.identity, card, self.link_of, len(evidence), now),
            units=st.flow_units(),
            counts={
                c.unit: c
                for c in st.flow_counts(now - min(f.window, HOUR), now - min(f.window, 60.0), only)
            },
            latencies=st.flow_latency_sample(now - f.window, LATENCY_SAMPLE, only),
            feed=st.flow_latest(FEED, now - f.window, only),
            links=st.flow_links(now - f.window, only),
            disagreements=st.flow_disagreements(now - f.window, GRACE, now, only),
            evidence=evidence,
            cursors=st.flow_cursors(),
            last_rid=st.flow_last_rid(),
            silent_after=self.silent_after,
        )

    async def view(self, filters: Filters | None = None) -> View:
        """The view now; a snapshot read within the last SHARE_FOR seconds for the same
        filters is reused, so many open dashboards cost one read a second, not one each."""
        f = filters or Filters()
        held = self._snapshots.get(f)
        if held is None or self.clock() - held.now >= SHARE_FOR:
            held = await self.run_db(self.snapshot, f)
            self._snapshots.pop(f, None)
            self._snapshots[f] = held
            while len(self._snapshots) > SHARED_FILTERS:  # the least recently read goes
                del self._snapshots[next(iter(self._snapshots))]
        return build(held, f)

    async def events_after(
        self, rid: int, filters: Filters | None = None, limit: int = 500
    ) -> tuple[list[FeedEvent], int]:
        """The events stored after ``rid`` that pass ``filters`` (the window aside), and the
        rid to continue after."""

        def read() -> tuple[list[FlowRow], list[PeerRecord]]:
            return self.store.flow_after(rid, limit), self.store.peers()

        rows, peers = await self.run_db(read)
        last = rows[-1].rid if rows else rid
        names = Names(self.identity.node_id, self.own_card(), peers)
        f = filters or Filters()
        chosen = _selected_units(f, names)
        return [_feed(r, names) for r in rows if _matches(r, f, names, chosen)], last
