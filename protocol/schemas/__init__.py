"""Versioned message bodies: seizure alerts, risk profiles, feedback and retractions.

The body is what a unit writes; the signed envelope around it (another module) carries the message
id, times, sender and recipients. Import from here; the submodules are an implementation detail:

    common.py       base Struct, bounded text types, Meta (TLP, handling, 4x4 evaluation)
    codes.py        ISO 3166-1 countries and UN/ECE Rec 20 units, as constants
    conveyance.py   sea / air / road / rail / postal, tagged by ``mode``
    seizure.py      SeizureAlert     risk.py  RiskProfile
    feedback.py     Feedback         retraction.py  Retraction
    codec.py        decode_body / encode_body (errors in our words: protocol/decoding.py)
"""

from __future__ import annotations

from protocol.schemas.codec import (
    MESSAGE_TYPES,
    Message,
    decode_body,
    encode_body,
    strip_personal_data,
    type_name_of,
)
from protocol.schemas.common import SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS, Meta
from protocol.schemas.feedback import Feedback
from protocol.schemas.retraction import Retraction
from protocol.schemas.risk import RiskProfile
from protocol.schemas.seizure import SeizureAlert


def template(type_name: str) -> Message:
    """A filled example of ``type_name`` that validates (see protocol/templates.py).

    Imported on call: templates build Structs from this package, so a top-level import would be
    circular."""
    from protocol.templates import template as build

    return build(type_name)


__all__ = [
    "MESSAGE_TYPES",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "Feedback",
    "Message",
    "Meta",
    "Retraction",
    "RiskProfile",
    "SeizureAlert",
    "decode_body",
    "encode_body",
    "strip_personal_data",
    "template",
    "type_name_of",
]
