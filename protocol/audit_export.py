"""The audit export file (PROTOCOL.md 12.4): a log's entries, its signed checkpoint and one inclusion
proof per entry, so an auditor in another unit can check the log offline, with no node.

Pure: building the file from entries the caller read, and parsing and verifying one given the
identity the caller already trusts for the log (which card is trusted is the caller's decision, made
against its own peers). A file from outside is checked for shape before anything in it is used.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import msgspec

from protocol.audit import decode_entry, origin_of
from protocol.checkpoint import open_checkpoint
from protocol.decoding import convert, decode_json
from protocol.errors import AuditError, BorderlinkError, ValidationError
from protocol.identity import PublicIdentity
from protocol.merkle import MerkleTree, leaf_hash, root_from_leaf_hashes, verify_inclusion
from protocol.signednote import Verifier

EXPORT_FORMAT = "borderlink-audit-export"


class ExportEntry(msgspec.Struct):
    index: int
    entry: bytes  # base64 in the file
    proof: list[bytes]


class AuditExport(msgspec.Struct):
    """The shape of an export file, checked before anything in it is used."""

    format: str
    card: str
    checkpoint: str
    entries: list[ExportEntry]


class ExportReport(msgspec.Struct, frozen=True):
    entries: int
    checkpoint_size: int
    root: bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def export_text(card: str, checkpoint: str, entries: Sequence[tuple[int, bytes]]) -> str:
    """The export file for ``entries`` ((index, exact entry bytes), all the checkpoint covers):
    ``card`` is the log's armored card, ``checkpoint`` its signed note, cosignatures included."""
    size = len(entries)
    tree = MerkleTree(leaf_hash(data) for _, data in entries)
    doc = {
        "format": EXPORT_FORMAT,
        "card": card,
        "checkpoint": checkpoint,
        "entries": [
            {
                "index": index,
                "entry": _b64(data),
                "proof": [_b64(h) for h in tree.inclusion_proof(index, size)],
            }
            for index, data in entries
        ],
    }
    return json.dumps(doc, indent=1) + "\n"


def read_export(data: bytes, name: str) -> AuditExport:
    """Parse an export file's bytes; ``name`` (its path) is how errors refer to it."""
    try:
        doc = decode_json(data, what="the file")
    except ValidationError as exc:
        raise BorderlinkError(f"cannot read audit export {name}: {exc.message}") from exc
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise AuditError(f"{name} is not a borderlink audit export")
    try:
        return convert(doc, AuditExport, what="the export")
    except ValidationError as exc:
        raise AuditError(f"{name} is not a well-formed audit export: {exc.message}") from exc


def verify_export(export: AuditExport, log: PublicIdentity) -> ExportReport:
    """Check the checkpoint's signature by ``log`` (the identity the caller trusts for the card in
    the export), that every entry it covers is there, in order, undamaged, and makes its root.
    Raises AuditError naming the first problem."""
    cp = open_checkpoint(export.checkpoint, [Verifier(origin_of(log.node_id), log.sign_key)])
    entries = export.entries
    if len(entries) > cp.size:
        raise AuditError(f"export has entries beyond the signed checkpoint (size {cp.size})")
    for expected, e in enumerate(entries):
        if e.index != expected:
            raise AuditError(f"audit entry {expected} is missing from the export (or out of order)")
    if len(entries) < cp.size:
        raise AuditError(f"audit entry {len(entries)} is missing from the export")
    for e in entries:
        try:
            decode_entry(e.entry)
            verify_inclusion(leaf_hash(e.entry), e.index, cp.size, e.proof, cp.root_hash)
        except AuditError as exc:
            raise AuditError(f"audit entry {e.index} is damaged: {exc.message}") from exc
    if root_from_leaf_hashes([leaf_hash(e.entry) for e in entries]) != cp.root_hash:
        raise AuditError("the exported entries do not make the signed root")
    return ExportReport(len(entries), cp.size, cp.root_hash)
