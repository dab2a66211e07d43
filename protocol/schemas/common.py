"""Pieces every message body shares: the strict base Struct, bounded text types and ``Meta``.

Every string and list has an upper bound so no body can make a node allocate without limit, and
single-line fields refuse control characters so a name cannot rewrite a terminal or a log line.
Message ids, times, sender and recipients live in the signed envelope header, not in the body
(see PROTOCOL.md, envelope header).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from protocol.decoding import describe_pattern

SCHEMA_VERSION: Final = 1
SUPPORTED_SCHEMA_VERSIONS: Final = frozenset({SCHEMA_VERSION})

# Each pattern is registered with the words a clerk reads when a value does not match it.
MESSAGE_ID_PATTERN: Final = describe_pattern(
    r"^[0-9a-f]{32}\Z", "a message id (32 lowercase hex characters)"
)
LINE_PATTERN: Final = describe_pattern(
    r"^[^\x00-\x1f\x7f]+\Z", "one line of text without control characters"
)
TEXT_PATTERN: Final = describe_pattern(
    r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+\Z",
    "text without control characters other than tab and newline",
)
SLUG_PATTERN: Final = describe_pattern(
    r"^[a-z0-9][a-z0-9 -]*\Z", "lowercase letters, digits, spaces and hyphens"
)
FIELD_PATH_PATTERN: Final = describe_pattern(
    r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\Z", "a dotted field name such as route.origin"
)

# A 128-bit message id as 32 lowercase hex characters, as the envelope header carries it.
MessageId = Annotated[str, msgspec.Meta(pattern=MESSAGE_ID_PATTERN)]
# One line of text: no control characters at all.
Line = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=LINE_PATTERN)]
# A short code-like value (plate, document number, bill of lading); checked further where a
# standard defines it.
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=35, pattern=LINE_PATTERN)]
# Free text: tabs and newlines allowed, other control characters not.
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=4000, pattern=TEXT_PATTERN)]
# ISO 3166-1 alpha-2 (checked against codes.COUNTRY_CODES by validators.check_country).
CountryCode = Annotated[str, msgspec.Meta(min_length=2, max_length=2)]
# A UN/LOCODE (5) or IATA airport code (3), checked by validators.check_place.
PlaceCode = Annotated[str, msgspec.Meta(min_length=3, max_length=5)]
# Time on the wire: RFC 3339 with an offset, and the offset must be zero (checked by check_utc).
UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]

# WCO Illicit Trade Report sections, so statistics line up with what customs already report.
Category = Literal[
    "drugs", "environment", "ipr-health-safety", "revenue", "security", "cultural-heritage"
]
Modality = Literal["sea", "air", "road", "rail", "postal"]


class Body(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """Base of every body Struct: unknown fields are errors (a typo must not pass silently)
    and absent optional fields are left out so encoding is canonical."""


def path_of(at: str, name: str) -> str:
    """The dotted path of ``name`` inside ``at`` ("" is the body itself)."""
    return f"{at}.{name}" if at else name


class Meta(Body):
    """Handling metadata, modelled on FIRST TLP 2.0 and the Europol SIENA 4x4 evaluation codes."""

    schema_version: int
    priority: Literal["routine", "urgent", "flash"]
    tlp: Literal["RED", "AMBER+STRICT", "AMBER", "GREEN", "CLEAR"]
    handling: Literal["H0", "H1", "H2", "H3"]
    source_reliability: Literal["A", "B", "C", "X"]
    info_accuracy: Annotated[int, msgspec.Meta(ge=1, le=4)]
    supersedes: MessageId | None = None
    in_reply_to: MessageId | None = None
