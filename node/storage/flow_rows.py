"""The rows of the flow tables (PROTOCOL.md 14): events as a node stores them, this node's own and
those its units reported, and the latest state each unit reported.

Times are Unix seconds (floats); node ids 32 raw bytes, message ids 16. ``rid`` orders events as
they were stored here, which is what a live feed follows; ``seq`` is the reporting unit's own order.
"""

from __future__ import annotations

from typing import Final

import msgspec


class FlowRow(msgspec.Struct, frozen=True, kw_only=True):
    rid: int
    unit: bytes  # the node whose event it is (this node's own id for its own events)
    seq: int
    at: float
    event: str
    msg_id: bytes | None
    type: str | None
    priority: str | None
    tlp: str | None
    peer: bytes | None
    recipients: list[bytes] | None
    size: str | None
    latency: float | None  # seconds
    reason: str | None
    action: str | None
    withheld: list[str]


class FlowUnit(msgspec.Struct, frozen=True, kw_only=True):
    """The latest report of one unit: its state snapshot as it sent it (MessagePack of
    protocol.flow.UnitState), when it made the report, when it arrived, and its policy."""

    unit: bytes
    state: bytes
    report_time: float
    received_at: float
    through: int
    policy: bytes


class FlowCursor(msgspec.Struct, frozen=True, kw_only=True):
    """How far this node's reports to one coordinator got, and how the last attempt went."""

    coordinator: bytes
    through: int
    sent_at: float | None
    failing_since: float | None
    last_error: str | None


# Delivery latency buckets, in seconds (the Prometheus histogram's 'le' bounds): pruned events
# are kept as counts per bucket, so the histogram survives pruning.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class LatencyHistogram(msgspec.Struct, frozen=True):
    counts: list[int]  # per bucket, not cumulative; the last counts those over every bound
    total: float  # the sum of all latencies


class FlowFilter(msgspec.Struct, frozen=True, kw_only=True):
    """What a view is narrowed to, applied by the reads that aggregate events (the feed, the
    who-talks-to-whom picture, the disagreements), so a narrowed view counts only what it shows."""

    type: str = ""
    priority: str = ""
    units: frozenset[bytes] | None = None  # events of these units, or to them; None: all


EVERYTHING = FlowFilter()


class UnitCounts(msgspec.Struct, frozen=True, kw_only=True):
    """A unit's deliveries completed and messages received, in the last minute and hour."""

    unit: bytes
    out_1m: int
    out_1h: int
    in_1m: int
    in_1h: int


class LinkCount(msgspec.Struct, frozen=True):
    """Deliveries from one unit to one peer in a window (the who-talks-to-whom picture)."""

    unit: bytes
    peer: bytes
    count: int
    mean_latency: float | None


class Disagreement(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery its sender reported that its recipient, reporting since, never did."""

    msg_id: bytes
    sender: bytes
    recipient: bytes
    delivered_at: float
    tlp: str | None


class PendingLink(msgspec.Struct, frozen=True, kw_only=True):
    """This node's undelivered entries for one peer, as a report's link state needs them."""

    peer: bytes
    depth: int
    oldest: float | None
    failing: int  # entries whose last attempt failed
    failing_since: float | None  # first failure since the last delivery to the peer
    next_retry: float | None
    last_error: str | None
