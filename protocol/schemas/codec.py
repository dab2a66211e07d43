"""Bytes to messages and back (msgspec's errors become ours in protocol/decoding.py).

Decoding is strict (unknown fields, wrong types and out-of-range values are errors) and is
followed by the semantic checks each Struct's ``check`` method makes. Whatever bytes come in, the
result is a message or a ``ValidationError``; nothing else escapes (PROTOCOL.md, message bodies).
"""

from __future__ import annotations

from typing import Final

import msgspec

from protocol.decoding import DECODE_ERRORS, Decoder
from protocol.errors import ValidationError
from protocol.schemas.common import SUPPORTED_SCHEMA_VERSIONS
from protocol.schemas.feedback import Feedback
from protocol.schemas.retraction import Retraction
from protocol.schemas.risk import RiskProfile
from protocol.schemas.seizure import SeizureAlert

Message = SeizureAlert | RiskProfile | Feedback | Retraction

MESSAGE_TYPES: Final[dict[str, type[Message]]] = {
    "seizure-alert": SeizureAlert,
    "risk-profile": RiskProfile,
    "feedback": Feedback,
    "retraction": Retraction,
}
_NAMES: Final[dict[type[Message], str]] = {cls: name for name, cls in MESSAGE_TYPES.items()}
_DECODERS: Final[dict[str, Decoder[Message]]] = {
    name: Decoder(cls, what="body") for name, cls in MESSAGE_TYPES.items()
}
_ENCODER: Final = msgspec.json.Encoder()


class _VersionOnly(msgspec.Struct):
    """Read when the strict decode fails, so a body from a newer schema is refused for its version
    rather than for the first field this node does not know."""

    schema_version: int


class _Probe(msgspec.Struct):
    meta: _VersionOnly


_PROBE: Final = msgspec.json.Decoder(_Probe)


def check_type_name(type_name: str) -> None:
    if type_name not in MESSAGE_TYPES:
        expected = ", ".join(MESSAGE_TYPES)
        raise ValidationError(
            "type", f"unknown message type {type_name!r}; expected one of {expected}"
        )


def _check_version(version: int) -> None:
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_SCHEMA_VERSIONS))
        raise ValidationError(
            "meta.schema_version",
            f"schema version {version} is not supported (this node reads {supported})",
        )


def decode_body(type_name: str, data: bytes, *, what: str = "body") -> Message:
    """Decode and fully validate a body of the named type (``what`` names it in errors about the
    whole input: "alert.json is empty").

    A body from an unsupported schema version is refused for its version, not for the first field
    this node does not know; the version is read on its own only when the strict decode fails, so
    a valid body is parsed once."""
    check_type_name(type_name)
    try:
        msg = _DECODERS[type_name].decode(data, what=what)
    except ValidationError:
        try:
            version = _PROBE.decode(data).meta.schema_version
        except DECODE_ERRORS:
            version = None  # the strict decode's error says what is wrong
        if version is not None:
            _check_version(version)
        raise
    _check_version(msg.meta.schema_version)
    msg.check("")
    return msg


def encode_body(msg: Message) -> bytes:
    """Compact, canonical JSON (field order fixed by the Structs, defaults left out).

    The result is decoded again before it is returned, so a message built in code with a wrong value
    raises here, at the sender, instead of being refused by every recipient."""
    data = _ENCODER.encode(msg)
    decode_body(type_name_of(msg), data)
    return data


def type_name_of(msg: Message) -> str:
    name = _NAMES.get(type(msg))
    if name is None:
        raise ValidationError("type", f"{type(msg).__name__} is not a borderlink message")
    return name


def strip_personal_data(msg: Message) -> Message:
    """A copy without the ``parties`` section, the only structured personal data a body holds."""
    if isinstance(msg, SeizureAlert):
        return msgspec.structs.replace(msg, parties=None)
    return msgspec.structs.replace(msg)
