"""Sending flow reports to coordinators (PROTOCOL.md 14): one task per coordinator, each following
this node's own flow events from the cursor the coordinator last acknowledged.

Nothing is queued twice: the events are already durable (written with the change they describe),
and a report is built from them at each send, from ``flow_cursors.through`` on, so a coordinator
that was down, or a node that was killed, simply resumes from the cursor and the coordinator
catches up. A coordinator keys events by (unit, seq), so a report sent twice (the answer lost)
adds nothing. Each report also carries the unit's state now, so even a quiet unit says it is up.
Reports are withheld by TLP (``[flow] withhold``) before they are sealed. No HTTP routes, no SQL.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from keys.card import Card
from keys.trust import PeerRecord
from node.config import Flow
from node.delivery_rules import refusal
from node.peer_client import DeliveryFailed, PeerClient
from node.peer_info import PeerInfo, parsed_card
from node.runtime import Clock, Run
from node.storage import Reads, Store
from node.storage.flow_rows import FlowCursor, FlowRow
from node.tasks import cancelled
from protocol.flow import (
    FLOW_VERSION,
    FlowEvent,
    FlowReport,
    LinkState,
    UnitState,
    apply_policy,
    seal_report,
)
from protocol.identity import Identity

log = structlog.get_logger("borderlink.flow")

MAX_BACKOFF = 30.0
POLL = 0.1  # seconds between looks for new events
MIN_GAP = 0.2  # at most this often when events wait: a burst goes in one report
EXPIRING = 30 * 86400  # a key within 30 days of its expiry is "expiring" (status says the same)


def _ms(t: float | None) -> int | None:
    return None if t is None else max(0, int(t * 1000))


def event_of(row: FlowRow) -> FlowEvent:
    """A stored event of this node's as the protocol carries it (before withholding)."""
    return FlowEvent(
        seq=row.seq,
        at=max(0, int(row.at * 1000)),
        event=row.event,  # type: ignore[arg-type]  # written by flow_sqlite, one of the kinds
        tlp=row.tlp,  # type: ignore[arg-type]
        id=row.msg_id,
        type=row.type,
        priority=row.priority,  # type: ignore[arg-type]
        peer=row.peer,
        recipients=row.recipients,
        size=row.size,  # type: ignore[arg-type]
        latency_ms=_ms(row.latency),
        reason=row.reason[:200] if row.reason else None,
        action=row.action,
    )


def hidden_tlps(policy: Mapping[Any, Sequence[str]]) -> frozenset[str]:
    """The TLPs whose events withhold where a message went (``recipients`` or ``peer``): their
    entries stay out of a report's links."""
    return frozenset(t for t, fields in policy.items() if {"recipients", "peer"} & set(fields))


def targets(peers: list[PeerRecord], config: Flow) -> list[PeerRecord]:
    """The coordinators this node reports to: ``[flow] report_to`` by name, or every trusted
    coordinator a custodian verified by fingerprint; never a peer that is not trusted. A card
    trusted on first use only says "coordinator" of itself: that alone must not earn it the
    unit's whole flow history (found by an attack review)."""
    trusted = [p for p in peers if p.status == "trusted"]
    if config.report_to is not None:
        wanted = set(config.report_to)
        return [p for p in trusted if p.name in wanted]
    return [
        p
        for p in trusted
        if p.verified_by == "fingerprint" and parsed_card(p.card).body.unit_type == "coordinator"
    ]


PRUNE_BATCH = 10_000  # events deleted per unit per transaction: deliveries wait behind none long


def prune_flow(store: Store, config: Flow, now: float) -> int:
    """One bounded step of retention (one transaction): delete events older than ``[flow]
    keep_days``, this node's own only once every coordinator it reports to was sent them. The
    caller repeats it while it returns PRUNE_BATCH or more."""
    with store.unit(now) as u:
        cursors = {c.coordinator: c.through for c in u.flow_cursors()}
        sent = [cursors.get(p.node_id, 0) for p in targets(u.peers(), config)]
        return u.prune_flow(
            now - config.keep_days * 86400.0, min(sent) if sent else None, PRUNE_BATCH
        )


