"""Audit entries and the pure checks over a log of them (PROTOCOL.md 12).

An entry is a small JSON object saying who did what, when, to which message or peer, with which
outcome; never a message body or a key. Its exact bytes are a leaf of an RFC 9162 Merkle tree, and
the node signs checkpoints of that tree (C2SP tlog-checkpoint) that peers witness. Everything here
is pure: the node stores entries, this module says whether a stored log is the one that was signed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from protocol.checkpoint import Checkpoint
from protocol.decoding import Decoder
from protocol.errors import AuditError, ValidationError
from protocol.merkle import MerkleAccumulator, leaf_hash

# Every kind of event the log records (PROTOCOL.md 12.1).
KINDS = frozenset(
    {
        "node.initialised",
        "key.created",
        "key.passphrase_changed",
        "key.backup_written",
        "key.restored",
        "key.rotated",
        "key.revoked",
        "key.refused",
        "key.delivered",
        "peer.verified",
        "peer.introduced",
        "directory.imported",
        "directory.published",
        "card.exported",
        "peer.added",
        "peer.updated",
        "peer.removed",
        "peer.revoked",
        "peer.key_changed",
        "message.queued",
        "message.requeued",
        "message.delivered",
        "message.received",
        "message.rejected",
        "message.delivery_refused",
        "message.opened",
        "message.shown",
        "message.acknowledged",
        "message.retracted",
        "audit.exported",
        "checkpoint.published",
        "checkpoint.received",
        "checkpoint.inconsistent",
        "checkpoint.cosigned",
    }
)


class AuditEntry(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """One event. ``time`` is Unix milliseconds; ids and hashes are lowercase hex."""

    v: int = 1
    time: int
    actor: str  # "node", "cli:<user>", or "peer:<name>"
    kind: str
    message_id: str | None = None
    peer: str | None = None
    peer_id: str | None = None
    hashes: dict[str, str] | None = None
    outcome: str | None = None
    detail: str | None = None
    source: str | None = None


_ENC = msgspec.json.Encoder()
_DEC = Decoder[AuditEntry](AuditEntry, what="audit entry")


def encode_entry(entry: AuditEntry) -> bytes:
    if entry.kind not in KINDS:
        raise AuditError(f"unknown audit event kind '{entry.kind}'")
    return _ENC.encode(entry)


def decode_entry(data: bytes) -> AuditEntry:
    try:
        return _DEC.decode(data)
    except ValidationError as exc:
        raise AuditError(f"audit entry is not well formed ({exc.message})") from exc


def origin_of(node_id: bytes) -> str:
    """Checkpoint origin and note key name of a node's log (PROTOCOL.md 12.2)."""
    return f"borderlink.log/{node_id.hex()}"


@dataclass(frozen=True)
class VerifyReport:
    size: int
    root: bytes
    checkpoint_size: int


def verify_log(
    entries: Sequence[bytes],
    stored_roots: Sequence[bytes | None],
    checkpoints: Sequence[Checkpoint],
) -> VerifyReport:
    """Recompute the tree over ``entries`` and check it against what was recorded and signed.

    ``stored_roots[i]`` is the root the node recorded after appending entry i (a locator: it lets
    the report name the first damaged entry); ``checkpoints`` are signature-checked checkpoints of
    this log, any order. Raises AuditError naming the first bad entry index.
    """
    acc = MerkleAccumulator()
    by_size: dict[int, Checkpoint] = {}
    for cp in checkpoints:
        if by_size.setdefault(cp.size, cp).root_hash != cp.root_hash:
            raise AuditError(
                f"the signed checkpoint of size {cp.size} has two different roots: the log forked"
            )
    good_until = 0
    if by_size.get(0) is not None and by_size[0].root_hash != acc.root():
        raise AuditError("the signed checkpoint of the empty log has a wrong root")
    for i, entry in enumerate(entries):
        try:
            decode_entry(entry)
        except AuditError as exc:
            raise AuditError(f"audit entry {i} is damaged: not a valid entry") from exc
        acc.append(leaf_hash(entry))
        root = acc.root()
        if stored_roots[i] is not None and stored_roots[i] != root:
            raise AuditError(
                f"audit entry {i} is damaged: the tree no longer matches the root "
                "recorded when it was appended"
            )
        at = by_size.get(i + 1)
        if at is not None:
            if at.root_hash != root:
                raise AuditError(
                    f"audit log differs from the signed checkpoint of size {at.size}: "
                    f"the first damaged entry is at or after index {good_until}"
                )
            good_until = i + 1
    largest = max(by_size, default=0)
    if largest > len(entries):
        raise AuditError(
            f"audit log has {len(entries)} entries but a signed checkpoint has "
            f"{largest}: entries from index {len(entries)} on are missing"
        )
    return VerifyReport(len(entries), acc.root(), largest)
