"""Appending to the audit tree in O(log n), for any backend: the right-edge peaks are the state.

Pure (no storage): a backend keeps an :class:`AuditState` beside its entries and calls
:func:`appended` inside the unit that stores the entry, so the entry, the root recorded for it and
the new state commit together (PROTOCOL.md 12.1).
"""

from __future__ import annotations

from node.storage.rows import AuditRow, AuditState
from protocol.audit import AuditEntry, encode_entry
from protocol.merkle import MerkleAccumulator, leaf_hash


def appended(state: AuditState, entry: AuditEntry) -> tuple[AuditRow, AuditState]:
    """The row to store for ``entry`` and the tree's state after it."""
    data = encode_entry(entry)
    acc = MerkleAccumulator.restore(state.size, list(state.peaks))
    index = acc.size
    acc.append(leaf_hash(data))
    return AuditRow(index, data, acc.root()), AuditState(acc.size, list(acc.peaks))
