"""A node's history at scale, written fast through the storage interface: the messages a busy
node received and sent, their deliveries, and the audit entries for them.

Shared by the read benchmark (bench/reads.py) and the tests that check operator reads use an
index (tests/unit/node/test_reads_at_scale.py): one unit of work per ``BATCH`` rows, the same
Unit calls the receiver and the sender make, so counters, triggers and flow events are those a
node would have. Message ids and times are derived from the row's number, so two fills of the
same size are the same history.
"""

from __future__ import annotations

import hashlib

import msgspec

from node.auditing import record
from node.storage import Accepted, QueuedMessage, Store

BATCH = 5_000
PRIORITIES = ("routine", "routine", "routine", "urgent", "flash")
TYPES = ("alert", "alert", "notice", "feedback")
START = 1_790_000_000.0  # the first row's time; one row a second after it


def peers(n: int = 3) -> list[bytes]:
    return [hashlib.sha256(f"peer {i}".encode()).digest() for i in range(n)]


def message_id(kind: str, i: int) -> bytes:
    return hashlib.sha256(f"{kind} {i}".encode()).digest()[:16]


def received(i: int, senders: list[bytes], kind: str = "in") -> Accepted:
    return Accepted(
        id=message_id(kind, i),
        sender=senders[i % len(senders)],
        type=TYPES[i % len(TYPES)],
        created=int(START) + i,
        expires=int(START) + i + 86400,
        content_hash=hashlib.sha256(f"{kind} {i}".encode()).digest(),
        envelope=b"e" * 300,
        priority=PRIORITIES[i % len(PRIORITIES)],
        tlp="GREEN",
    )


def queued(i: int) -> QueuedMessage:
    """What this node sent as its message number ``i``: made as a received one is."""
    m = received(i, [b""], "out")
    fields = {f: getattr(m, f) for f in QueuedMessage.__struct_fields__}
    return msgspec.convert(fields, QueuedMessage)


def fill(
    store: Store,
    messages: int,
    *,
    audit: int | None = None,
    pending_every: int = 100,
    first: int = 0,
) -> None:
    """``messages`` received (every third one read) and as many sent, each to one peer and
    delivered but for one in ``pending_every`` (left queued); ``audit`` entries (default: one per
    message received) appended. Rows numbered from ``first``, so fills can follow each other."""
    senders = peers()
    audit = messages if audit is None else audit
    for lo in range(first, first + max(messages, audit), BATCH):
        hi = lo + BATCH
        with store.unit(START + lo) as u:
            for i in range(lo, min(hi, first + messages)):
                item = received(i, senders)
                u.insert_inbox(item, receipt=b"r" * 64)
                if i % 3 == 0:
                    u.mark_read(item.sender, item.id)
                out = queued(i)
                peer = senders[i % len(senders)]
                u.enqueue(out, [peer])
                if i % pending_every:
                    u.mark_delivered(peer, [(out.id, b"r" * 64)])
            for i in range(lo, min(hi, first + audit)):
                record(u, "message.received", message_id=message_id("in", i).hex())
