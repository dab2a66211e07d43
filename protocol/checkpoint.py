"""C2SP checkpoints (https://c2sp.org/tlog-checkpoint), Ed25519 cosignatures
(https://c2sp.org/tlog-cosignature) and the witness's decision whether a new checkpoint may replace
the one it holds. See AUDIT-FORMATS.md sections 3 to 5 for the exact bytes.

Parsing is stricter than the spec requires, since every checkpoint we read is one our own nodes
wrote: the origin must also be a valid note key name (no spaces, no '+', no control characters),
the size is canonical decimal below 2^63 (it is stored in SQLite), the root hash is canonical
base64 of 32 bytes, and the empty tree must carry SHA-256("") as its root.

Errors (all ``AuditError``, see protocol/errors.py):

    AuditError
    ├── MalformedCheckpoint     note text is not a checkpoint
    └── Inconsistent            the new checkpoint cannot replace the old one
        ├── OriginMismatch      it is for another log
        ├── Rollback            smaller tree than one already seen: truncation or a stale replay
        ├── Fork                same size, different root: two signed views, proof of misbehaviour
        └── BadConsistencyProof the proof does not show the new tree extends the old one

``check_extension`` does not check signatures: callers verify both checkpoints (``open_checkpoint``)
first, so that a Fork is evidence against the log rather than against whoever sent the bytes.

The node never splits a signed note by hand: ``log_signed`` keeps the part a witness stores (the
text and the log's own signature line), ``cosignature_line`` takes the one line a witness sends
back, ``checkpoint_of`` / ``checkpoint_size`` read a note this node already trusts.
"""

from __future__ import annotations

import re
from base64 import b64encode
from collections.abc import Iterable, Sequence

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import AuditError
from protocol.merkle import EMPTY_ROOT, HASH_SIZE, InvalidProof, verify_consistency
from protocol.signednote import (
    ALG_COSIGNATURE_V1,
    BadNoteSignature,
    BadVerifierKey,
    NoteVerifier,
    Signature,
    Verifier,
    check_text,
    decode_base64,
    is_valid_name,
    key_id,
    parse_note,
    public_key_bytes,
    sign_note,
    verify_note,
)

MAX_TREE_SIZE = 2**63 - 1
MAX_TIMESTAMP = 2**63 - 1  # tlog-cosignature: the u64 timestamp MUST NOT exceed 2^63 - 1
COSIGNATURE_HEADER = "cosignature/v1\n"  # domain separation for witness signatures
COSIGNATURE_MAX_FUTURE = 300  # seconds a cosignature may be ahead of our clock, by default
MAX_COSIGNATURE_LINE = 512  # an Ed25519 cosignature line is about 190 bytes
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class MalformedCheckpoint(AuditError):
    """Note text that is not a well-formed checkpoint."""


class Inconsistent(AuditError):
    """A new checkpoint cannot replace the one already held."""


class OriginMismatch(Inconsistent):
    pass


class Rollback(Inconsistent):
    pass


class Fork(Inconsistent):
    pass


class BadConsistencyProof(Inconsistent):
    pass


