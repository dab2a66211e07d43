"""/metrics in the Prometheus text format, written by prometheus-client from the flow tables.

Counted from what is stored, not from counters kept in memory, so a scrape after a restart says
what happened before it, and the numbers are the same ones the dashboard and ``monitor`` show.
Labels are peer and unit names and message types (a bounded set); never message ids. Built on
the database thread (the collector reads the store while prometheus-client writes the text).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from node.flow_view import Filters, Names, Snapshot, build
from node.storage import Store
from node.storage.flow_rows import LATENCY_BUCKETS, LatencyHistogram

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


class FlowCollector(Collector):
    def __init__(self, store: Store, snapshot: Snapshot, ingested: int) -> None:
        self.store = store
        self.snap = snapshot
        self.ingested = ingested

    def collect(self) -> Iterator[Metric]:
        s = self.snap
        names = Names(s.me, s.card, s.peers)

        def name(node_id: bytes | None) -> str:
            return names(node_id) or ""

        families = {
            "queued": CounterMetricFamily(
                "borderlink_messages_sent",
                "Messages this node queued, per recipient and type",
                labels=["peer", "type"],
            ),
            "delivered": CounterMetricFamily(
                "borderlink_messages_delivered",
                "Messages this node delivered, with a verified receipt",
                labels=["peer", "type"],
            ),
            "received": CounterMetricFamily(
                "borderlink_messages_received",
                "Messages this node received and stored",
                labels=["peer", "type"],
            ),
            "failed": CounterMetricFamily(
                "borderlink_delivery_failures",
                "Deliveries that failed (each new failure or new reason)",
                labels=["peer"],
            ),
            "expired": CounterMetricFamily(
                "borderlink_messages_expired",
                "Deliveries given up because the message expired",
                labels=["peer"],
            ),
            "rejected": CounterMetricFamily(
                "borderlink_messages_rejected",
                "Deliveries the recipient refused for good",
                labels=["peer"],
            ),
            "acknowledged": CounterMetricFamily(
                "borderlink_messages_acknowledged",
                "Received messages this node acknowledged",
                labels=["peer", "type"],
            ),
        }
        sent: dict[tuple[str, str], int] = {}
        for to, kind, count in self.store.flow_sent_totals():
            key = (name(to), kind)
            sent[key] = sent.get(key, 0) + count
        for (peer_name, kind), count in sorted(sent.items()):
            families["queued"].add_metric([peer_name, kind], count)
        counted: dict[tuple[str, tuple[str, ...]], int] = {}
        for event, other, type_name, count in self.store.flow_totals(s.me):
            if event == "queued" or event not in families:
                continue
            by_type = event in ("delivered", "received", "acknowledged")
            labels: tuple[str, ...] = (name(other), type_name or "") if by_type else (name(other),)
            counted[event, labels] = counted.get((event, labels), 0) + count
        for (event, labels), count in sorted(counted.items()):
            families[event].add_metric(list(labels), count)
        yield from families.values()
        yield _histogram(self.store.flow_latency_histogram(s.me))
        depth = GaugeMetricFamily(
            "borderlink_outbox_depth", "Entries still to deliver, per peer", labels=["peer"]
        )
        oldest = GaugeMetricFamily(
            "borderlink_oldest_undelivered_seconds",
            "Age of the oldest entry still to deliver, per peer",
            labels=["peer"],
        )
        for link in s.own_state.links:
            depth.add_metric([name(link.peer)], link.depth)
            if link.oldest_ms is not None:
                oldest.add_metric([name(link.peer)], max(0.0, s.now - link.oldest_ms / 1000))
        yield depth
        yield oldest
        yield CounterMetricFamily(
            "borderlink_witness_alarms",
            "Rollbacks, forks and bad proofs this node holds evidence of",
            value=len(s.evidence),
        )
        yield GaugeMetricFamily(
            "borderlink_key_expiry_timestamp_seconds",
            "When this node's card expires",
            value=s.card.body.valid_until,
        )
        yield CounterMetricFamily(
            "borderlink_flow_events_ingested",
            "Flow events units reported to this coordinator, since it started",
            value=self.ingested,
        )
        view = build(s, Filters())
        up = GaugeMetricFamily(
            "borderlink_unit_up",
            "1 if the unit reports and delivers, 0 if it is silent or failing",
            labels=["unit"],
        )
        unit_depth = GaugeMetricFamily(
            "borderlink_unit_outbox_depth", "A unit's entries still to deliver", labels=["unit"]
        )
        for row in view.units:
            up.add_metric([row.name], 1.0 if row.link == "up" else 0.0)
            unit_depth.add_metric([row.name], row.outbox_depth)
        yield up
        yield unit_depth
        yield GaugeMetricFamily(
            "borderlink_flow_disagreements",
            "Deliveries a sender reported that the recipient never reported as received",
            value=len(view.disagreements),
        )


def _histogram(h: LatencyHistogram) -> HistogramMetricFamily:
    cumulative, buckets = 0, []
    for bound, count in zip(LATENCY_BUCKETS, h.counts, strict=False):
        cumulative += count
        buckets.append((repr(bound), cumulative))
    buckets.append(("+Inf", sum(h.counts)))
    return HistogramMetricFamily(
        "borderlink_delivery_latency_seconds",
        "Time from queueing to a verified receipt, per delivery",
        buckets=buckets,
        sum_value=h.total,
    )


def render(store: Store, snapshot: Snapshot, ingested: int) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FlowCollector(store, snapshot, ingested))
    return generate_latest(registry)
