"""The node's status report: who its peers are and how delivery to each stands, queue depths, the
audit log and what witnessing found. Read-only: storage reads, the delivery workers' link states
and the witness's last outcomes, each through its owner's public method. No HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from node.delivery import Deliveries
from node.runtime import Clock, Run
from node.storage import Cosignature, Evidence, InboxStats, OutboxStats, Reads, Store
from node.witness import Witness


@dataclass(frozen=True)
class _Snapshot:
    names: dict[bytes, str]
    outbox: OutboxStats
    inbox: InboxStats
    audit_size: int
    checkpoint_size: int
    cosignatures: list[Cosignature]
    evidence: list[Evidence]


def _snapshot(reads: Reads) -> _Snapshot:
    latest = reads.latest_checkpoint()
    return _Snapshot(
        names={p.node_id: p.name for p in reads.peers()},
        outbox=reads.outbox_stats(),
        inbox=reads.inbox_stats(),
        audit_size=reads.audit_state().size,
        checkpoint_size=latest.size if latest else 0,
        cosignatures=reads.cosignatures(latest.size) if latest else [],
        evidence=reads.evidence(),
    )


@dataclass(frozen=True, kw_only=True)
class Status:
    name: str
    node_id: bytes
    listen: Callable[[], str]  # known once the peer API is bound
    started: float
    store: Store
    run_db: Run
    clock: Clock
    deliveries: Deliveries
    witness: Witness

    async def report(self) -> dict[str, Any]:
        snap = await self.run_db(_snapshot, self.store)
        now = self.clock()
        peers = []
        for nid, name in snap.names.items():
            link = self.deliveries.link(nid)
            peers.append(
                {
                    "name": name,
                    "node_id": nid.hex(),
                    "link": link.link,
                    "in_flight": link.in_flight,
                    "queued": snap.outbox.per_peer.get(nid, 0),
                }
            )
        oldest = snap.outbox.oldest_undelivered
        return {
            "node": self.name,
            "node_id": self.node_id.hex(),
            "up": True,
            "listen": self.listen(),
            "uptime": round(now - self.started, 1),
            "peers": peers,
            "outbox": snap.outbox.by_status,
            "audit": {
                "size": snap.audit_size,
                "checkpoint_size": snap.checkpoint_size,
                "cosignatures": len(snap.cosignatures),
                "witnessing": self.witness.outcomes(),
            },
            "misbehaviour": [
                {
                    "peer": snap.names.get(e.node, e.node.hex()),
                    "kind": e.kind,
                    "detail": e.detail,
                    "at": e.at,
                }
                for e in snap.evidence
            ],
            "inbox": {"total": snap.inbox.total, "unread": snap.inbox.unread},
            "oldest_undelivered_age": round(now - oldest, 1) if oldest else None,
        }
