"""This node's log as its witnesses see it: consistency proofs between signed sizes, and taking
in the cosignatures they send back (PROTOCOL.md 12.3).

A cosignature is stored only from a trusted peer, for a checkpoint this node signed, when it
verifies with the key in that peer's card; what is stored and served is our own spelling of the
one line that verified, never the caller's text. The same cosignature posted again (anyone can
replay a published one) is a no-op: no signature check, no write, no audit entry. Refusals are returned as a reason (the peer
routes turn it into an HTTP answer). Reads and writes storage through units; no HTTP.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from node.auditing import record
from node.peer_info import parsed_card
from node.runtime import Clock, Run, run_inline
from node.storage import Cosignature, Reads, Store
from protocol.audit import origin_of
from protocol.checkpoint import (
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
        that peer's. The same cosignature again (a replay of a published one) changes nothing
        and costs no signature check."""
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
        signed = await self.run_db(self.store.checkpoint_at, got.size)
        if signed is None:
            return Refused("malformed", "no checkpoint of that size")
        verifier = CosignatureVerifier(origin_of(witness), parsed_card(rec.card).body.sign_key)
        try:
            sig = cosignature_line(signed.note, got.line)
        except AuditError as exc:
            return Refused("malformed", exc.message)
        if sig.name != verifier.name or sig.key_id != verifier.key_id:
            return Refused("bad_signature")
        if await self.run_db(self._stored, got.size, witness, sig.line()):
            return None  # verified when it was stored: the same bytes verify the same way
        now = self.clock()
        try:
            ts = await self.run_cpu(
                verify_cosignature, signed.note + sig.line(), verifier, now=int(now)
            )
        except AuditError:
            return Refused("bad_signature")
        cosig = Cosignature(witness, sig.line(), ts)
        await self.run_db(self._store, got.size, cosig, rec.name, now)
        return None

    def _stored(self, size: int, witness: bytes, line: str) -> bool:
        return any(c.witness == witness and c.line == line for c in self.store.cosignatures(size))

    def _store(self, size: int, cosig: Cosignature, peer: str, now: float) -> None:
        with self.store.unit(now) as u:
            if any(c == cosig for c in u.cosignatures(size)):
                return  # a concurrent request stored the same one first
            record(
                u,
                "checkpoint.cosigned",
                peer=peer,
                peer_id=cosig.witness.hex(),
                outcome=f"size {size}",
            )
            u.add_cosignature(size, cosig)
