"""This node's log as its witnesses see it: consistency proofs between signed sizes, and taking
in the cosignatures they send back (PROTOCOL.md 12.3).

A cosignature is stored only from a trusted peer, for a checkpoint this node signed, when it
verifies with the key in that peer's card and is dated between the checkpoint's signing and now
(give or take :data:`CLOCK_SKEW`); what is stored and served is our own spelling of the one line
that verified, never the caller's text. A witness cosigns each checkpoint once: its first stored
cosignature of a size stands. A valid line it posts for that size later (another timestamp) is
answered as valid and changes nothing: no write, no audit entry; the stored line posted again
(anyone can replay a published one) does not even cost a signature check. So the audit log and
the cosignature table grow by at most one entry per witness per checkpoint signed, whatever
witnesses post. Refusals are returned as a reason (the peer routes turn it into an HTTP answer).
Reads and writes storage through units; no HTTP.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from node.auditing import record
from node.peer_info import parsed_card
from node.runtime import Clock, Run, run_inline
from node.storage import Cosignature, Reads, SignedCheckpoint, Store
from protocol.audit import origin_of
from protocol.checkpoint import (
    COSIGNATURE_MAX_FUTURE,
    MAX_TREE_SIZE,
    CosignatureVerifier,
    cosignature_line,
    verify_cosignature,
)
from protocol.decoding import Decoder, describe_pattern
from protocol.errors import AuditError, ValidationError
from protocol.merkle import MerkleTree, leaf_hash

MAX_COSIGNATURE_BODY = 4096  # the JSON of one cosignature: a node id, a size, a line
NODE_ID_HEX = describe_pattern(r"^[0-9a-f]{64}\Z", "a node id: 64 lowercase hex digits")
# Seconds a witness's clock may differ from ours, either way: its cosignature may be dated this
# much before we signed the checkpoint, or this much after now (PROTOCOL.md 12.3).
CLOCK_SKEW = COSIGNATURE_MAX_FUTURE


class CosignatureIn(msgspec.Struct, forbid_unknown_fields=True):
    """As docs/peer-api.openapi.json declares it: a size outside 1..2^63 - 1 (no tree is larger,
    12.2) is refused while decoding, never handed to storage, whose integers stop there."""

    witness: Annotated[str, msgspec.Meta(pattern=NODE_ID_HEX)]
    size: Annotated[int, msgspec.Meta(ge=1, le=MAX_TREE_SIZE)]
    line: str


_COSIGNATURE = Decoder[CosignatureIn](CosignatureIn, what="cosignature request")


class Refused(msgspec.Struct, frozen=True):
    """Why a request was refused: a wire reason (PROTOCOL.md 11.5) and, for some, words."""

    reason: str
    message: str = ""


class Held(msgspec.Struct, frozen=True):
    """What the node holds for a cosignature request: its checkpoint of that size, when it
    signed it, and the witness's cosignature of it, if it has one already."""

    checkpoint: SignedCheckpoint
    signed_at: float
    cosigned: Cosignature | None


def misdated(timestamp: int, signed_at: float, now: float) -> str | None:
    """Why a cosignature dated ``timestamp`` cannot be for a checkpoint signed at ``signed_at``
    as of ``now`` (PROTOCOL.md 12.3), or None if it can: a witness cosigns a checkpoint after it
    was signed and before now, with :data:`CLOCK_SKEW` allowed either way."""
    if timestamp > now + CLOCK_SKEW:
        return f"the cosignature is dated {timestamp - int(now)} s in the future"
    if timestamp < signed_at - CLOCK_SKEW:
        return f"the cosignature is dated {int(signed_at) - timestamp} s before the checkpoint was signed"
    return None


class ProofCache:
    """One tree of this node's log, extended as checkpoints grow (each leaf hashed once); a
    proof for any signed size is then a lookup, O(log n). Without it every anonymous proof
    request re-hashed the whole log on the node's only database thread."""

    def __init__(self) -> None:
        self.tree = MerkleTree()

    def proof(self, reads: Reads, old: int, new: int) -> list[bytes]:
        """Runs on the database thread; ``new`` is at most the latest signed size."""
        if new > self.tree.size:
            for row in reads.audit_rows(self.tree.size, new):
                self.tree.append(leaf_hash(row.entry))
        return self.tree.consistency_proof(old, new)


