"""Strict typed decoding of JSON and MessagePack, every failure said in borderlink's own words.

This is the one place where msgspec's errors are translated (STYLE.md habit 3). msgspec does the
decoding; when it refuses, we never read its message (its wording changes between releases and
quotes regexes at users). We find out what is wrong ourselves, from structured information only:

1. the bytes: empty, not UTF-8 (the standard library's decoder gives the offset), not JSON (the
   standard library's parser gives line and column, and whether the input simply stopped);
2. the value, decoded again without a type: it is walked against ``msgspec.inspect.type_info`` of
   the target type (field names, constraints, literal values, tags), and the first rule it breaks
   becomes a ``ValidationError(path, rule)`` with a ``kind`` that callers may branch on.

The walk lives in protocol/mismatch.py; patterns are explained by the words registered for them
(``describe_pattern``), never shown as a regex; values a peer or a file supplied are quoted
through protocol/text.py, so an error line cannot rewrite a terminal or a log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final, Generic, Literal, TypeVar

import msgspec

from protocol.errors import ValidationError
from protocol.mismatch import Source, describe_pattern, find_mismatch, pattern_words

__all__ = [
    "DECODE_ERRORS",
    "Decoder",
    "convert",
    "decode_json",
    "describe_pattern",
    "explain",
    "pattern_words",
]

T = TypeVar("T")
Format = Literal["json", "msgpack"]
Buffer = bytes | bytearray | memoryview | msgspec.Raw

# What msgspec can raise on bad input: its own errors (ValueErrors), a UnicodeDecodeError (also
# one) for invalid UTF-8 in some strings, and a RecursionError for a deeply nested value.
DECODE_ERRORS: Final = (msgspec.MsgspecError, ValueError, RecursionError)


def problem(path: str, rule: str, kind: str) -> ValidationError:
    return ValidationError(path, rule, kind=kind)


class Decoder(Generic[T]):
    """A strict msgspec decoder for one type and format. ``what`` names the input in whole-input
    errors ("body", "envelope", "the file") so the sentence reads right where it is shown."""

    def __init__(self, type_: Any, *, fmt: Format = "json", what: str = "input") -> None:
        self.type = type_
        self.fmt = fmt
        self.what = what
        self._decoder: Callable[[Buffer], T]
        if fmt == "json":
            self._decoder = msgspec.json.Decoder(type_).decode
        else:
            self._decoder = msgspec.msgpack.Decoder(type_).decode

    def decode(self, data: Buffer, *, what: str | None = None) -> T:
        """``what`` overrides the input's name for this call (a file name, say)."""
        try:
            return self._decoder(data)
        except DECODE_ERRORS as exc:
            raise explain(data, self.type, fmt=self.fmt, what=what or self.what) from exc


def decode_json(data: bytes, type_: Any = Any, *, what: str = "input") -> Any:
    """One-off strict JSON decode (``Any`` for an untyped document), errors in our words."""
    return Decoder[Any](type_, fmt="json", what=what).decode(data)


def convert(value: object, type_: type[T], *, strict: bool = True, what: str = "input") -> T:
    """``msgspec.convert`` of already-decoded builtins (a TOML table, a request dict)."""
    try:
        return msgspec.convert(value, type_, strict=strict)
    except (msgspec.ValidationError, RecursionError) as exc:
        try:
            err = _explain_value(value, type_, fmt="builtins", what=what, strict=strict)
        except Exception:
            err = problem("", f"{what} does not have the expected form", "invalid")
        raise err from exc


def explain(data: Buffer, type_: Any, *, fmt: Format, what: str) -> ValidationError:
    """Why ``data`` does not decode as ``type_``, found without reading msgspec's message.

    It never raises: whatever goes wrong while explaining (the input is hostile), the answer is
    still a refusal, at worst the general one."""
    try:
        return _explain(bytes(data), type_, fmt=fmt, what=what)
    except Exception:
        return problem("", f"{what} does not have the expected form", "invalid")


