"""What the witness decides about a peer's new checkpoint (PROTOCOL.md 12.3), as pure functions.

No I/O, no clock, no storage: node/witness.py fetches the notes and proofs, passes them in, and
carries out the :data:`Verdict`. Both checkpoints given here have had their log signature checked
already, so a fork is evidence against the log, not against whoever sent the bytes.

A smaller checkpoint than the one held is not evidence by itself: anyone (a cache, a proxy, an
attacker) can replay an old note the log really signed. It is *stale* when a consistency proof
from its size to the held one shows it is a prefix; only when the log cannot show that is it a
``rollback``. A consistency proof is not signed (anyone on the path of an http:// endpoint could
alter it), so the first bad or refused proof only asks for the proof again; a second one is kept
as evidence. A refusal counts like a bad proof only when it is the log's own (HTTP 400): the log
can prove any size up to its latest signed one, so it never needs to refuse a size it signed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from protocol.checkpoint import BadConsistencyProof, Checkpoint, Inconsistent, check_extension
from protocol.decoding import Decoder
from protocol.errors import AuditError, ValidationError
from protocol.merkle import InvalidProof, verify_consistency

PROOF_ATTEMPTS = 2  # fetches of a consistency proof before a bad one counts against the log
REFUSED = 400  # the status of the log's own refusal of a proof (``malformed``, PROTOCOL.md 12.3)


@dataclass(frozen=True)
class NoProof:
    """The log answered a request for a consistency proof with this HTTP status instead."""

    status: int


@dataclass(frozen=True)
class Consistent:
    """The checkpoint is the one already held: nothing to store, nothing to cosign."""

    size: int


@dataclass(frozen=True)
class Cosign:
    """A consistent extension (or the first checkpoint seen): store it and cosign it."""


@dataclass(frozen=True)
class Stale:
    """An older checkpoint of the log, a prefix of the one held (a replay, or a lagging cache):
    not evidence, and nothing to store or cosign."""

    size: int
    held: int

    @property
    def outcome(self) -> str:
        return f"stale checkpoint (size {self.size}, holding {self.held})"


@dataclass(frozen=True)
class Undecided:
    """Nothing can be decided this round (the proof was not given, for a reason that may
    pass); ``outcome`` says why."""

    outcome: str


@dataclass(frozen=True)
class RetryProof:
    """The proof failed, but it is unsigned: fetch it once more before blaming the log."""

    detail: str


@dataclass(frozen=True)
class Misbehaviour:
    """The two signed notes contradict each other: keep both as evidence of ``kind``."""

    kind: str  # rollback | fork | originmismatch | badconsistencyproof
    detail: str  # first line: what happened; for a bad proof, then the proof itself

    @property
    def summary(self) -> str:
        return self.detail.split("\n", 1)[0]


Verdict = Consistent | Cosign | Stale | Undecided | RetryProof | Misbehaviour


def proof_needed(old: Checkpoint | None, new: Checkpoint) -> tuple[int, int] | None:
    """The (smaller, larger) sizes of the consistency proof to fetch before deciding, if one is
    needed: between a non-empty tree held and a larger one (an extension?) or a smaller
    non-empty one (a prefix?) of the same log."""
    if old is None or new.origin != old.origin or 0 in (old.size, new.size):
        return None
    if new.size > old.size:
        return old.size, new.size
    if new.size < old.size:
        return new.size, old.size
    return None


def decide(
    old: Checkpoint | None, new: Checkpoint, proof: Sequence[bytes] | NoProof, attempt: int
) -> Verdict:
    """What to do with ``new`` given ``old`` (None: nothing held yet), the answer to the proof
    request of :func:`proof_needed` (empty if none was made) and which fetch of it this is (from
    1)."""
    if old is not None and (new.origin, new.size, new.root_hash) == (
        old.origin,
        old.size,
        old.root_hash,
    ):
        return Consistent(new.size)
    held = old if old is not None and old.size > 0 else None
    if held is not None and new.origin == held.origin and new.size < held.size:
        return _smaller(held, new, proof, attempt)
    if isinstance(proof, NoProof):
        if proof.status != REFUSED:
            return Undecided(f"no consistency proof (HTTP {proof.status})")
        what = f"log {new.origin} gives no proof that size {new.size} extends its size "
        return _failed("badconsistencyproof", f"{what}{old.size if old else 0}", [], attempt)
    try:
        check_extension(held, new, proof)
    except BadConsistencyProof as exc:
        return _failed("badconsistencyproof", exc.message, proof, attempt)
    except Inconsistent as exc:  # fork or another log: both are in notes the log signed
        return Misbehaviour(type(exc).__name__.lower(), exc.message)
    return Cosign()


def _smaller(
    held: Checkpoint, new: Checkpoint, proof: Sequence[bytes] | NoProof, attempt: int
) -> Verdict:
    """``new`` is smaller than ``held``: stale if the proof shows it is a prefix of ``held``."""
    went_back = f"log {new.origin} went back from size {held.size} to {new.size}"
    if new.size == 0:  # the empty tree is a prefix of every tree
        return Stale(new.size, held.size)
    if isinstance(proof, NoProof):
        if proof.status != REFUSED:
            return Undecided(
                f"{Stale(new.size, held.size).outcome}, no consistency proof (HTTP {proof.status})"
            )
        return _failed("rollback", f"{went_back} and gives no proof it is a prefix", [], attempt)
    try:
        verify_consistency(new.size, held.size, new.root_hash, held.root_hash, proof)
    except InvalidProof as exc:
        return _failed("rollback", f"{went_back}, not a prefix: {exc.message}", proof, attempt)
    return Stale(new.size, held.size)


def _failed(kind: str, detail: str, proof: Sequence[bytes], attempt: int) -> Verdict:
    """A proof that did not link the two notes: asked again, then kept with the evidence."""
    if attempt < PROOF_ATTEMPTS:
        return RetryProof(detail)
    shown = "".join(base64.b64encode(h).decode("ascii") + "\n" for h in proof)
    return Misbehaviour(kind, f"{detail}\nproof:\n{shown}")


class _ProofBody(msgspec.Struct):
    proof: list[str]


_PROOF = Decoder[_ProofBody](_ProofBody, what="consistency proof")


def read_proof(raw: bytes) -> list[bytes]:
    """The hashes of a consistency proof answer (``{"proof": [base64, ...]}``)."""
    try:
        got = _PROOF.decode(raw)
        return [base64.b64decode(p, validate=True) for p in got.proof]
    except ValidationError as exc:
        raise AuditError(f"consistency proof is not well formed ({exc.message})") from exc
    except binascii.Error as exc:
        raise AuditError("consistency proof holds a hash that is not base64") from exc
