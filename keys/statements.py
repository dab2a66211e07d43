"""Key statements: what a node tells its peers when its keys change (PROTOCOL.md 13), and the pure
rules a peer applies to them.

Three statements, each self-authenticating, so any channel may carry them (a stolen laptop's
owner posts a revocation from another machine, with no key of the node at hand):

- a **rotation** is the node's new card: its chain gains a link signed by the key it replaces,
  and the card itself is signed by the new key;
- a **renewal** is a new card under the same keys with a later expiry;
- a **revocation** is a ``BORDERLINK REVOCATION`` signed by the key it revokes.

Both card statements carry the key sequence, which must be exactly one more than the one the
peer holds: a skipped, reused or older number is refused with its own reason. Nothing here
touches storage or a clock: the decisions take the stored record and ``now``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

from keys.card import Card, parse_card
from protocol.armor import armor, dearmor
from protocol.decoding import Decoder
from protocol.errors import (
    BadSignature,
    Expired,
    Malformed,
    Rejected,
    StatementRefused,
    ValidationError,
)
from protocol.identity import Identity, check_sign_key, verify_signature
from protocol.labels import KEY_RECEIPT_LABEL, MAX_CARD_BYTES, REVOCATION_LABEL

REVOCATION_KIND = "REVOCATION"
RevocationReason = Literal["superseded", "compromised", "retired"]
REASONS: tuple[str, ...] = ("superseded", "compromised", "retired")
MAX_STATEMENT_BYTES = MAX_CARD_BYTES


class RevocationBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """The signed part of a revocation. ``since`` (compromised only): from when the key is
    suspect; what a peer received from it since is marked so in its inbox."""

    format: Literal["borderlink-revocation"] = "borderlink-revocation"
    version: Literal[1] = 1
    node_id: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    key: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    reason: RevocationReason
    issued_at: int
    since: int | None = None


_REVOCATION = Decoder[RevocationBody](RevocationBody, what="revocation")


class Revocation(msgspec.Struct, frozen=True):
    body: RevocationBody
    body_bytes: bytes
    signature: bytes

    def armored(self) -> str:
        return armor(REVOCATION_KIND, [self.body_bytes, self.signature])


def make_revocation(
    identity: Identity, *, reason: str, issued_at: int, since: int | None = None
) -> Revocation:
    if reason not in REASONS:
        raise ValidationError("reason", f"must be one of {', '.join(REASONS)}")
    if reason != "compromised":
        since = None
    body = RevocationBody(
        node_id=identity.node_id,
        key=identity.public.sign_key,
        reason=reason,  # type: ignore[arg-type]
        issued_at=issued_at,
        since=since,
    )
    body_bytes = msgspec.json.encode(body)
    return Revocation(body, body_bytes, identity.sign(REVOCATION_LABEL + body_bytes))


def parse_revocation(text: str | bytes) -> Revocation:
    blocks = dearmor(REVOCATION_KIND, text, max_bytes=MAX_STATEMENT_BYTES)
    if len(blocks) != 2:
        raise Malformed("a revocation has a body and exactly one signature line")
    body_bytes, signature = blocks
    try:
        body = _REVOCATION.decode(body_bytes)
    except ValidationError as exc:
        raise Malformed(f"revocation field {exc.message}" if exc.path else exc.message) from exc
    try:
        verify_signature(check_sign_key(body.key), signature, REVOCATION_LABEL + body_bytes)
    except BadSignature as exc:
        raise BadSignature("the revocation is not signed by the key it revokes") from exc
    return Revocation(body, body_bytes, signature)


def split_certificate(text: str) -> dict[str, Revocation]:
    """A revocation certificate file (one revocation per reason, written at init, after a few
    lines saying what it is) -> by reason. Text between the blocks is ignored."""
    out: dict[str, Revocation] = {}
    begin = f"-----BEGIN BORDERLINK {REVOCATION_KIND}-----"
    end = f"-----END BORDERLINK {REVOCATION_KIND}-----"
    at = text.find(begin)
    while at >= 0 and len(out) < len(REASONS):
        stop = text.find(end, at)
        if stop < 0:
            break
        rev = parse_revocation(text[at : stop + len(end)] + "\n")
        out[rev.body.reason] = rev
        at = text.find(begin, stop)
    if not out:
        raise Malformed("the file holds no BORDERLINK REVOCATION")
    return out


# -- what a peer answers: a receipt over the exact statement bytes --------------------------------


def statement_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("ascii", "replace")).digest()


def receipt_signed_bytes(signer: bytes, text: str) -> bytes:
    """KEY_RECEIPT_LABEL || the signing peer's node id || SHA-256(statement text)."""
    return KEY_RECEIPT_LABEL + signer + statement_digest(text)


def sign_receipt(identity: Identity, text: str) -> bytes:
    return identity.sign(receipt_signed_bytes(identity.node_id, text))


def check_receipt(signer_key: bytes, signer_id: bytes, text: str, signature: bytes) -> None:
    verify_signature(check_sign_key(signer_key), signature, receipt_signed_bytes(signer_id, text))


# -- the peer's decisions -------------------------------------------------------------------------

Change = Literal["unchanged", "renewed", "rotated"]


def parse_card_statement(text: str, *, now: int) -> Card:
    """A card sent as a rotation or renewal, with each failure named by its rule."""
    try:
        return parse_card(text, now=now)
    except BadSignature as exc:
        raise StatementRefused("bad_signature", exc.message) from exc
    except Expired as exc:
        raise StatementRefused("expired", exc.message) from exc
    except Rejected as exc:
        raise StatementRefused("malformed", exc.message) from exc


