"""Witnessing peers' audit logs (PROTOCOL.md 12.3).

About every ``witness_interval`` (jittered, :meth:`Witness.next_delay`) this node fetches each
trusted peer's latest signed checkpoint, checks the signature with the key from the peer's card,
and compares it with the newest checkpoint it kept from that peer (the decision is
node/witness_rules.py): another root at the same size (fork) is misbehaviour, kept with both
signed notes as evidence. A smaller tree is checked with a consistency proof from its size to the
held one: a prefix is only stale (an old note replayed), anything else a rollback. A consistency
proof is not signed, so one that fails is fetched once more, and only a second failure is kept as
evidence, with the proof. A consistent extension is stored and cosigned, and the cosignature is
sent back to the peer, so a node that later shows anyone a different history contradicts what
its witnesses signed.

Talks HTTP only through a :class:`node.peer_client.AuditClient` (which caps what it reads), and
reads and writes storage through units on the database thread; the time comes from an injected
clock.
"""

from __future__ import annotations

import random

import msgspec
import structlog

from node.auditing import record
from node.peer_client import AnswerTooLarge, AuditClient, DeliveryFailed
from node.peer_info import PeerInfo
from node.runtime import Clock, Run, wall_clock
from node.storage import Evidence, Store, Witnessed
from node.witness_rules import (
    PROOF_ATTEMPTS,
    Consistent,
    Misbehaviour,
    NoProof,
    RetryProof,
    Stale,
    Undecided,
    Verdict,
    decide,
    proof_needed,
    read_proof,
)
from protocol.audit import origin_of
from protocol.checkpoint import Checkpoint, checkpoint_of, cosign, log_signed, open_checkpoint
from protocol.errors import AuditError
from protocol.identity import Identity
from protocol.signednote import Verifier

log = structlog.get_logger("borderlink.witness")

JITTER = 0.2  # each round waits the interval times U(1 - JITTER, 1 + JITTER)


class CosignatureOut(msgspec.Struct):
    """The body of POST /v1/audit/cosignature (PROTOCOL.md 12.3)."""

    witness: str  # this node's id, hex
    size: int
    line: str


