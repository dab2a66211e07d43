"""What the node does with its own audit log (PROTOCOL.md 12): sign checkpoints of it, list and
filter its entries, verify it end to end, prove an entry's inclusion, export it for an auditor.

Signing is the one write here: the ``checkpoint.published`` entry, the root it produces and the
signed checkpoint are one unit, so a checkpoint never covers an entry that was rolled back. The
daemon's periodic job, the admin API and node/local.py (node not running) all sign through
:func:`sign_checkpoint`. Everything else reads a snapshot and computes on the caller's thread (the
verification and proofs are O(n) hashing: the operator's thread in the node).

The running node checks its own log incrementally (:class:`BackgroundCheck`): what it verified is
stored (the verified prefix's size and right-edge peaks), and at start and before each checkpoint
only the entries appended since are recomputed, plus a bounded slice of the old ones, so the whole
log is re-checked about every ``[audit] full_check_interval``; ``borderlink audit verify`` stays
the full recomputation. Reads and writes storage through units; no HTTP; ``now`` and the clock
are passed in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import msgspec

from keys.card import Card, parse_card
from node.auditing import record
from node.peer_info import parsed_card
from node.peers import PeerKeys
from node.runtime import Clock, Run
from node.storage import (
    AuditFilter,
    AuditRow,
    AuditState,
    AuditVerified,
    Cosignature,
    PeerRecord,
    Reader,
    Reads,
    SignedCheckpoint,
    Store,
    Unit,
)
from protocol.audit import decode_entry, origin_of, verify_log
from protocol.audit_export import export_text
from protocol.checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    open_checkpoint,
    verify_cosignature,
)
from protocol.checkpoint import sign_checkpoint as sign_note
from protocol.errors import AuditError, UsageError
from protocol.identity import Identity, PublicIdentity
from protocol.merkle import MerkleAccumulator, MerkleTree, leaf_hash, root_from_leaf_hashes
from protocol.signednote import Verifier

# Entries about witnessing alone do not call for a new checkpoint: otherwise two nodes witnessing
# each other would extend each other's logs forever.
_WITNESSING = frozenset({"checkpoint.received", "checkpoint.cosigned", "checkpoint.published"})

# Signed checkpoints kept (PROTOCOL.md 12.2): at the 5 s signing interval, about 85 minutes of them.
# Older ones are pruned when a new one is signed, so what requests read stays bounded.
KEEP_CHECKPOINTS = 1024


# -- signing -------------------------------------------------------------------------------------


class Signed(msgspec.Struct, frozen=True):
    note: str  # the latest signed checkpoint (this node's signature only)
    size: int
    new: bool  # signed by this call; False: the latest one already covered the log


def sign_checkpoint(
    store: Store,
    identity: Identity,
    now: float,
    *,
    actor: str = "node",
    force: bool = False,
    full: bool = True,
    keep: int = KEEP_CHECKPOINTS,
) -> Signed:
    """Sign a checkpoint of the current log unless the latest one already covers it.

    Never signs a tree that does not extend the latest signed one (PROTOCOL.md 12.2). With
    ``full`` the whole tree is recomputed from the entries, O(n) (a node that is not running
    signs so); without, the roots recorded at append time are compared, O(log n): the running
    node has its :class:`BackgroundCheck` recompute the entries appended since it last did, off
    the writer's thread, before it signs. ``force`` signs even if only witnessing happened since.

    A new checkpoint prunes the older ones to the newest ``keep``, never the latest nor the
    newest one a witness cosigned (whose cosignatures are the log's best witnessed state).
    """
    with store.unit(now) as u:
        latest = u.latest_checkpoint()
        size = u.audit_state().size
        if latest is not None and latest.size == size:
            return Signed(latest.note, latest.size, False)
        if latest is not None and not force and _only_witnessing(u, latest.size):
            return Signed(latest.note, latest.size, False)
        if latest is not None:
            try:
                prefix = _prefix_root(u, latest.size, full)
            except AuditError:
                prefix = b""
            if size < latest.size or prefix != latest.root:
                raise AuditError(
                    f"refusing to sign: the audit log no longer extends the checkpoint of size "
                    f"{latest.size} signed before; run 'borderlink audit verify'"
                )
        # The publication is itself logged, then the checkpoint covers that entry too.
        record(u, "checkpoint.published", actor, outcome=f"size {size + 1}")
        size += 1
        root = _prefix_root(u, size, full)
        origin = origin_of(identity.node_id)
        note = sign_note(Checkpoint(origin, size, root), origin, identity.signing_key)
        u.add_checkpoint(SignedCheckpoint(size, root, note))
        u.prune_checkpoints(keep, u.cosigned_size())
        return Signed(note, size, True)


def _prefix_root(unit: Unit, size: int, full: bool) -> bytes:
    """Root of the first ``size`` entries as recorded at append time; with ``full``, also
    recomputed from the entries themselves, refusing when the two differ."""
    last = unit.audit_rows(size - 1, size)
    recorded = last[0].root if last else b""
    if full:
        leaves = [leaf_hash(r.entry) for r in unit.audit_rows(0, size)]
        if root_from_leaf_hashes(leaves) != recorded:
            raise AuditError(
                f"refusing to sign: the first {size} audit entries no longer give the root "
                "recorded when they were appended; run 'borderlink audit verify'"
            )
    return recorded


def _only_witnessing(reads: Reads, since: int) -> bool:
    return all(_kind(row.entry) in _WITNESSING for row in reads.audit_rows(since))


def _kind(entry: bytes) -> object:
    try:
        decoded = msgspec.json.decode(entry)
    except msgspec.DecodeError:
        return None
    return decoded.get("kind") if isinstance(decoded, dict) else None


def cosigned_note(reads: Reads) -> str | None:
    """The latest checkpoint with every cosignature line received for it appended."""
    latest = reads.latest_checkpoint()
    if latest is None:
        return None
    lines = [c.line for c in reads.cosignatures(latest.size)]
    return latest.note + "".join(ln if ln.endswith("\n") else ln + "\n" for ln in lines)


# -- listing -------------------------------------------------------------------------------------


_CHUNK = 1000  # entries read at once


def _rows_from(reads: Reads, start: int, only: AuditFilter, chunk: int) -> Iterator[AuditRow]:
    """The matching entries from ``start`` on, ``chunk`` at a time, each through an index."""
    while True:
        rows = reads.audit_find(start, chunk, only)
        yield from rows
        if len(rows) < chunk:
            return
        start = rows[-1].index + 1


def log_entries(
    reads: Reads,
    *,
    since_ms: float | None,
    kind: str | None,
    message_id: str | None,
    start: int = 0,
    limit: int | None = None,
) -> list[dict[str, object]]:
    """Entries oldest first as JSON objects with their ``index``, filtered: newer than
    ``since_ms`` (Unix ms), of ``kind`` (or a prefix ending in a dot), about ``message_id``;
    from index ``start`` on, at most ``limit`` of them (None: all)."""
    out: list[dict[str, object]] = []
    if limit is not None and limit <= 0:
        return out
    only = AuditFilter(
        kind=kind or None,
        message_id=message_id.lower() if message_id else None,
        since_ms=since_ms,
    )
    chunk = _CHUNK if limit is None else max(1, min(_CHUNK, limit))
    for row in _rows_from(reads, start, only, chunk):
        try:
            entry = msgspec.json.decode(row.entry, type=dict[str, object])
        except msgspec.DecodeError as exc:
            raise AuditError(f"audit entry {row.index} is damaged: not a valid entry") from exc
        entry["index"] = row.index
        out.append(entry)
        if limit is not None and len(out) >= limit:
            break  # before the next chunk is read
    return out


# -- verifying the local log ---------------------------------------------------------------------


class LogSnapshot(msgspec.Struct, frozen=True):
    """What verifying the log reads, read at once on the database thread."""

    checkpoints: list[SignedCheckpoint]
    rows: list[AuditRow]
    latest: SignedCheckpoint | None
    cosignatures: list[Cosignature]
    peers: list[PeerRecord]


class LogReport(msgspec.Struct, frozen=True):
    """``borderlink audit verify`` on this node's own log, in this order."""

    ok: bool
    entries: int
    checkpoints: int
    checkpoint_size: int
    root: str
    uncovered: int
    cosigned_by: list[str]


def log_snapshot(reads: Reads) -> LogSnapshot:
    latest = reads.latest_checkpoint()
    return LogSnapshot(
        checkpoints=reads.checkpoints(),
        rows=reads.audit_rows(),
        latest=latest,
        cosignatures=reads.cosignatures(latest.size) if latest is not None else [],
        peers=reads.peers(),
    )


def log_snapshot_of(reader: Reader) -> LogSnapshot:
    """:func:`log_snapshot` in one read transaction: a checkpoint signed meanwhile cannot make
    the rows read look shorter than it."""
    with reader.snapshot() as reads:
        return log_snapshot(reads)


def verify_snapshot(snapshot: LogSnapshot, me: PublicIdentity) -> LogReport:
    """Recompute the tree and check every entry, signed checkpoint and cosignature of the latest
    one against this node's key ``me``; raises AuditError naming the first damage."""
    origin = origin_of(me.node_id)
    verifier = Verifier(origin, me.sign_key)
    checkpoints = [open_checkpoint(c.note, [verifier]) for c in snapshot.checkpoints]
    for stored, cp in zip(snapshot.checkpoints, checkpoints, strict=True):
        if cp.size != stored.size or cp.root_hash != stored.root or cp.origin != origin:
            raise AuditError(
                f"stored checkpoint of size {stored.size} does not match its signed note"
            )
    rows = snapshot.rows
    report = verify_log([r.entry for r in rows], [r.root for r in rows], checkpoints)
    peers = {p.node_id: p for p in snapshot.peers}
    cosigned = []
    if snapshot.latest is not None:
        for cosig in snapshot.cosignatures:
            rec = peers.get(cosig.witness)
            if rec is None:
                continue
            key = parsed_card(rec.card).body.sign_key
            verify_cosignature(
                snapshot.latest.note + cosig.line,
                CosignatureVerifier(origin_of(cosig.witness), key),
            )
            cosigned.append(rec.name)
    return LogReport(
        ok=True,
        entries=report.size,
        checkpoints=len(checkpoints),
        checkpoint_size=report.checkpoint_size,
        root=report.root.hex(),
        uncovered=report.size - report.checkpoint_size,
        cosigned_by=cosigned,
    )


# -- the node's own check, extending what it verified before -----------------------------------

SLICE = 4096  # entries recomputed in one call on the reader's thread
SWEEP_MIN = 2048  # old entries re-checked in a round, at least
SWEEP_MAX = 50_000  # and at most (about 0.3 s of hashing on the reader's thread)
_DAMAGED = "the tree no longer matches the root recorded when it was appended"


class Checked(msgspec.Struct, frozen=True):
    """One step of the background check: how far it got, and whether it reached the log's end."""

    verified: AuditVerified
    caught_up: bool


def _extended(start: AuditState, rows: list[AuditRow], before: AuditRow | None) -> AuditState:
    """``start`` (a verified prefix's right edge) extended by ``rows``, the entries right after
    it, recomputed: the root they give must be the one recorded when the last was appended, and
    ``before``, the prefix's last row, must still carry the prefix's root (the two join up). On
    a difference each entry is compared in turn, to name the first damaged one."""
    acc = MerkleAccumulator.restore(start.size, list(start.peaks))
    if start.size and (before is None or before.root != acc.root()):
        raise AuditError(
            f"audit entry {start.size - 1} is damaged: the log no longer extends the "
            f"{start.size} entries verified before"
        )
    for row in rows:
        if row.index != acc.size:
            raise AuditError(f"audit entry {acc.size} is missing")
        acc.append(leaf_hash(row.entry))
    if rows and acc.root() != rows[-1].root:
        _first_damaged(start, rows)
    return AuditState(acc.size, list(acc.peaks))


def _first_damaged(start: AuditState, rows: list[AuditRow]) -> None:
    acc = MerkleAccumulator.restore(start.size, list(start.peaks))
    for row in rows:
        try:
            decode_entry(row.entry)
        except AuditError as exc:
            raise AuditError(f"audit entry {row.index} is damaged: not a valid entry") from exc
        acc.append(leaf_hash(row.entry))
        if acc.root() != row.root:
            raise AuditError(f"audit entry {row.index} is damaged: {_DAMAGED}")
    raise AuditError(f"audit entry {rows[-1].index} is damaged: {_DAMAGED}")


def _last(reads: Reads, state: AuditState) -> AuditRow | None:
    rows = reads.audit_rows(state.size - 1, state.size) if state.size else []
    return rows[0] if rows else None


def check_step(reader: Reader, verified: AuditVerified, sweep: int) -> Checked:
    """Verify up to :data:`SLICE` entries appended after the verified prefix, and re-check up to
    ``sweep`` entries of the prefix where the sweep stands (from 0 again once it reaches the
    prefix's end, where the two must agree). One snapshot of the log; raises AuditError naming
    the damage. O(SLICE + sweep), whatever the log's size: runs on the reader's thread."""
    with reader.snapshot() as r:
        tip, prefix = r.audit_state(), verified.prefix
        if tip.size < prefix.size:
            raise AuditError(
                f"the audit log has {tip.size} entries, fewer than the {prefix.size} verified "
                "before: entries were deleted"
            )
        rows = r.audit_rows(prefix.size, prefix.size + SLICE)
        grown = _extended(prefix, rows, _last(r, prefix))
        caught_up = grown.size == tip.size
        if caught_up and grown.peaks != tip.peaks:
            raise AuditError(
                "the audit log's append state no longer matches its entries: the next "
                "checkpoint would not cover them"
            )
        at = verified.sweep if verified.sweep.size <= grown.size else AuditState(0, [])
        if sweep > 0 and grown.size:
            end = min(at.size + sweep, grown.size)
            at = _extended(at, r.audit_rows(at.size, end), _last(r, at))
            if at.size == grown.size:
                if at.peaks != grown.peaks:
                    raise AuditError(
                        f"audit entries before {grown.size} are damaged: recomputed from the "
                        "first, they no longer give the tree verified before"
                    )
                at = AuditState(0, [])
    return Checked(AuditVerified(grown, at), caught_up)


def sweep_size(entries: int, interval: float, full_interval: float) -> int:
    """Old entries to re-check each round so the whole log is re-checked about every
    ``full_interval`` seconds when a round runs every ``interval``, within bounds."""
    share = -(-entries * interval // full_interval) if full_interval > 0 else entries
    return int(max(SWEEP_MIN, min(SWEEP_MAX, share)))


class BackgroundCheck:
    """The node's check of its own log at start and before each checkpoint it signs: it extends
    the stored verified prefix by the entries appended since (and re-checks a bounded slice of
    the old ones), reading through the reader on its own thread, so no delivery waits on it.
    Only the new position is written, one small unit. Damage found stays found: every later
    round refuses at once, until the operator has looked (``borderlink audit verify``) and the
    node restarts."""

    def __init__(
        self,
        reader: Reader,
        run_read: Run,
        store: Store,
        run_db: Run,
        clock: Clock,
        *,
        sweep: Callable[[int], int],
    ) -> None:
        self.reader, self.run_read = reader, run_read
        self.store, self.run_db = store, run_db
        self.clock = clock
        self.sweep = sweep
        self.damage: str | None = None
        self._stored: AuditVerified | None = None
        self._lock = asyncio.Lock()

    async def run(self) -> AuditVerified:
        """Catch up with the log; the verified position, stored. Raises AuditError on damage."""
        async with self._lock:
            if self.damage is not None:
                raise AuditError(self.damage)
            if self._stored is None:
                self._stored = await self.run_read(self.reader.audit_verified)
            verified, budget = self._stored, self.sweep(self._stored.prefix.size)
            while True:
                try:
                    step = await self.run_read(check_step, self.reader, verified, budget)
                except AuditError as exc:
                    self.damage = exc.message
                    raise
                verified, budget = step.verified, 0
                if step.caught_up:
                    break
            if verified != self._stored:
                await self.run_db(_store_verified, self.store, verified, self.clock())
                self._stored = verified
            return verified


def _store_verified(store: Store, verified: AuditVerified, now: float) -> None:
    with store.unit(now) as u:
        u.set_audit_verified(verified)


# -- proofs and exports --------------------------------------------------------------------------


class Covered(msgspec.Struct, frozen=True):
    """The latest signed checkpoint and the entries it covers."""

    checkpoint: SignedCheckpoint
    rows: list[AuditRow]


class Proof(msgspec.Struct, frozen=True):
    """``borderlink audit prove``, in this order (hashes in hex)."""

    index: int
    size: int
    leaf_hash: str
    proof: list[str]
    checkpoint: str


def covered(reads: Reads, index: int | None = None) -> Covered:
    """The entries of the latest checkpoint; with ``index``, refuse one it does not cover."""
    latest = reads.latest_checkpoint()
    if latest is None or (index is not None and not 0 <= index < latest.size):
        what = "the log" if index is None else f"entry {index}"
        raise UsageError(
            f"{what} is not covered by a signed checkpoint yet",
            hint="run 'borderlink audit checkpoint' first",
        )
    return Covered(latest, reads.audit_rows(0, latest.size))


def prove(log: Covered, index: int) -> Proof:
    leaves = [leaf_hash(r.entry) for r in log.rows]
    size = log.checkpoint.size
    proof = MerkleTree(leaves).inclusion_proof(index, size)
    return Proof(index, size, leaves[index].hex(), [h.hex() for h in proof], log.checkpoint.note)


class Exported(msgspec.Struct, frozen=True):
    size: int  # entries in the export: the size of the checkpoint it carries
    text: str  # the export file (protocol/audit_export.py)


def export_snapshot(reads: Reads) -> tuple[Covered, str]:
    """The latest checkpoint's entries and its note with cosignatures, read together."""
    log = covered(reads)
    return log, cosigned_note(reads) or log.checkpoint.note


def export(log: Covered, note: str, card: Card) -> Exported:
    text = export_text(card.armored(), note, [(r.index, r.entry) for r in log.rows])
    return Exported(log.checkpoint.size, text)


def exported(store: Store, *, size: int, destination: str, actor: str, now: float) -> None:
    with store.unit(now) as u:
        record(u, "audit.exported", actor, outcome=f"size {size}", detail=destination)


def export_signer(reads: Reads, own: Card, card_text: str) -> PeerKeys:
    """Whose log an export holds, if this node trusts its card: its own, or a peer's with the very
    key the export's card carries. Anything else is refused: a valid signature by an unknown key
    proves nothing."""
    card = parse_card(card_text, now=None)
    if card.identity.node_id != own.identity.node_id:
        rec = reads.peer_by_id(card.identity.node_id)
        if rec is None or parsed_card(rec.card).identity != card.identity:
            raise AuditError(
                f"the export is from {card.name}, whose card this home does not trust",
                hint="add the node's card with 'borderlink peers add' first",
            )
    return PeerKeys(card.name, card.identity.sign_key, card.identity.enc_key, card.identity.origin)
