"""The storage seam: what the node reads and writes, as typed Protocols and row Structs.

Callers import from here and never from a backend: ``interface.py`` says what a store does,
``rows.py`` what it hands out, ``sqlite.py`` is the one implementation today (opened by the daemon
and by ``node/local.py``). See ``interface.py`` for units of work and how ``now`` is passed in.
"""

from node.storage.interface import Reader, Reads, Store, Unit
from node.storage.rows import (
    Accepted,
    AuditFilter,
    AuditRow,
    AuditState,
    AuditVerified,
    Cosignature,
    DueMessage,
    Evidence,
    InboxKey,
    InboxRow,
    InboxStats,
    KnownMessage,
    OutboxKey,
    OutboxRow,
    OutboxStats,
    PeerRecord,
    QueuedMessage,
    SenderUsage,
    SignedCheckpoint,
    StoredMessage,
    Witnessed,
)

__all__ = [
    "Accepted",
    "AuditFilter",
    "AuditRow",
    "AuditState",
    "AuditVerified",
    "Cosignature",
    "DueMessage",
    "Evidence",
    "InboxKey",
    "InboxRow",
    "InboxStats",
    "KnownMessage",
    "OutboxKey",
    "OutboxRow",
    "OutboxStats",
    "PeerRecord",
    "QueuedMessage",
    "Reader",
    "Reads",
    "SenderUsage",
    "SignedCheckpoint",
    "Store",
    "StoredMessage",
    "Unit",
    "Witnessed",
]
