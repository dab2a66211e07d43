"""Writing to a node's store from tests, the way the node does: one unit per change."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from keys.trust import PeerRecord
from node.auditing import record
from node.storage import Store


def audit(store: Store, kind: str, *, now: float | None = None, **fields: str | None) -> int:
    """Append one audit event in a unit of its own; returns its index."""
    with store.unit(time.time() if now is None else now) as u:
        return record(u, kind, **fields)  # type: ignore[arg-type]


@contextmanager
def peered(path: Path, *peers: PeerRecord, now: float) -> Iterator[Store]:
    """A new store at ``path`` holding ``peers``, closed afterwards."""
    from node.storage.sqlite import open_store

    store = open_store(path)
    with store.unit(now) as u:
        for peer in peers:
            u.put_peer(peer)
    try:
        yield store
    finally:
        store.close()