def peek_card(text: str) -> tuple[bytes, int]:
    """(node id, seq) a card statement claims, read without any cryptography: the cheap checks
    a peer makes first (unknown node, a text it holds, a sequence out of order), so a flood of
    statements costs it a signature check only for one that could be the next change."""
    from keys.card import _BODY, CARD_KIND, chain_node_id

    try:
        blocks = dearmor(CARD_KIND, text, max_bytes=MAX_CARD_BYTES)
        if len(blocks) != 2:
            raise Malformed("card must have a body and exactly one signature line")
        body = _BODY.decode(blocks[0])
    except ValidationError as exc:
        raise StatementRefused("malformed", f"card field {exc.message}") from exc
    except Rejected as exc:
        raise StatementRefused("malformed", exc.message) from exc
    if body.rotations and len(body.rotations[0].old_key) != 32:
        raise StatementRefused("malformed", "card field rotations[0].old_key is not 32 bytes")
    return chain_node_id(body.sign_key, body.rotations), body.seq


def check_order(known: Card, seq: int, *, same_text: bool) -> Literal["unchanged"] | None:
    """The sequence rules of PROTOCOL.md 13.6 step 3-4, on the claimed seq alone."""
    name = known.name
    if seq == known.seq:
        if same_text:
            return "unchanged"
        raise StatementRefused(
            "sequence_reused",
            f"key sequence {seq} of '{name}' is already used by the card this node holds",
        )
    if seq < known.seq:
        raise StatementRefused(
            "sequence_older",
            f"key sequence {seq} of '{name}' is older than the {known.seq} this node holds",
        )
    if seq > known.seq + 1:
        raise StatementRefused(
            "sequence_skipped",
            f"key sequence {seq} of '{name}' skips from {known.seq}: each change must be "
            "exactly the next one",
        )
    return None


# What a key change may not change: who the unit is. A stolen key must not turn a port unit
# into a coordinator (whose directories introduce units) or rename it under its peers' eyes.
_WHO = ("name", "unit_type", "country", "location")


def decide_card(known: Card, new: Card, *, known_text: str, new_text: str) -> Change:
    """May ``new`` replace ``known`` (the same node id)? Exactly the next sequence number, the
    same unit, and either the same keys (a renewal) or a link from the known key to the new one
    (a rotation) dated from the known card's start to the new card's (which parse_card keeps
    from the future)."""
    name = known.name
    if new.node_id != known.node_id:
        raise StatementRefused("unknown_node", "the card is for another node")
    if check_order(known, new.seq, same_text=new_text == known_text) == "unchanged":
        return "unchanged"
    k, n = known.body, new.body
    changed = [f for f in _WHO if getattr(n, f) != getattr(k, f)]
    if changed:
        raise StatementRefused(
            "not_a_rotation",
            f"the card of '{name}' changes its {', '.join(changed)}: a key change keeps the "
            "unit as it is (a changed unit is added again, compared by fingerprint)",
        )
    if n.sign_key == k.sign_key:
        if (n.enc_key, n.tls_cert, n.rotations) != (k.enc_key, k.tls_cert, k.rotations):
            raise StatementRefused(
                "not_a_rotation",
                f"the card of '{name}' changes keys without a rotation link",
            )
        if n.valid_until <= k.valid_until:
            raise StatementRefused(
                "not_later", f"the renewal of '{name}' does not expire later than its card"
            )
        return "renewed"
    link = n.rotations[-1] if n.rotations else None
    if link is None or link.seq != n.seq or link.old_key != k.sign_key:
        raise StatementRefused(
            "not_a_rotation",
            f"the new key of '{name}' is not handed over by the key this node trusts",
        )
    if n.rotations[:-1] != k.rotations:
        raise StatementRefused("not_a_rotation", f"the key chain of '{name}' was rewritten")
    if not k.valid_from <= link.at <= n.valid_from:
        # A link dated before the card it replaces would pass for a handover made before the old
        # key was compromised (revocation_effect); the applied time is kept for that too.
        raise StatementRefused(
            "not_a_rotation",
            f"the rotation of '{name}' is dated {utc(link.at)}, outside the time from its card "
            f"({utc(k.valid_from)}) to the new one ({utc(n.valid_from)})",
        )
    return "rotated"


class RetiredSigner(msgspec.Struct, frozen=True):
    """A signing key a peer rotated away from, and until when it may still sign."""

    key: bytes
    until: int
    replaced_at: int


def retired_signers(card: Card) -> list[RetiredSigner]:
    """Every key the card's chain replaced, newest first."""
    return [
        RetiredSigner(link.old_key, link.overlap_until, link.at)
        for link in reversed(card.body.rotations)
    ]


def revocation_effect(
    card: Card, rev: Revocation, applied: Mapping[int, int] | None = None
) -> Literal["node", "old_key"]:
    """What a revocation of one of ``card``'s keys does: the whole node is revoked when it names
    the current key, or a compromised old key that handed over after it became suspect (the
    rotation itself may be the attacker's); otherwise only that old key stops signing.

    ``applied`` maps a link's sequence number to when this node applied it: the holder of a
    stolen key dates its link as it likes, so the later of the two times counts."""
    b = rev.body
    if b.node_id != card.node_id:
        raise StatementRefused("unknown_node", "the revocation is for another node")
    if b.key == card.body.sign_key:
        return "node"
    for link in card.body.rotations:
        if link.old_key == b.key:
            since = b.since if b.since is not None else 0
            at = max(link.at, (applied or {}).get(link.seq, 0))
            if b.reason == "compromised" and at >= since:
                return "node"
            return "old_key"
    raise StatementRefused("unknown_key", "the revoked key is not one this node knows for it")


def utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))
