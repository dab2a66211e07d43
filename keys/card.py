"""Contact cards: the self-signed public document a unit hands to its counterparts.

The signature covers the exact body bytes carried in the card (no canonicalisation step), so any
implementation, or ``openssl pkeyutl -verify -rawin``, can check it (PROTOCOL.md section 3).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from keys.tls import check_certificate, pin_text
from protocol.armor import armor, dearmor
from protocol.decoding import Decoder, convert, describe_pattern
from protocol.errors import BadSignature, Expired, Malformed, ValidationError
from protocol.identity import (
    Identity,
    PublicIdentity,
    check_enc_key,
    check_sign_key,
    node_id_of,
    verify_signature,
)
from protocol.labels import (
    CARD_SIGNATURE_LABEL,
    MAX_CARD_BYTES,
    MAX_OVERLAP_SECONDS,
    MAX_ROTATIONS,
    ROTATION_LABEL,
)

CARD_KIND = "CARD"
CARD_FORMAT = "borderlink-card"
# \Z, not $: in Python regexes "$" also matches before a final newline.
NAME_RE = describe_pattern(
    r"^[a-z0-9][a-z0-9._-]{0,62}\Z",
    "1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
)
COUNTRY_RE = describe_pattern(r"^[A-Z]{2}\Z", "a two-letter country code such as ME")
LOCATION_RE = describe_pattern(
    r"^[A-Z]{2}[A-Z2-9]{3}\Z", "a UN/LOCODE: five characters such as MEBAR"
)
UnitType = Literal["PCU", "ACCU", "JAITF", "LBCU", "coordinator", "other"]
UNIT_TYPES: tuple[str, ...] = ("PCU", "ACCU", "JAITF", "LBCU", "coordinator", "other")
_ENDPOINT_RE = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(:\d{1,5})?(/[\x21-\x7e]*)?$")

Name = Annotated[str, msgspec.Meta(pattern=NAME_RE)]


class Rotation(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """One link of a node's key chain (PROTOCOL.md 13.1): ``old_key`` hands the node over to
    ``new_key`` at key sequence ``seq``, and stays acceptable until ``overlap_until``. Signed by
    ``old_key`` over :func:`rotation_signed_bytes`; the card carrying the link is signed by the new
    key, so a rotation bears both signatures."""

    seq: int
    old_key: bytes
    new_key: bytes
    at: int
    overlap_until: int
    signature: bytes


def rotation_signed_bytes(node_id: bytes, link: Rotation) -> bytes:
    """ROTATION_LABEL || node id || seq || old key || new key || at || overlap_until, the three
    integers as unsigned 64-bit big-endian: a fixed layout another implementation rebuilds
    without any serialiser."""
    return b"".join(
        (
            ROTATION_LABEL,
            node_id,
            link.seq.to_bytes(8, "big"),
            link.old_key,
            link.new_key,
            link.at.to_bytes(8, "big"),
            link.overlap_until.to_bytes(8, "big"),
        )
    )


def chain_node_id(sign_key: bytes, rotations: list[Rotation]) -> bytes:
    """The node id a card stands for: its first key's, which the chain leads from."""
    return node_id_of(rotations[0].old_key if rotations else sign_key)


class CardBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """The signed part of a card. Keys are raw 32-byte values (base64 in JSON).

    Version 2 adds ``tls_cert``: the node's self-signed TLS certificate (DER, base64 in JSON),
    its subject the node id, which peers pin (PROTOCOL.md 3.5). Version 1 cards carry no pin and
    are still read."""

    format: Literal["borderlink-card"] = "borderlink-card"
    version: Literal[1, 2] = 2
    name: Name
    unit_type: UnitType
    country: Annotated[str, msgspec.Meta(pattern=COUNTRY_RE)]
    location: Annotated[str, msgspec.Meta(pattern=LOCATION_RE)]
    endpoints: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=256)]], msgspec.Meta(max_length=8)
    ]
    sign_key: bytes
    enc_key: bytes
    valid_from: int
    valid_until: int
    tls_cert: Annotated[bytes, msgspec.Meta(max_length=4096)] | None = None
    # Key sequence (PROTOCOL.md 13): 0 at init, one more at each rotation or renewal.
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**53)] = 0
    rotations: Annotated[list[Rotation], msgspec.Meta(max_length=MAX_ROTATIONS)] = msgspec.field(
        default_factory=list
    )


_BODY = Decoder[CardBody](CardBody, what="card body")


class Card(msgspec.Struct, frozen=True):
    """A parsed, signature-checked card: the body, the exact signed bytes and the signature."""

    body: CardBody
    body_bytes: bytes
    signature: bytes

    @property
    def identity(self) -> PublicIdentity:
        origin = chain_node_id(self.body.sign_key, self.body.rotations)
        own = origin == node_id_of(self.body.sign_key)
        return PublicIdentity(self.body.sign_key, self.body.enc_key, None if own else origin)

    @property
    def node_id(self) -> bytes:
        return chain_node_id(self.body.sign_key, self.body.rotations)

    @property
    def seq(self) -> int:
        return self.body.seq

    @property
    def name(self) -> str:
        return self.body.name

    @property
    def tls_pin(self) -> str | None:
        """The pinned TLS certificate's SPKI SHA-256 as people compare it; None on a version 1
        card, which pins nothing."""
        return pin_text(self.body.tls_cert) if self.body.tls_cert is not None else None

    def armored(self) -> str:
        return armor(CARD_KIND, [self.body_bytes, self.signature])