def _explain(data: bytes, type_: Any, *, fmt: Format, what: str) -> ValidationError:
    if not data.strip():
        return problem("", f"{what} is empty", "empty")
    if fmt == "json":
        syntax = _json_syntax(data, what)
        if syntax is not None:
            return syntax
    try:
        if fmt == "json":
            value = msgspec.json.decode(data)
        else:
            value = msgspec.msgpack.decode(data)
    except UnicodeDecodeError:
        return problem("", f"{what} holds text that is not valid UTF-8", "encoding")
    except RecursionError:
        return problem("", f"{what} is nested too deeply", "nesting")
    except msgspec.MsgspecError:
        if fmt == "json":  # the standard library parsed it: a value msgspec cannot hold
            rule = f"{what} holds a number too large, or text that is not valid Unicode"
            return problem("", rule, "invalid")
        return problem("", f"{what} is not valid MessagePack", "syntax")
    return _explain_value(value, type_, fmt=fmt, what=what, strict=True)


def _json_syntax(data: bytes, what: str) -> ValidationError | None:
    """Encoding and syntax errors, located by the standard library's decoder and parser."""
    if data.startswith(_BOM):
        rule = f"{what} starts with a byte order mark; save it as UTF-8 without one"
        return problem("", rule, "syntax")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if _utf8_cut(data, exc):
            return problem("", f"{what} ends in the middle of a character", "truncated")
        return problem("", f"{what} is not valid UTF-8 (byte {exc.start})", "encoding")
    try:
        json.loads(text)
    except RecursionError:
        return problem("", f"{what} is nested too deeply", "nesting")
    except ValueError as exc:  # JSONDecodeError, or a number past Python's 4300-digit limit
        if not isinstance(exc, json.JSONDecodeError):
            return None  # the syntax is fine: the walk judges the value
        if _unfinished_from(text, exc.pos):
            return problem("", f"{what} ends in the middle of a value", "truncated")
        return problem(
            "", f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno})", "syntax"
        )
    return None


_LITERALS: Final = ("true", "false", "null")
# A JSON number that could still be completed: "1.", "2e", "-", "1.5e+".
_NUMBER_PREFIX: Final = re.compile(r"-?(\d+(\.\d*)?([eE][+-]?\d*)?)?")
_NUMBER_CHARS: Final = frozenset("0123456789+-.eE")
_BOM: Final = b"\xef\xbb\xbf"


def _utf8_cut(data: bytes, exc: UnicodeDecodeError) -> bool:
    """Whether invalid UTF-8 is only the input stopping in the middle of a character."""
    lead = data[exc.start]
    need = (
        2
        if 0xC2 <= lead <= 0xDF
        else 3
        if 0xE0 <= lead <= 0xEF
        else 4
        if 0xF0 <= lead <= 0xF4
        else 0
    )
    return exc.end == len(data) and 0 < len(data) - exc.start < need


def _unfinished_from(text: str, pos: int) -> bool:
    """Whether the parser's error at ``pos`` is only the input stopping early: nothing but
    whitespace after it, a string that never closes, or the start of a literal or number."""
    tail = text[pos:].rstrip()
    if not tail:
        return True
    if tail[0] == '"':
        escaped = False
        for ch in tail[1:]:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                return False
        return True
    if any(word.startswith(tail) for word in _LITERALS) or tail == "-":
        return True
    # "1." or "2e": the parser stops after the digits it could use
    if text[pos - 1 : pos] == "\\" and tail[0] == "u" and len(tail) < 5:  # "\u12" cut short
        return all(c in "0123456789abcdefABCDEF" for c in tail[1:])
    start = pos
    while start > 0 and text[start - 1] in _NUMBER_CHARS:
        start -= 1
    number = text[start:].rstrip()
    return start < pos and _NUMBER_PREFIX.fullmatch(number) is not None


def _explain_value(
    value: object, type_: Any, *, fmt: Source, what: str, strict: bool
) -> ValidationError:
    try:
        found = find_mismatch(value, type_, fmt=fmt, strict=strict)
    except RecursionError:
        return problem("", f"{what} is nested too deeply", "nesting")
    if found is not None:
        return problem(found.path, found.rule, found.kind)
    # The walk found nothing msgspec objected to: say so without guessing at a field.
    return problem("", f"{what} does not have the expected form", "invalid")
