"""Signed directories: a regional coordinator vouches for the cards of its units (PROTOCOL.md 13.8).

A coordinator (its card's ``unit_type`` is ``coordinator``) lists the cards of the units it
compared fingerprints with, numbers the list and signs it. A unit that verified the coordinator
itself, by fingerprint, may then trust the listed units as *introduced* by it. The directory is
self-authenticating, so any channel may carry it: a file, or ``GET /v1/directory`` from the
coordinator's node.

Pure: the format, its signature and the decisions a unit takes before importing (which signer,
which sequence number); nothing here touches storage or a clock. Every refusal is a
:class:`StatementRefused` whose ``reason`` names the rule.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from keys.card import Card
from keys.trust import PeerRecord
from protocol.armor import armor, dearmor
from protocol.decoding import Decoder
from protocol.errors import BadSignature, Malformed, StatementRefused, ValidationError
from protocol.identity import Identity, check_sign_key, verify_signature
from protocol.labels import DEFAULT_CLOCK_SKEW_SECONDS, DIRECTORY_LABEL, MAX_CARD_BYTES

DIRECTORY_KIND = "DIRECTORY"
DIRECTORY_FORMAT = "borderlink-directory"
MAX_DIRECTORY_CARDS = 500
# The whole armored text; what a node fetches from a coordinator (node/daemon.py ``fetch``).
MAX_DIRECTORY_BYTES = 1024 * 1024
MAX_DIRECTORY_SEQ = 2**53


class DirectoryBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The signed part of a directory. ``coordinator`` is the coordinator's node id (32 bytes,
    base64 in JSON); ``cards`` are armored cards, each as its owner signed it."""

    format: Literal["borderlink-directory"] = "borderlink-directory"
    version: Literal[1] = 1
    coordinator: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_DIRECTORY_SEQ)]
    issued_at: int
    valid_until: int
    cards: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=MAX_CARD_BYTES)]],
        msgspec.Meta(max_length=MAX_DIRECTORY_CARDS),
    ]


_BODY = Decoder[DirectoryBody](DirectoryBody, what="directory body")


class Directory(msgspec.Struct, frozen=True):
    """A parsed directory: the body, the exact signed bytes and the signature (checked only by
    :func:`verify_directory`, against the coordinator's card this node holds)."""

    body: DirectoryBody
    body_bytes: bytes
    signature: bytes

    @property
    def coordinator(self) -> bytes:
        return self.body.coordinator

    @property
    def seq(self) -> int:
        return self.body.seq

    def armored(self) -> str:
        return armor(DIRECTORY_KIND, [self.body_bytes, self.signature])


def signed_bytes(body_bytes: bytes) -> bytes:
    """What the coordinator signs: DIRECTORY_LABEL || the exact body bytes."""
    return DIRECTORY_LABEL + body_bytes


def make_directory(
    identity: Identity, cards: list[Card], *, seq: int, issued_at: int, valid_until: int
) -> Directory:
    """Sign a directory of ``cards`` as the coordinator ``identity``; checked as an importer
    would check it (bar the expiry, which depends on the importer's clock)."""
    body = DirectoryBody(
        coordinator=identity.node_id,
        seq=seq,
        issued_at=issued_at,
        valid_until=valid_until,
        cards=[card.armored() for card in cards],
    )
    body_bytes = msgspec.json.encode(body)
    directory = Directory(body, body_bytes, identity.sign(signed_bytes(body_bytes)))
    _check(_BODY.decode(body_bytes))  # the schema's limits too: seq, the number of cards
    if len(directory.armored()) > MAX_DIRECTORY_BYTES:
        raise _malformed(f"the directory is larger than {MAX_DIRECTORY_BYTES} bytes")
    return directory


def _malformed(message: str) -> StatementRefused:
    return StatementRefused("malformed", message)


def _check(body: DirectoryBody) -> None:
    if body.valid_until <= body.issued_at:
        raise _malformed("directory field valid_until: must be after issued_at")