def _check_body(body: CardBody, *, bind_certificate: bool = True) -> None:
    """The rules of 3.1 and 3.5 a schema cannot state. ``bind_certificate=False`` leaves out the
    certificate's subject (3.5), for a card already accepted and stored."""
    from protocol.validators import check_country, check_unlocode

    check_country(body.country, "country")
    check_unlocode(body.location, "location")
    if body.location[:2] != body.country:
        raise ValidationError(
            "location", f"UN/LOCODE {body.location} is not in country {body.country}"
        )
    for i, url in enumerate(body.endpoints):
        if not _ENDPOINT_RE.fullmatch(url):
            raise ValidationError(f"endpoints[{i}]", "must be an http:// or https:// URL")
        if body.version >= 2 and not url.startswith("https://"):
            raise ValidationError(
                f"endpoints[{i}]",
                "must be an https:// URL: peers talk only over mutual TLS pinned to their "
                "cards, never plain HTTP",
            )
    if body.valid_until <= body.valid_from:
        raise ValidationError("valid_until", "must be after valid_from")
    if body.version == 1 and body.tls_cert is not None:
        raise ValidationError("tls_cert", "is not part of a version 1 card")
    if body.version == 2 and body.tls_cert is None:
        raise ValidationError("tls_cert", "is required in a version 2 card")
    _check_chain(body)
    if body.tls_cert is not None:
        try:
            owner = chain_node_id(body.sign_key, body.rotations) if bind_certificate else None
            check_certificate(body.tls_cert, node_id=owner)
        except Malformed as exc:
            raise ValidationError("tls_cert", exc.message.removeprefix("tls_cert ")) from exc


def _check_chain(body: CardBody) -> None:
    """Each link signed by the key before it, the last handing over to the card's key
    (PROTOCOL.md 13.1)."""
    if not body.rotations:
        return
    node_id = chain_node_id(body.sign_key, body.rotations)
    previous_seq = -1
    for i, link in enumerate(body.rotations):
        where = f"rotations[{i}]"
        if i and link.old_key != body.rotations[i - 1].new_key:
            raise ValidationError(where, "does not continue from the key the link before it named")
        if not previous_seq < link.seq <= body.seq:
            raise ValidationError(where, "sequence numbers must rise, up to the card's seq")
        if not link.at <= link.overlap_until <= link.at + MAX_OVERLAP_SECONDS:
            raise ValidationError(where, "overlap must end after the rotation, within 90 days")
        previous_seq = link.seq
        try:
            old = check_sign_key(link.old_key)
            check_sign_key(link.new_key)
        except Malformed as exc:
            raise ValidationError(where, exc.message) from exc
        try:
            verify_signature(old, link.signature, rotation_signed_bytes(node_id, link))
        except BadSignature as exc:
            raise BadSignature(
                f"card field {where}: the rotation is not signed by the key it replaces"
            ) from exc
    if body.rotations[-1].new_key != body.sign_key:
        raise ValidationError("rotations", "the last link must hand over to the card's key")


def make_card(
    identity: Identity,
    *,
    name: str,
    unit_type: str,
    country: str,
    location: str,
    endpoints: list[str],
    valid_from: int,
    valid_until: int,
    tls_cert: bytes | None = None,
    seq: int = 0,
    rotations: list[Rotation] | None = None,
) -> Card:
    """Build and sign this node's card; the inputs are validated as an importer would."""
    body = convert(
        {
            "name": name,
            "unit_type": unit_type,
            "country": country,
            "location": location,
            "endpoints": endpoints,
            "sign_key": identity.public.sign_key,
            "enc_key": identity.public.enc_key,
            "valid_from": valid_from,
            "valid_until": valid_until,
            "version": 1 if tls_cert is None else 2,
            "tls_cert": tls_cert,
            "seq": seq,
            "rotations": list(rotations or []),
        },
        CardBody,
        what="card",
    )
    _check_body(body)
    body_bytes = msgspec.json.encode(body)
    return Card(body, body_bytes, identity.sign(CARD_SIGNATURE_LABEL + body_bytes))


def parse_card(text: str | bytes, *, now: int | None) -> Card:
    """Parse and fully check an armored card: structure, keys, signature, validity at ``now``.

    ``now=None`` is for a card already accepted and stored: the validity window is not checked,
    nor is the certificate's subject (PROTOCOL.md 3.5), a rule newer than some stored cards; a
    table holding a copied certificate still reads, and node/admission.py makes a pin that two
    stored cards share nobody's.
    """
    if len(text) > MAX_CARD_BYTES:
        raise Malformed(f"card is larger than {MAX_CARD_BYTES} bytes")
    blocks = dearmor(CARD_KIND, text, max_bytes=MAX_CARD_BYTES)
    if len(blocks) != 2:
        raise Malformed("card must have a body and exactly one signature line")
    body_bytes, signature = blocks
    try:
        body = _BODY.decode(body_bytes)
    except ValidationError as exc:
        raise Malformed(f"card field {exc.message}" if exc.path else exc.message) from exc
    try:
        _check_body(body, bind_certificate=now is not None)
    except ValidationError as exc:
        raise Malformed(f"card field {exc.message}") from exc
    sign_key = check_sign_key(body.sign_key)
    check_enc_key(body.enc_key)
    try:
        verify_signature(sign_key, signature, CARD_SIGNATURE_LABEL + body_bytes)
    except BadSignature as exc:
        raise BadSignature(f"card of {body.name} is not signed by its own key") from exc
    card = Card(body, body_bytes, signature)
    if now is not None:
        check_valid_at(card, now)
    return card


def check_valid_at(card: Card, now: int) -> None:
    """The validity window of a card already parsed and checked (a clock skew of 300 s allowed
    before its start): a caller holding a parsed card checks only the time again, not the
    signature."""
    body = card.body
    if now >= body.valid_until:
        raise Expired(f"card of {body.name} expired on {_day(body.valid_until)}")
    if now < body.valid_from - 300:
        raise Malformed(f"card of {body.name} is not valid yet")


def _day(ts: int) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))