class Cosigning:
    """``run_cpu`` runs the Ed25519 check of a cosignature, off the event loop; requests read
    one checkpoint by size (an indexed lookup), never the list of them."""

    def __init__(
        self, store: Store, run_db: Run, clock: Clock, *, run_cpu: Run = run_inline
    ) -> None:
        self.store = store
        self.run_db = run_db
        self.run_cpu = run_cpu
        self.clock = clock
        self.proofs = ProofCache()

    async def consistency(self, old: int, new: int) -> list[bytes] | Refused:
        """A proof between two sizes of the signed log: ``new`` at most the latest signed size.
        Any such size was signed once (or lies inside a signed tree), even if the checkpoint of
        that size has since been pruned, and a witness holding it must still get its proof."""
        latest = await self.run_db(self.store.latest_checkpoint)
        if not 0 < old <= new or latest is None or new > latest.size:
            return Refused(
                "malformed", "sizes must satisfy 0 < old <= new <= the latest signed size"
            )
        return await self.run_db(self.proofs.proof, self.store, old, new)

    async def accept(self, raw: bytes, *, peer: bytes | None = None) -> Refused | None:
        """Verify and store one cosignature (the JSON body of POST /v1/audit/cosignature).

        ``peer``: the node id the channel authenticated (mutual TLS); the cosignature must be
        that peer's. Once a witness's cosignature of a size is stored, nothing it posts for that
        size changes anything; the stored line again costs no signature check either."""
        try:
            got = _COSIGNATURE.decode(raw)
            witness = bytes.fromhex(got.witness)
        except (ValidationError, ValueError):
            return Refused("malformed", "expected JSON {witness, size, line}")
        if peer is not None and witness != peer:
            return Refused("channel_mismatch", "the cosignature is not by the peer calling")
        rec = await self.run_db(self.store.peer_by_id, witness)
        if rec is None or rec.status != "trusted":
            return Refused("unknown_sender")
        held = await self.run_db(self._held, got.size, witness)
        if held is None:
            return Refused("malformed", "no checkpoint of that size")
        signed = held.checkpoint
        verifier = CosignatureVerifier(origin_of(witness), parsed_card(rec.card).body.sign_key)
        try:
            sig = cosignature_line(signed.note, got.line)
        except AuditError as exc:
            return Refused("malformed", exc.message)
        if sig.name != verifier.name or sig.key_id != verifier.key_id:
            return Refused("bad_signature")
        if held.cosigned is not None and held.cosigned.line == sig.line():
            return None  # verified when it was stored: the same bytes verify the same way
        try:
            ts = await self.run_cpu(verify_cosignature, signed.note + sig.line(), verifier)
        except AuditError:
            return Refused("bad_signature")
        now = self.clock()
        why = misdated(ts, held.signed_at, now)
        if why is not None:
            return Refused("bad_signature", why)
        if held.cosigned is not None:
            return None  # valid, but its first cosignature of this size stands (12.3)
        cosig = Cosignature(witness, sig.line(), ts)
        await self.run_db(self._store, got.size, cosig, rec.name, now)
        return None

    def _held(self, size: int, witness: bytes) -> Held | None:
        """On the database thread: three indexed lookups, never a list of checkpoints."""
        checkpoint = self.store.checkpoint_at(size)
        signed_at = self.store.checkpoint_signed_at(size)
        if checkpoint is None or signed_at is None:
            return None
        return Held(checkpoint, signed_at, self.store.cosignature_by(size, witness))

    def _store(self, size: int, cosig: Cosignature, peer: str, now: float) -> None:
        with self.store.unit(now) as u:
            if not u.add_cosignature(size, cosig):
                return  # a concurrent request by that witness stored one first: it stands
            record(
                u,
                "checkpoint.cosigned",
                peer=peer,
                peer_id=cosig.witness.hex(),
                outcome=f"size {size}",
            )
