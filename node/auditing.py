"""Building audit entries inside a unit of work: one call per event, timed at the unit's ``now``.

This is the one place an :class:`protocol.audit.AuditEntry` gets its time, so no event reads a
clock of its own and every entry of a unit carries the same instant as the change it records.
"""

from __future__ import annotations

from node.storage.interface import Unit
from protocol.audit import AuditEntry


def record(
    unit: Unit,
    kind: str,
    actor: str = "node",
    *,
    message_id: str | None = None,
    peer: str | None = None,
    peer_id: str | None = None,
    hashes: dict[str, str] | None = None,
    outcome: str | None = None,
    detail: str | None = None,
    source: str | None = None,
) -> int:
    """Append one event (PROTOCOL.md 12.1) to the audit log in ``unit``; returns its index."""
    return unit.append_audit(
        AuditEntry(
            time=int(unit.now * 1000),
            actor=actor,
            kind=kind,
            message_id=message_id,
            peer=peer,
            peer_id=peer_id,
            hashes=hashes,
            outcome=outcome,
            detail=detail,
            source=source,
        )
    )