class Checkpoint(msgspec.Struct, frozen=True):
    """A signed tree head: which log, how many leaves, and the RFC 9162 root hash over them.

    ``extensions`` are the optional opaque lines after the root hash; they are carried so a parsed
    checkpoint formats back to the same bytes, but nothing here gives them meaning.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not is_valid_name(self.origin):
            raise MalformedCheckpoint(f"checkpoint origin {self.origin!r} is not a valid key name")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise MalformedCheckpoint(f"checkpoint tree size {self.size} is out of range")
        if len(self.root_hash) != HASH_SIZE:
            raise MalformedCheckpoint(f"checkpoint root hash is {len(self.root_hash)} bytes")
        if self.size == 0 and self.root_hash != EMPTY_ROOT:
            raise MalformedCheckpoint("empty checkpoint's root hash is not SHA-256 of nothing")
        for line in self.extensions:
            if not line or "\n" in line or any(c < " " for c in line):
                raise MalformedCheckpoint("checkpoint extension lines must be non-empty text")


def format_checkpoint(cp: Checkpoint) -> str:
    """The note text: origin, size, base64 root hash and extension lines, each ending in \\n."""
    root = b64encode(cp.root_hash).decode("ascii")
    return "".join(f"{line}\n" for line in (cp.origin, str(cp.size), root, *cp.extensions))


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint's note text (not a signed note: see ``open_checkpoint``)."""
    if not text.endswith("\n"):
        raise MalformedCheckpoint("checkpoint must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpoint("checkpoint needs an origin, a tree size and a root hash line")
    origin, size, root, *extensions = lines
    if not _DECIMAL.fullmatch(size) or len(size) > len(str(MAX_TREE_SIZE)):
        raise MalformedCheckpoint(f"checkpoint tree size {size!r} is not a canonical decimal")
    try:
        root_hash = decode_base64(root)
    except ValueError as exc:
        raise MalformedCheckpoint(f"checkpoint root hash is {exc}") from exc
    return Checkpoint(origin, int(size), root_hash, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, name: str, key: Ed25519PrivateKey) -> str:
    """The checkpoint as a signed note; ``name`` should be the origin (tlog-checkpoint)."""
    return sign_note(format_checkpoint(cp), name, key)


def open_checkpoint(data: str | bytes, verifiers: Iterable[NoteVerifier]) -> Checkpoint:
    """Verify a signed checkpoint against the log's key(s), then parse its text."""
    return parse_checkpoint(verify_note(data, verifiers).text)


def check_extension(old: Checkpoint | None, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Raise an ``Inconsistent`` unless ``new`` may replace ``old`` (None: nothing seen yet).

    ``proof`` is the RFC 9162 consistency proof from old.size to new.size (empty if equal).
    """
    if old is None:
        return
    if new.origin != old.origin:
        raise OriginMismatch(f"checkpoint is for log {new.origin}, not {old.origin}")
    if new.size < old.size:
        raise Rollback(f"log {new.origin} went back from size {old.size} to {new.size}")
    if new.size == old.size and new.root_hash != old.root_hash:
        raise Fork(f"log {new.origin} signed two different roots for size {new.size}")
    try:
        verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
    except InvalidProof as exc:
        raise BadConsistencyProof(
            f"log {new.origin} at size {new.size} is not an extension of size {old.size}: {exc}"
        ) from exc


def _cosigned_message(text: bytes, timestamp: int) -> bytes:
    return f"{COSIGNATURE_HEADER}time {timestamp}\n".encode() + text


class CosignatureVerifier(Verifier):
    """A witness's Ed25519 key for tlog-cosignature/v1 (note signature type 0x04).

    Its ``verify`` takes the 72 signature bytes (timestamp || Ed25519 signature), so it can also
    sit in the verifier list given to ``verify_note``.
    """

    alg = ALG_COSIGNATURE_V1

    def verify(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != 8 + 64:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            return False
        message = _cosigned_message(text, timestamp)
        return self.ed25519_verify(message, signature[8:])


def cosign(
    checkpoint_note_text: str, witness_name: str, witness_key: Ed25519PrivateKey, now: int
) -> str:
    """The witness's signature line (ending in a newline) to append to the signed checkpoint.

    The caller must already have verified the log's signature and run ``check_extension``: a
    cosignature says this is the largest consistent tree the witness has seen as of ``now``.
    """
    check_text(checkpoint_note_text)
    parse_checkpoint(checkpoint_note_text)
    if not is_valid_name(witness_name):
        raise BadVerifierKey(f"invalid witness name {witness_name!r}")
    if not 0 <= now <= MAX_TIMESTAMP:
        raise AuditError(f"cosignature time {now} is out of range")
    public = public_key_bytes(witness_key.public_key())
    sig = witness_key.sign(_cosigned_message(checkpoint_note_text.encode(), now))
    return Signature(
        name=witness_name,
        key_id=key_id(witness_name, ALG_COSIGNATURE_V1, public),
        signature=now.to_bytes(8, "big") + sig,
    ).line()


def verify_cosignature(
    signed_checkpoint: str | bytes,
    witness: CosignatureVerifier,
    *,
    now: int | None = None,
    max_future: int = COSIGNATURE_MAX_FUTURE,
) -> int:
    """Check the witness's cosignature on a signed checkpoint and return its timestamp.

    The log's own signature is not checked here (use ``open_checkpoint``). With ``now``, a
    cosignature dated more than ``max_future`` seconds ahead is refused.
    """
    note = verify_note(signed_checkpoint, [witness])
    parse_checkpoint(note.text)
    timestamp = max(int.from_bytes(s.signature[:8], "big") for s in note.signatures)
    if now is not None and timestamp > now + max_future:
        raise BadNoteSignature(
            f"cosignature by {witness.name} is dated {timestamp - now} s in the future"
        )
    return timestamp


def checkpoint_of(note: str | bytes) -> Checkpoint:
    """The checkpoint in a signed note, without checking any signature: for notes this node
    signed or already verified and stored (``open_checkpoint`` is for notes from outside)."""
    return parse_checkpoint(parse_note(note).text)


def checkpoint_size(note: str | bytes) -> int:
    """The tree size a signed checkpoint commits to (what the node logs when it signs one)."""
    return checkpoint_of(note).size


def log_signed(note: str | bytes, log: NoteVerifier) -> tuple[str, str]:
    """(checkpoint text, signed note carrying only the log's own signature line).

    What a witness keeps of a peer's note: cosignatures by other witnesses are not the log's
    word, so they are neither stored nor part of evidence. The line is matched by key name and
    key ID, as ``verify_note`` matches it, so another line under the log's name (which
    ``verify_note`` ignores) is never the one kept. Call after ``open_checkpoint``.
    """
    parsed = parse_note(note)
    for sig in parsed.signatures:
        if sig.name == log.name and sig.key_id == log.key_id:
            return parsed.text, parsed.text + "\n" + sig.line()
    raise AuditError("checkpoint carries no signature line of its log")


def cosignature_line(signed_checkpoint: str, line: str) -> Signature:
    """The one signature line a witness sent for ``signed_checkpoint`` (PROTOCOL.md 12.3).

    A line with a newline anywhere but at its end would smuggle more lines into the note we serve,
    e.g. a forged signature under our own key name that every honest witness then rejects.
    """
    body = line.removesuffix("\n")
    if "\n" in body:
        raise AuditError("a cosignature is one line")
    if len(line.encode("utf-8", "surrogatepass")) > MAX_COSIGNATURE_LINE:
        raise AuditError(f"a cosignature line is at most {MAX_COSIGNATURE_LINE} bytes")
    return parse_note(signed_checkpoint + body + "\n").signatures[-1]