def parse_directory(text: str | bytes, *, now: int | None) -> Directory:
    """Parse an armored directory and check its structure and validity at ``now`` (None: not
    checked). The signature is not checked here: that needs the coordinator's card, see
    :func:`verify_directory`."""
    if len(text) > MAX_DIRECTORY_BYTES:
        raise _malformed(f"the directory is larger than {MAX_DIRECTORY_BYTES} bytes")
    try:
        blocks = dearmor(DIRECTORY_KIND, text, max_bytes=MAX_DIRECTORY_BYTES)
    except Malformed as exc:
        raise _malformed(exc.message) from exc
    if len(blocks) != 2:
        raise _malformed("a directory has a body and exactly one signature line")
    body_bytes, signature = blocks
    try:
        body = _BODY.decode(body_bytes)
    except ValidationError as exc:
        raise _malformed(f"directory field {exc.message}" if exc.path else exc.message) from exc
    _check(body)
    if len(signature) != 64:
        raise _malformed("the directory's signature is not 64 bytes")
    if now is not None:
        check_validity(body, now=now)
    return Directory(body, body_bytes, signature)


def check_validity(body: DirectoryBody, *, now: int) -> None:
    """``now >= valid_until``: expired; issued more than the clock skew ahead of ``now``: not
    valid yet (malformed), as a card issued in the future is."""
    if now >= body.valid_until:
        raise StatementRefused(
            "expired", f"the directory (seq {body.seq}) expired on {_utc(body.valid_until)}"
        )
    if now < body.issued_at - DEFAULT_CLOCK_SKEW_SECONDS:
        raise _malformed(
            f"the directory (seq {body.seq}) is issued on {_utc(body.issued_at)}, in the future"
        )


def verify_directory(directory: Directory, coordinator_card: Card) -> None:
    """The directory is the coordinator's: its node id is the card's, and its signature verifies
    with the card's current signing key."""
    name = coordinator_card.name
    if directory.coordinator != coordinator_card.node_id:
        raise StatementRefused(
            "unknown_coordinator", f"the directory is not from '{name}' but another node", peer=name
        )
    try:
        verify_signature(
            check_sign_key(coordinator_card.body.sign_key),
            directory.signature,
            signed_bytes(directory.body_bytes),
        )
    except (BadSignature, Malformed) as exc:
        raise StatementRefused(
            "bad_signature", f"the directory is not signed by the key of '{name}'", peer=name
        ) from exc


def check_coordinator(record: PeerRecord | None, card: Card | None) -> None:
    """May the peer ``record`` (its stored card ``card``) introduce units? Only a trusted peer,
    verified by fingerprint (not trusted on first use, nor itself introduced), whose card says
    it is a coordinator."""
    if record is None or card is None:
        raise StatementRefused(
            "unknown_coordinator", "the directory is signed by a node that is not a trusted peer"
        )
    name = record.name
    if record.status != "trusted":
        raise StatementRefused(
            "unknown_coordinator",
            f"the directory is signed by '{name}', which is {record.status}, not trusted",
            peer=name,
        )
    if card.body.unit_type != "coordinator":
        raise StatementRefused(
            "not_a_coordinator",
            f"'{name}' is a {card.body.unit_type}, not a coordinator: it introduces no one",
            peer=name,
        )
    if record.verified_by != "fingerprint":
        how = "trusted on first use" if record.verified_by == "tofu" else "itself introduced"
        raise StatementRefused(
            "not_a_coordinator",
            f"coordinator '{name}' is {how}: only a coordinator whose fingerprint was compared "
            "introduces units",
            peer=name,
            hint=f"compare its fingerprint, then run 'borderlink peers verify {name} "
            "--fingerprint FP'",
        )


def check_sequence(directory: Directory, last: int | None, *, name: str) -> None:
    """Each directory of a coordinator must carry a higher sequence number than the last one
    imported from it: an older one, replayed, would bring back units it has since dropped."""
    if last is not None and directory.seq <= last:
        raise StatementRefused(
            "directory_rollback",
            f"directory seq {directory.seq} of '{name}' is not newer than the seq {last} "
            "already imported",
            peer=name,
        )


def _utc(ts: int) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))