class Witness:
    def __init__(
        self,
        identity: Identity,
        store: Store,
        run_db: Run,
        client: AuditClient,
        clock: Clock = wall_clock,
        rng: random.Random | None = None,
    ) -> None:
        self.identity = identity
        self.store = store
        self.run_db = run_db
        self.client = client
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._last: dict[str, str] = {}  # peer name -> last outcome, for status

    def next_delay(self, interval: float) -> float:
        """Seconds to wait before the next round: ``interval`` give or take ``JITTER``, so
        nodes that started together do not all witness (and call) each other in step."""
        return interval * self.rng.uniform(1 - JITTER, 1 + JITTER)

    def outcomes(self) -> dict[str, str]:
        """Peer name -> what the last round found there, in words (for status)."""
        return dict(self._last)

    async def round(self) -> None:
        """Check every trusted peer that has an endpoint; one peer's failure is its outcome."""
        peers = [p for p in await self.run_db(self.store.peers) if p.status == "trusted"]
        # A peer removed, blocked or left without an endpoint since is no longer witnessed:
        # status stops showing what an old round found there.
        kept = {p.name for p in peers if PeerInfo.of(p).endpoint}
        self._last = {name: outcome for name, outcome in self._last.items() if name in kept}
        for rec in peers:
            info = PeerInfo.of(rec)
            if not info.endpoint:
                continue
            try:
                self._last[info.name] = await self.check(info)
            except DeliveryFailed as exc:
                self._last[info.name] = f"unreachable: {exc.message}"
            except AuditError as exc:
                self._last[info.name] = f"bad answer: {exc.message}"
                log.warning("witness.bad_answer", peer=info.name, detail=exc.message)

    async def check(self, peer: PeerInfo) -> str:
        """Witness ``peer``'s log once; the outcome in words. Raises :class:`AuditError` for an
        answer that is no valid checkpoint or proof (or too large), :class:`DeliveryFailed` if
        there was no answer."""
        try:
            answer = await self.client.checkpoint(peer)
        except AnswerTooLarge as exc:
            raise AuditError(exc.message) from exc
        if answer.status != 200:
            return f"no checkpoint (HTTP {answer.status})"
        try:
            note = answer.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AuditError("checkpoint is not UTF-8") from exc
        origin = origin_of(peer.node_id)
        verifier = Verifier(origin, peer.identity.sign_key)
        new = open_checkpoint(note, [verifier])
        if new.origin != origin:
            raise AuditError(f"checkpoint names log {new.origin}, not {origin}")
        text, signed = log_signed(note, verifier)
        held = await self.run_db(self.store.witnessed, peer.node_id)
        old = checkpoint_of(held.note) if held is not None else None
        verdict: Verdict = Consistent(new.size)
        for attempt in range(1, PROOF_ATTEMPTS + 1):
            sizes = proof_needed(old, new)
            proof = [] if sizes is None else await self._proof(peer, *sizes)
            verdict = decide(old, new, proof, attempt)
            if not isinstance(verdict, RetryProof):
                break
            # The proof is unsigned: a proxy or anyone on the path of an http:// endpoint
            # could have altered it. Ask once more before blaming the log (PROTOCOL.md 12.3).
            log.warning("witness.bad_proof_retry", peer=peer.name, detail=verdict.detail)
        if isinstance(verdict, Consistent):
            return f"consistent at size {verdict.size}"
        if isinstance(verdict, Stale | Undecided):
            if isinstance(verdict, Stale):
                log.warning("witness.stale", peer=peer.name, size=verdict.size, held=verdict.held)
            return verdict.outcome
        if isinstance(verdict, Misbehaviour):
            return await self._misbehaviour(peer, verdict, held, signed)
        await self.run_db(self._keep, peer, new, signed, self.clock())
        await self._cosign(peer, new, text)
        return f"cosigned size {new.size}"

    async def _proof(self, peer: PeerInfo, old: int, new: int) -> list[bytes] | NoProof:
        """The log's consistency proof from ``old`` to ``new``, or the status it answered."""
        try:
            answer = await self.client.consistency(peer, old, new)
        except AnswerTooLarge as exc:
            raise AuditError(exc.message) from exc
        if answer.status != 200:
            return NoProof(answer.status)
        return read_proof(answer.body)

    def _keep(self, peer: PeerInfo, cp: Checkpoint, signed: str, now: float) -> None:
        """On the database thread: the newest consistent checkpoint of ``peer``, and its entry."""
        with self.store.unit(now) as u:
            u.put_witnessed(Witnessed(peer.node_id, cp.size, cp.root_hash, signed))
            record(
                u,
                "checkpoint.received",
                peer=peer.name,
                peer_id=peer.node_id.hex(),
                outcome=f"size {cp.size}",
                hashes={"root": cp.root_hash.hex()},
            )

    async def _misbehaviour(
        self, peer: PeerInfo, found: Misbehaviour, held: Witnessed | None, signed: str
    ) -> str:
        """Keep the evidence (once per offending note), log it, and say so in the status."""
        old_note = held.note if held is not None else None
        if await self.run_db(self._evidence, peer, found, old_note, signed, self.clock()):
            log.error("witness.misbehaviour", peer=peer.name, kind=found.kind, detail=found.detail)
        return f"MISBEHAVIOUR: {found.summary}"

    def _evidence(
        self,
        peer: PeerInfo,
        found: Misbehaviour,
        old_note: str | None,
        new_note: str,
        now: float,
    ) -> bool:
        """On the database thread: True if this offending note was not kept before."""
        with self.store.unit(now) as u:
            evidence = Evidence(
                node=peer.node_id,
                kind=found.kind,
                old_note=old_note,
                new_note=new_note,
                detail=found.detail,
                at=u.now,
            )
            if not u.add_evidence(evidence):
                return False
            record(
                u,
                "checkpoint.inconsistent",
                peer=peer.name,
                peer_id=peer.node_id.hex(),
                outcome=found.kind,
                detail=found.detail,
            )
            return True

    async def _cosign(self, peer: PeerInfo, cp: Checkpoint, text: str) -> None:
        me = self.identity
        line = cosign(text, origin_of(me.node_id), me.signing_key, int(self.clock()))
        payload = msgspec.json.encode(CosignatureOut(me.node_id.hex(), cp.size, line))
        try:
            answer = await self.client.post_cosignature(peer, payload)
        except AnswerTooLarge as exc:
            raise AuditError(exc.message) from exc
        if answer.status != 200:
            log.warning("witness.cosignature_refused", peer=peer.name, status=answer.status)
