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
from protocol.errors import Expired, Malformed, ValidationError
from protocol.identity import (
    Identity,
    PublicIdentity,
    check_enc_key,
    check_sign_key,
    node_id_of,
    verify_signature,
)
from protocol.labels import CARD_SIGNATURE_LABEL, MAX_CARD_BYTES

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


_BODY = Decoder[CardBody](CardBody, what="card body")


class Card(msgspec.Struct, frozen=True):
    """A parsed, signature-checked card: the body, the exact signed bytes and the signature."""

    body: CardBody
    body_bytes: bytes
    signature: bytes

    @property
    def identity(self) -> PublicIdentity:
        return PublicIdentity(self.body.sign_key, self.body.enc_key)

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
    if body.tls_cert is not None:
        try:
            owner = node_id_of(body.sign_key) if bind_certificate else None
            check_certificate(body.tls_cert, node_id=owner)
        except Malformed as exc:
            raise ValidationError("tls_cert", exc.message.removeprefix("tls_cert ")) from exc


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
    verify_signature(sign_key, signature, CARD_SIGNATURE_LABEL + body_bytes)
    if now is None:
        return Card(body, body_bytes, signature)
    if now >= body.valid_until:
        raise Expired(f"card of {body.name} expired")
    if now < body.valid_from - 300:
        raise Malformed(f"card of {body.name} is not valid yet")
    return Card(body, body_bytes, signature)
