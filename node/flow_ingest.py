"""Taking flow reports in, on a coordinator (PROTOCOL.md 14.3): open, check, store.

The caller is the peer the TLS channel proved; the report must be sealed by that same peer
(channel_mismatch otherwise), to this node, signed by the key its card holds now. Only a node
whose own card says ``unit_type: coordinator`` takes reports (not_a_coordinator): a unit's
metadata goes to no one it did not choose. Events are stored by (unit, seq), so a replayed report
stores nothing new, and the unit's state replaces the one held only if it is newer. Opening runs
on the crypto thread, storing on the database thread, reports arriving together in one commit
(group commit); nothing here speaks HTTP or SQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import structlog

from keys.card import Card
from keys.trust import require_trusted
from node.peer_info import parsed_card
from node.runtime import Clock, Run
from node.storage import Store
from node.storage.flow_rows import FlowRow, FlowUnit
from protocol.errors import ChannelMismatch, PeerRevoked, Rejected, UnknownSender
from protocol.flow import FlowEvent, FlowReport, open_report, report_sender
from protocol.identity import Identity, PublicIdentity

log = structlog.get_logger("borderlink.flow")
_ENC = msgspec.msgpack.Encoder()


class NotACoordinator(Rejected):
    reason = "not_a_coordinator"


def row_of(unit: bytes, e: FlowEvent) -> FlowRow:
    return FlowRow(
        rid=0,
        unit=unit,
        seq=e.seq,
        at=e.at / 1000,
        event=e.event,
        msg_id=e.id,
        type=e.type,
        priority=e.priority,
        tlp=e.tlp,
        peer=e.peer,
        recipients=e.recipients,
        size=e.size,
        latency=None if e.latency_ms is None else e.latency_ms / 1000,
        reason=e.reason,
        action=e.action,
        withheld=list(e.withheld),
    )


class FlowIngest:
    def __init__(
        self,
        identity: Identity,
        store: Store,
        run_db: Run,
        run_cpu: Run,
        clock: Clock,
        own_card: Callable[[], Card],
        keep_per_unit: int = 1_000_000,
    ) -> None:
        self.identity = identity
        self.keep_per_unit = keep_per_unit  # [flow] keep_events_per_unit
        self.store = store
        self.run_db = run_db
        self.run_cpu = run_cpu
        self.clock = clock
        self.own_card = own_card
        self.ingested = 0  # events stored since start (the bench and metrics read it)
        self._pending: list[tuple[FlowReport, asyncio.Future[int]]] = []
        self._flushing = False

    async def take(self, body: bytes, caller: bytes) -> int:
        """Store a report from ``caller``; the seq through which this node now holds the
        caller's events (what the unit's cursor moves to)."""
        if self.own_card().body.unit_type != "coordinator":
            raise NotACoordinator("this node is not a coordinator; it takes no flow reports")
        if report_sender(body) != caller:
            raise ChannelMismatch("the report's sender is not the peer on this connection")
        peer = await self.run_db(self.store.peer_by_id, caller)

        def sender_of(node_id: bytes) -> PublicIdentity:
            try:
                return parsed_card(require_trusted(peer, node_id).card).identity
            except PeerRevoked as exc:
                raise UnknownSender(exc.message) from exc

        now = self.clock()
        report = await self.run_cpu(
            open_report, body, self.identity, sender_of=sender_of, now_ms=int(now * 1000)
        )
        added = await self._grouped(report)
        self.ingested += added
        return report.through

    async def _grouped(self, report: FlowReport) -> int:
        """Store ``report`` in the next commit: reports that arrive while one commit runs go
        together in the one after it (group commit), so the fsync is paid per batch of reports,
        not per report, and each caller is answered only once its report is on disk."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((report, done))
        if not self._flushing:
            self._flushing = True
            asyncio.create_task(self._flush())  # noqa: RUF006 - it ends when _pending is empty
        return await done

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    added = await self.run_db(self._store, [r for r, _ in batch], self.clock())
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for (_, done), n in zip(batch, added, strict=True):
                        if not done.done():
                            done.set_result(n)
        finally:
            self._flushing = False

    def _store(self, reports: list[FlowReport], now: float) -> list[int]:
        with self.store.unit(now) as u:
            return [
                u.ingest_flow(
                    r.unit,
                    [row_of(r.unit, e) for e in r.events],
                    FlowUnit(
                        unit=r.unit,
                        state=_ENC.encode(r.state),
                        report_time=r.time / 1000,
                        received_at=now,
                        through=r.through,
                        policy=_ENC.encode(r.policy),
                    ),
                    keep=self.keep_per_unit,
                )
                for r in reports
            ]