def unit_state(
    store: Reads,
    identity: Identity,
    card: Card,
    link_of: Callable[[bytes], str],
    alarms: int,
    now: float,
    hide: frozenset[str] = frozenset(),
) -> UnitState:
    """This node's state as a report carries it (and its own dashboard row shows it). Entries
    of messages whose TLP is in ``hide`` are left out of the links: a report's links must not
    say whom a message went to when its events withhold that (PROTOCOL.md 14.2)."""
    links: list[LinkState] = []
    pending = {p.peer: p for p in store.flow_pending_links(hide)}
    for rec in store.peers():
        node_id = rec.node_id
        p = pending.get(node_id)
        if rec.status == "revoked":
            state = "revoked"
        elif rec.status != "trusted":
            state = "blocked"
        elif p is None and hide:
            # Whether a delivery worker ever ran for the peer would say, the first time, that a
            # withheld (RED) message went to it: with withholding, nothing pending reads "ok"
            # (second attack review: idle turned ok in the report of the first RED message).
            state = "ok"
        elif p is None:
            state = "idle" if link_of(node_id) in ("idle", "unknown") else "ok"
        else:
            state = "retrying" if p.failing else "ok"
        links.append(
            LinkState(
                peer=node_id,
                state=state,  # type: ignore[arg-type]
                depth=p.depth if p else 0,
                oldest_ms=_ms(p.oldest) if p else None,
                failing_since_ms=_ms(p.failing_since) if p and p.failing else None,
                reason=(p.last_error or "")[:200] or None if p and p.failing else None,
                next_retry_ms=_ms(p.next_retry) if p and p.failing else None,
            )
        )
    revoked = any(r.key == identity.public.sign_key for r in store.revoked_keys(identity.node_id))
    expires = card.body.valid_until
    status = (
        "revoked"
        if revoked
        else "expired"
        if expires <= now
        else "expiring"
        if expires - now < EXPIRING
        else "ok"
    )
    return UnitState(
        links=links[:1024],
        key_expires=_ms(expires),
        key_status=status,  # type: ignore[arg-type]
        audit_size=store.audit_state().size,
        witness_alarms=alarms,
    )


@dataclass(frozen=True)
class Built:
    report: FlowReport
    more: bool  # events remain after these: send again at once


