"""What the witness decides about a peer's new checkpoint (PROTOCOL.md 12.3), as pure functions.

No I/O, no clock, no storage: node/witness.py fetches the notes and proofs, passes them in, and
carries out the :data:`Verdict`. Both checkpoints given here have had their log signature checked
already, so a fork or a rollback is evidence against the log, not against whoever sent the bytes.
A consistency proof is not signed (anyone on the path of an http:// endpoint could alter it), so
the first bad proof only asks for the proof again; a second one is kept as evidence.
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

PROOF_ATTEMPTS = 2  # fetches of a consistency proof before a bad one counts against the log


@dataclass(frozen=True)
class Consistent:
    """The checkpoint is the one already held: nothing to store, nothing to cosign."""

    size: int


@dataclass(frozen=True)
class Cosign:
    """A consistent extension (or the first checkpoint seen): store it and cosign it."""


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


Verdict = Consistent | Cosign | RetryProof | Misbehaviour


def proof_needed(old: Checkpoint | None, new: Checkpoint) -> tuple[int, int] | None:
    """The (old, new) sizes of the consistency proof to fetch before deciding, if one is needed:
    only a larger tree than a non-empty one already held needs one."""
    if old is not None and old.size > 0 and new.size > old.size:
        return old.size, new.size
    return None


def decide(
    old: Checkpoint | None, new: Checkpoint, proof: Sequence[bytes], attempt: int
) -> Verdict:
    """What to do with ``new`` given ``old`` (None: nothing held yet), the ``proof`` fetched for
    :func:`proof_needed` (empty if none was) and which fetch of it this is (from 1)."""
    if old is not None and (new.origin, new.size, new.root_hash) == (
        old.origin,
        old.size,
        old.root_hash,
    ):
        return Consistent(new.size)
    try:
        check_extension(old if old is not None and old.size > 0 else None, new, proof)
    except BadConsistencyProof as exc:
        if attempt < PROOF_ATTEMPTS:
            return RetryProof(exc.message)
        shown = "".join(base64.b64encode(h).decode("ascii") + "\n" for h in proof)
        return Misbehaviour("badconsistencyproof", f"{exc.message}\nproof:\n{shown}")
    except Inconsistent as exc:  # rollback or fork: both are in notes the log signed
        return Misbehaviour(type(exc).__name__.lower(), exc.message)
    return Cosign()


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
