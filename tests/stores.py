"""Writing to a node's store from tests, the way the node does: one unit per change."""

from __future__ import annotations

import time

from node.auditing import record
from node.storage import Store


def audit(store: Store, kind: str, *, now: float | None = None, **fields: str | None) -> int:
    """Append one audit event in a unit of its own; returns its index."""
    with store.unit(time.time() if now is None else now) as u:
        return record(u, kind, **fields)  # type: ignore[arg-type]
