"""Bytes to messages and back: the one place msgspec's errors become ``ValidationError``.

Decoding is strict (unknown fields, wrong types and out-of-range values are errors) and is
followed by the semantic checks each Struct's ``check`` method makes. Whatever bytes come in, the
result is a message or a ``ValidationError``; nothing else escapes (PROTOCOL.md, message bodies).
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from protocol.errors import ValidationError
from protocol.schemas.common import PATTERN_WORDS, SUPPORTED_SCHEMA_VERSIONS
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
_DECODERS: Final[dict[str, msgspec.json.Decoder[Message]]] = {
    name: msgspec.json.Decoder(cls) for name, cls in MESSAGE_TYPES.items()
}
_ENCODER: Final = msgspec.json.Encoder()

# msgspec ends its messages with " - at `$.a.b[0].c`".
_AT: Final = re.compile(r"^(?P<rule>.*) - at `\$\.?(?P<path>.*)`$", re.DOTALL)
# msgspec quotes an unknown field's name as sent; a rule is printed and logged, so control
# characters in it are escaped (no terminal or log-line injection) and its length is capped.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MAX_RULE: Final = 300


class _VersionOnly(msgspec.Struct):
    """Read when the strict decode fails, so a body from a newer schema is refused for its version
    rather than for the first field this node does not know."""

    schema_version: int


class _Probe(msgspec.Struct):
    meta: _VersionOnly


_PROBE: Final = msgspec.json.Decoder(_Probe)


_PATTERN_RULES: Final = {
    f"Expected `str` matching regex {pattern!r}": f"Expected {words}"
    for pattern, words in PATTERN_WORDS.items()
}


# What msgspec can raise on bad input: its own errors, plus a UnicodeDecodeError for invalid UTF-8
# in a string and a RecursionError when skipping a deeply nested value it has no type for.
_DECODE_ERRORS: Final = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)


def _translate(exc: Exception) -> ValidationError:
    """msgspec's " - at `$.a[0].b`" suffix becomes the path ``a[0].b``; the two plain Python errors
    become whole-body errors."""
    if isinstance(exc, UnicodeDecodeError):
        return ValidationError("", "body is not valid UTF-8")
    if isinstance(exc, RecursionError):
        return ValidationError("", "body is nested too deeply")
    text = str(exc)
    match = _AT.match(text)
    path, rule = (match["path"], match["rule"]) if match else ("", text)
    rule = _CONTROL.sub(lambda c: f"\\x{ord(c[0]):02x}", _PATTERN_RULES.get(rule, rule))
    if len(rule) > _MAX_RULE:
        rule = rule[: _MAX_RULE - 3] + "..."
    return ValidationError(path, rule)


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


def decode_body(type_name: str, data: bytes) -> Message:
    """Decode and fully validate a body of the named type.

    A body from an unsupported schema version is refused for its version, not for the first field
    this node does not know; the version is read on its own only when the strict decode fails, so
    a valid body is parsed once."""
    check_type_name(type_name)
    try:
        msg = _DECODERS[type_name].decode(data)
    except _DECODE_ERRORS as exc:
        try:
            version = _PROBE.decode(data).meta.schema_version
        except _DECODE_ERRORS:
            version = None  # the strict decode's error says what is wrong
        if version is not None:
            _check_version(version)
        raise _translate(exc) from exc
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