class FlowReporter:
    def __init__(
        self,
        identity: Identity,
        store: Store,
        run_db: Run,
        run_cpu: Run,
        client: PeerClient,
        config: Flow,
        clock: Clock,
        *,
        own_card: Callable[[], Card],
        link_of: Callable[[bytes], str],
    ) -> None:
        self.identity = identity
        self.store = store
        self.run_db = run_db
        self.run_cpu = run_cpu
        self.client = client
        self.config = config
        self.clock = clock
        self.own_card = own_card
        self.link_of = link_of  # up | down | unknown | idle, from the delivery workers
        self._tasks: dict[bytes, asyncio.Task[None]] = {}
        self._rng = random.Random()  # noqa: S311 - jitter, not secrets

    async def refresh(self) -> None:
        """Start a task for each coordinator to report to, stop those no longer one."""
        peers = targets(await self.run_db(self.store.peers), self.config)
        wanted = {p.node_id: p for p in peers}
        for node_id in list(self._tasks):
            if node_id not in wanted:
                task = self._tasks.pop(node_id)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for node_id, rec in wanted.items():
            if node_id not in self._tasks:
                self._tasks[node_id] = asyncio.create_task(
                    self._loop(rec.name, node_id), name=f"flow-{rec.name}"
                )

    async def stop(self) -> None:
        await cancelled(self._tasks.values())
        self._tasks.clear()

    async def _loop(self, name: str, node_id: bytes) -> None:
        """Send when events wait (at most every MIN_GAP seconds, so a burst goes in one
        report) and at least every ``interval`` (a quiet unit says it is up); back off on
        failure. New events are noticed by polling the last seq (one indexed read)."""
        failures = 0
        last_try = retry_at = float("-inf")
        sent_through = -1
        wait = 0.0
        while True:
            try:
                await asyncio.sleep(wait)
                now = self.clock()
                newest = await self.run_db(self.store.flow_own_last_seq)
                due = now - last_try >= self.config.interval
                fresh = newest > sent_through and now - last_try >= MIN_GAP
                if now < retry_at:
                    wait = POLL
                    continue
                if not (due or fresh):
                    wait = POLL
                    continue
                last_try = now
                more = await self.send_once(node_id)
                if failures:
                    log.info("flow.report_resumed", coordinator=name)
                failures = 0
                sent_through = newest
                wait = 0.0 if more else POLL
            except DeliveryFailed as exc:
                failures += 1
                retry_at = self.clock() + self._backoff(failures)
                await self.run_db(self._failed, node_id, exc.message)
                if failures == 1:
                    log.info("flow.report_failed", coordinator=name, error=exc.message)
                wait = POLL
            except Exception:  # a database or coding error must not end reporting for good
                log.exception("flow.report_error", coordinator=name)
                failures += 1
                retry_at = self.clock() + MAX_BACKOFF
                wait = POLL

    def _backoff(self, failures: int) -> float:
        delay = min(MAX_BACKOFF, self.config.interval * 2 ** min(failures - 1, 6))
        return float(delay * (0.5 + self._rng.random()))

    async def send_once(self, node_id: bytes) -> bool:
        """Build, seal and send one report to the coordinator; True if more events wait."""
        rec = await self.run_db(self.store.peer_by_id, node_id)
        if rec is None or rec.status != "trusted":
            raise DeliveryFailed("the coordinator is no longer a trusted peer")
        peer = PeerInfo.of(rec)
        built = await self.run_db(self._build, node_id, self.clock())
        body = await self.run_cpu(seal_report, self.identity, peer.identity, built.report)
        answer = await self.client.post_flow_report(peer, body)
        if answer.status != 200:
            _, why = refusal(rec.name, answer.status, answer.body, what="the flow report")
            raise DeliveryFailed(why)
        await self.run_db(self._sent, node_id, built.report.through)
        return built.more

    def _cursor(self, node_id: bytes) -> FlowCursor | None:
        return next((c for c in self.store.flow_cursors() if c.coordinator == node_id), None)

    def _build(self, node_id: bytes, now: float) -> Built:
        cursor = self._cursor(node_id)
        after = cursor.through if cursor else 0
        limit = self.config.max_events
        rows = self.store.flow_own_after(after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        policy = {k: list(v) for k, v in self.config.withhold.items()}
        events = [apply_policy(event_of(r), policy) for r in rows]
        through = rows[-1].seq if rows else after
        report = FlowReport(
            v=FLOW_VERSION,
            unit=self.identity.node_id,
            coordinator=node_id,
            # never before its newest event (a clock stepped back): a coordinator refuses
            # events dated after their report
            time=max([int(now * 1000), *(e.at for e in events)]),
            through=through,
            events=events,
            state=unit_state(
                self.store,
                self.identity,
                self.own_card(),
                self.link_of,
                len(self.store.evidence()),
                now,
                hide=hidden_tlps(policy),
            ),
            policy=policy,
        )
        return Built(report, more)

    def _sent(self, node_id: bytes, through: int) -> None:
        now = self.clock()
        with self.store.unit(now) as u:
            u.put_flow_cursor(
                FlowCursor(
                    coordinator=node_id,
                    through=through,
                    sent_at=now,
                    failing_since=None,
                    last_error=None,
                )
            )

    def _failed(self, node_id: bytes, error: str) -> None:
        now = self.clock()
        old = self._cursor(node_id)
        with self.store.unit(now) as u:
            u.put_flow_cursor(
                FlowCursor(
                    coordinator=node_id,
                    through=old.through if old else 0,
                    sent_at=old.sent_at if old else None,
                    failing_since=old.failing_since if old and old.failing_since else now,
                    last_error=error,
                )
            )
