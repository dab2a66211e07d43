"""Strict typed decoding of JSON and MessagePack, every failure said in borderlink's own words.

This is the one place where msgspec's errors are translated (STYLE.md habit 3). msgspec does the
decoding; when it refuses, we never read its message (its wording changes between releases and
quotes regexes at users). We find out what is wrong ourselves, from structured information only:

1. the bytes: empty, not UTF-8 (the standard library's decoder gives the offset), not JSON (the
   standard library's parser gives line and column, and whether the input simply stopped);
2. the value, decoded again without a type: it is walked against ``msgspec.inspect.type_info`` of
   the target type (field names, constraints, literal values, tags), and the first rule it breaks
   becomes a ``ValidationError(path, rule)`` with a ``kind`` that callers may branch on.

Patterns are explained by the words registered for them (``describe_pattern``), never shown as a
regex. Values a peer or a file supplied are quoted with control and bidi characters escaped and
their length capped, so an error line cannot rewrite a terminal or a log.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time
from functools import cache
from typing import Any, Final, Generic, Literal, TypeVar

import msgspec
import msgspec.inspect as mi

from protocol.errors import ValidationError

T = TypeVar("T")
Format = Literal["json", "msgpack"]
Buffer = bytes | bytearray | memoryview | msgspec.Raw

# What msgspec can raise on bad input: its own errors (ValueErrors), a UnicodeDecodeError (also
# one) for invalid UTF-8 in some strings, and a RecursionError for a deeply nested value.
DECODE_ERRORS: Final = (msgspec.MsgspecError, ValueError, RecursionError)

_PATTERN_WORDS: dict[str, str] = {}
_MAX_SHOWN: Final = 60
_MAX_LISTED: Final = 12
# C0, DEL, C1, and the Unicode bidi controls and isolates, plus line/paragraph separators.
_UNSAFE_OTHERS: Final = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE: Final = re.compile(f"[\x00-\x1f{_UNSAFE_OTHERS}]")
# The same less the newline, which json.dumps writes only between values.
_UNSAFE_IN_JSON: Final = re.compile(f"[\x00-\x09\x0b-\x1f{_UNSAFE_OTHERS}]")
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
# Values the walk looks at before it gives up: a hostile input whose only fault is deep inside
# millions of good items costs a bounded amount of work, and gets the general refusal.
_WALK_BUDGET: Final = 100_000


def describe_pattern(pattern: str, words: str) -> str:
    """Register what a regex means to a person ("a name is 1-63 of a-z, ..."); returns the regex,
    so a module writes ``NAME_PATTERN = describe_pattern(r"...", "...")`` where it defines it."""
    _PATTERN_WORDS[pattern] = words
    return pattern


def pattern_words(pattern: str) -> str | None:
    return _PATTERN_WORDS.get(pattern)


def printable(text: str, limit: int = _MAX_SHOWN) -> str:
    """Text from outside, safe for a terminal or a log line: unsafe characters escaped, cut."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return _UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def shown(value: object) -> str:
    """A value from outside, as a person reads it: text quoted (``'PURPLE'``), other values as
    JSON writes them (``null``, ``true``, ``12``), bytes by their length."""
    if isinstance(value, str):
        return "'" + printable(value) + "'"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float):
        return printable(str(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return f"{len(value)} bytes"
    return f"{_kind_of(value, 'json')}"


def json_for_terminal(value: object) -> str:
    """Indented JSON of a message for a person: non-ASCII text kept readable, but control, bidi
    and separator characters written as JSON \\u escapes, so the output is still exact JSON
    and a peer's text cannot move the cursor or reorder what the terminal shows."""
    text = json.dumps(value, indent=2, ensure_ascii=False)  # escapes C0 inside strings
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


class _GaveUp(Exception):
    """The walk's budget ran out before it found the fault."""


class _Problem(Exception):
    """Raised inside the walk; becomes a ValidationError at the top."""

    def __init__(self, path: str, rule: str, kind: str) -> None:
        super().__init__(rule)
        self.path, self.rule, self.kind = path, rule, kind


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
    value: object, type_: Any, *, fmt: Format | Literal["builtins"], what: str, strict: bool
) -> ValidationError:
    walker = _Walker(fmt, strict)
    try:
        walker.check(value, mi.type_info(type_), "")
    except RecursionError:
        return problem("", f"{what} is nested too deeply", "nesting")
    except _Problem as p:
        return problem(p.path, p.rule, p.kind)
    except _GaveUp:
        pass
    # The walk found nothing msgspec objected to: say so without guessing at a field.
    return problem("", f"{what} does not have the expected form", "invalid")


def _num(value: float) -> str:
    """1000000000.0 reads as 1000000000; 0.5 stays 0.5."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _index(path: str, i: object) -> str:
    return f"{path}[{i}]"


def _kind_of(value: object, fmt: str) -> str:
    """What a value is, in the words of the format it came in."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(value, Mapping):
        return "an object" if fmt == "json" else "a map"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, datetime):
        return "a timestamp"
    return "a value of another kind"


def _expected(t: mi.Type, fmt: str) -> str:
    if isinstance(t, mi.Metadata):
        return _expected(t.type, fmt)
    if isinstance(t, mi.StrType):
        return "text"
    if isinstance(t, mi.IntType):
        return "a whole number"
    if isinstance(t, mi.FloatType):
        return "a number"
    if isinstance(t, mi.BoolType):
        return "true or false"
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, mi.BytesType | mi.ByteArrayType | mi.MemoryViewType):
        return "base64 text" if fmt == "json" else "bytes"
    if isinstance(t, mi.DateTimeType):
        return "a time such as 2026-12-02T08:30:00Z"
    if isinstance(t, mi.DateType):
        return "a date such as 2026-12-02"
    if isinstance(t, mi.StructType | mi.DictType | mi.TypedDictType | mi.DataclassType):
        if isinstance(t, mi.StructType) and t.array_like:
            return "a list"
        return "an object" if fmt == "json" else "a map"
    if isinstance(t, mi.ListType | mi.VarTupleType | mi.TupleType | mi.SetType | mi.FrozenSetType):
        return "a list"
    if isinstance(t, mi.LiteralType):
        return "one of " + _listing(t.values)
    return "a value of another kind"


def _listing(values: Sequence[object]) -> str:
    items = [str(v) for v in values[:_MAX_LISTED]]
    more = f" and {len(values) - _MAX_LISTED} more" if len(values) > _MAX_LISTED else ""
    return ", ".join(items) + more


@cache
def _declared_order(cls: type, field: str) -> tuple[object, ...]:
    """A Literal's values in the order the Struct declares them (inspect sorts them)."""
    try:
        hint = typing.get_type_hints(cls, include_extras=True)[field]
    except (KeyError, NameError, TypeError):
        return ()
    stack: list[object] = [hint]
    while stack:
        item = stack.pop()
        if typing.get_origin(item) is Literal:
            return typing.get_args(item)
        stack.extend(reversed(typing.get_args(item)))
    return ()


class _Walker:
    """Walks a decoded value against type info, raising the first _Problem found."""

    def __init__(self, fmt: Format | Literal["builtins"], strict: bool) -> None:
        self.fmt = fmt
        self.strict = strict
        self.budget = _WALK_BUDGET
        self._owner: tuple[type, str] | None = None  # the Struct field being checked

    def fail_type(self, value: object, t: mi.Type, path: str) -> typing.NoReturn:
        raise _Problem(
            path, f"must be {_expected(t, self.fmt)}, not {_kind_of(value, self.fmt)}", "type"
        )

    def check(self, value: object, t: mi.Type, path: str, words: str | None = None) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise _GaveUp
        if isinstance(t, mi.Metadata):
            extra = t.extra or {}
            self.check(value, t.type, path, extra.get("words", words))
            return
        if isinstance(t, mi.AnyType):
            return
        if isinstance(t, mi.UnionType):
            self.check_union(value, t, path, words)
            return
        handler = _HANDLERS.get(type(t))
        if handler is None:
            return  # a type these messages do not use: leave the verdict to the fallback
        handler(self, value, t, path, words)

    def check_union(self, value: object, t: mi.UnionType, path: str, words: str | None) -> None:
        members = list(t.types)
        if value is None and any(isinstance(m, mi.NoneType) for m in members):
            return
        others = [m for m in members if not isinstance(m, mi.NoneType)]
        tagged = [m for m in others if isinstance(m, mi.StructType) and m.tag_field is not None]
        if tagged and isinstance(value, Mapping):
            self.check_tagged(value, tagged, path)
            return
        fitting = [m for m in others if self.fits_kind(value, m)]
        if not fitting:
            if len(others) == 1:
                self.fail_type(value, others[0], path)
            listed = " or ".join(dict.fromkeys(_expected(m, self.fmt) for m in members))
            raise _Problem(path, f"must be {listed}, not {_kind_of(value, self.fmt)}", "type")
        self.check(value, fitting[0], path, words)

    def check_tagged(
        self, value: Mapping[Any, Any], tagged: list[mi.StructType], path: str
    ) -> None:
        field = tagged[0].tag_field
        assert field is not None
        tags = [m.tag for m in tagged]
        if field not in value:
            raise _Problem(_at(path, field), f"is required (one of {_listing(tags)})", "missing")
        for m in tagged:
            if value[field] == m.tag and type(value[field]) is type(m.tag):
                self.check_struct(value, m, path)
                return
        raise _Problem(
            _at(path, field),
            f"must be one of {_listing(tags)} (not {shown(value[field])})",
            "choice",
        )

    def fits_kind(self, value: object, t: mi.Type) -> bool:
        """Whether ``value`` is of the kind ``t`` takes, so a union member can be picked."""
        if isinstance(t, mi.Metadata):
            return self.fits_kind(value, t.type)
        if isinstance(t, mi.StrType | mi.LiteralType):
            return isinstance(value, str) or (
                isinstance(t, mi.LiteralType)
                and not isinstance(value, str)
                and any(type(v) is type(value) for v in t.values)
            )
        if isinstance(t, mi.IntType):
            return isinstance(value, int) and not isinstance(value, bool)
        if isinstance(t, mi.FloatType):
            return isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(t, mi.BoolType):
            return isinstance(value, bool)
        if isinstance(t, mi.BytesType | mi.ByteArrayType | mi.MemoryViewType):
            return isinstance(value, bytes | bytearray | memoryview | str)
        if isinstance(t, mi.DateTimeType | mi.DateType):
            return isinstance(value, str | datetime | date)
        if isinstance(t, mi.StructType) and t.array_like:
            return isinstance(value, list | tuple)
        if isinstance(t, mi.StructType | mi.DictType | mi.TypedDictType | mi.DataclassType):
            return isinstance(value, Mapping)
        if isinstance(
            t, mi.ListType | mi.VarTupleType | mi.TupleType | mi.SetType | mi.FrozenSetType
        ):
            return isinstance(value, list | tuple)
        return True

    # --- scalars ---------------------------------------------------------------------------

    def check_str(self, value: object, t: mi.StrType, path: str, words: str | None) -> None:
        if not isinstance(value, str):
            self.fail_type(value, t, path)
        self.check_length(len(value), t.min_length, t.max_length, path, "characters")
        if t.pattern is not None and not re.search(t.pattern, value):
            means = words or pattern_words(t.pattern)
            rule = f"must be {means}" if means else "is not in the form this field takes"
            raise _Problem(path, rule, "pattern")

    def check_length(self, n: int, lo: int | None, hi: int | None, path: str, unit: str) -> None:
        many = unit in ("items", "entries")
        if lo is not None and n < lo:
            if lo == 1:
                raise _Problem(path, "must not be empty", "too_short")
            rule = (
                f"must hold at least {lo} {unit} (this holds {n})"
                if many
                else (f"must be at least {lo} {unit} long (this is {n})")
            )
            raise _Problem(path, rule, "too_short")
        if hi is not None and n > hi:
            rule = (
                f"must hold at most {hi} {unit} (this holds {n})"
                if many
                else (f"must be at most {hi} {unit} long (this is {n})")
            )
            raise _Problem(path, rule, "too_long")

    def check_number(
        self, value: object, t: mi.IntType | mi.FloatType, path: str, _w: str | None
    ) -> None:
        if isinstance(t, mi.IntType):
            if isinstance(value, float) and not self.strict and value.is_integer():
                value = int(value)
            if isinstance(value, str) and not self.strict:
                value = self.lax_number(value, int, t, path)
            if not isinstance(value, int) or isinstance(value, bool):
                self.fail_type(value, t, path)
            if not _INT_MIN <= value <= _INT_MAX:
                raise _Problem(path, "is too large a number", "too_large")
        else:
            if isinstance(value, str) and not self.strict:
                value = self.lax_number(value, float, t, path)
            if not isinstance(value, int | float) or isinstance(value, bool):
                self.fail_type(value, t, path)
        lows = [(t.ge, "at least"), (t.gt, "greater than")]
        highs = [(t.le, "at most"), (t.lt, "less than")]
        for bound, words in lows:
            if bound is not None and not (value >= bound if words == "at least" else value > bound):
                rule = f"must be {words} {_num(bound)} (this is {_num(value)})"
                raise _Problem(path, rule, "too_small")
        for bound, words in highs:
            if bound is not None and not (value <= bound if words == "at most" else value < bound):
                rule = f"must be {words} {_num(bound)} (this is {_num(value)})"
                raise _Problem(path, rule, "too_large")
        if t.multiple_of is not None and value % t.multiple_of:
            raise _Problem(path, f"must be a multiple of {t.multiple_of}", "invalid")

    def lax_number(self, value: str, kind: type[float], t: mi.Type, path: str) -> float:
        """Text read as a number by msgspec's own lax rule (not Python's, which also takes
        "1_000" and other digits): the walk must agree with the decoder it explains."""
        try:
            number: float = msgspec.convert(value, kind, strict=False)
        except msgspec.ValidationError:
            self.fail_type(value, t, path)
        return number

    def check_bool(self, value: object, t: mi.BoolType, path: str, _w: str | None) -> None:
        if (
            isinstance(value, str)
            and not self.strict
            and value.lower() in ("true", "false", "1", "0")
        ):
            return
        if not isinstance(value, bool):
            self.fail_type(value, t, path)

    def check_none(self, value: object, t: mi.NoneType, path: str, _w: str | None) -> None:
        if value is not None:
            self.fail_type(value, t, path)

    def check_literal(self, value: object, t: mi.LiteralType, path: str, _w: str | None) -> None:
        if any(value == v and type(value) is type(v) for v in t.values):
            return
        values: Sequence[object] = t.values
        if self._owner is not None:
            declared = _declared_order(*self._owner)
            if set(declared) == set(t.values):
                values = declared
        raise _Problem(path, f"must be one of {_listing(values)} (not {shown(value)})", "choice")

    def check_enum(self, value: object, t: mi.EnumType, path: str, _w: str | None) -> None:
        members = [m.value for m in t.cls]
        if not any(value == v and type(value) is type(v) for v in members):
            raise _Problem(
                path, f"must be one of {_listing(members)} (not {shown(value)})", "choice"
            )

    def check_bytes(self, value: object, t: Any, path: str, _w: str | None) -> None:
        if isinstance(value, str) and self.fmt != "msgpack":
            try:
                raw = msgspec.convert(value, bytes)
            except msgspec.ValidationError:
                raise _Problem(path, "must be base64 text", "invalid") from None
        elif isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
        else:
            self.fail_type(value, t, path)
        self.check_length(len(raw), t.min_length, t.max_length, path, "bytes")

    def check_time(
        self,
        value: object,
        t: mi.DateTimeType | mi.DateType | mi.TimeType,
        path: str,
        _w: str | None,
    ) -> None:
        target = {mi.DateTimeType: datetime, mi.DateType: date, mi.TimeType: time}[type(t)]
        parsed = value
        if isinstance(value, str):
            try:
                parsed = msgspec.convert(value, target)
            except msgspec.ValidationError:
                raise _Problem(path, f"must be {_expected(t, self.fmt)}", "invalid") from None
        if not isinstance(parsed, target) or (target is date and isinstance(parsed, datetime)):
            self.fail_type(value, t, path)
        tz = getattr(t, "tz", None)
        aware = getattr(parsed, "tzinfo", None) is not None
        if tz is True and not aware:
            raise _Problem(path, "must be in UTC (end in Z)", "invalid")
        if tz is False and aware:
            raise _Problem(path, "must not give a time zone offset", "invalid")

    # --- containers ------------------------------------------------------------------------

    def check_sequence(self, value: object, t: Any, path: str, _w: str | None) -> None:
        if not isinstance(value, list | tuple):
            self.fail_type(value, t, path)
        self.check_length(len(value), t.min_length, t.max_length, path, "items")
        self._owner = None
        for i, item in enumerate(value):
            self.check(item, t.item_type, _index(path, i))

    def check_tuple(self, value: object, t: mi.TupleType, path: str, _w: str | None) -> None:
        if not isinstance(value, list | tuple):
            self.fail_type(value, t, path)
        if len(value) != len(t.item_types):
            raise _Problem(
                path,
                f"must hold exactly {len(t.item_types)} items (this holds {len(value)})",
                "invalid",
            )
        self._owner = None
        for i, (item, it) in enumerate(zip(value, t.item_types, strict=True)):
            self.check(item, it, _index(path, i))

    def check_dict(self, value: object, t: mi.DictType, path: str, _w: str | None) -> None:
        if not isinstance(value, Mapping):
            self.fail_type(value, t, path)
        self.check_length(len(value), t.min_length, t.max_length, path, "entries")
        self._owner = None
        for key, item in value.items():
            self.check(key, t.key_type, _index(path, shown(key)))
            self.check(item, t.value_type, _index(path, shown(key)))

    def check_struct(
        self, value: object, t: mi.StructType, path: str, _w: str | None = None
    ) -> None:
        if t.array_like:
            self.check_array_struct(value, t, path)
            return
        if not isinstance(value, Mapping):
            self.fail_type(value, t, path)
        by_name = {f.encode_name: f for f in t.fields}
        for key, item in value.items():
            if t.tag_field is not None and key == t.tag_field:
                if item != t.tag:
                    raise _Problem(_at(path, key), f"must be {shown(t.tag)}", "choice")
                continue
            field = by_name.get(key) if isinstance(key, str) else None
            if field is None:
                if t.forbid_unknown_fields:
                    known = _listing([f.encode_name for f in t.fields])
                    raise _Problem(
                        _at(path, shown(key)[1:-1]),
                        f"is not a field here (known fields: {known})",
                        "unknown_field",
                    )
                continue
            self._owner = (t.cls, field.name)
            self.check(item, field.type, _at(path, key))
        for field in t.fields:
            if field.required and field.encode_name not in value:
                raise _Problem(_at(path, field.encode_name), "is required", "missing")

    def check_array_struct(self, value: object, t: mi.StructType, path: str) -> None:
        if not isinstance(value, list | tuple):
            self.fail_type(value, t, path)
        required = sum(1 for f in t.fields if f.required)
        if not required <= len(value) <= len(t.fields):
            count = f"{required}" if required == len(t.fields) else f"{required} to {len(t.fields)}"
            raise _Problem(path, f"must hold {count} items (this holds {len(value)})", "invalid")
        for item, field in zip(value, t.fields, strict=False):
            self._owner = (t.cls, field.name)
            self.check(item, field.type, _at(path, field.encode_name))


_HANDLERS: Final[dict[type, Callable[[_Walker, Any, Any, str, str | None], None]]] = {
    mi.StrType: _Walker.check_str,
    mi.IntType: _Walker.check_number,
    mi.FloatType: _Walker.check_number,
    mi.BoolType: _Walker.check_bool,
    mi.NoneType: _Walker.check_none,
    mi.LiteralType: _Walker.check_literal,
    mi.EnumType: _Walker.check_enum,
    mi.BytesType: _Walker.check_bytes,
    mi.ByteArrayType: _Walker.check_bytes,
    mi.MemoryViewType: _Walker.check_bytes,
    mi.DateTimeType: _Walker.check_time,
    mi.DateType: _Walker.check_time,
    mi.TimeType: _Walker.check_time,
    mi.ListType: _Walker.check_sequence,
    mi.VarTupleType: _Walker.check_sequence,
    mi.SetType: _Walker.check_sequence,
    mi.FrozenSetType: _Walker.check_sequence,
    mi.TupleType: _Walker.check_tuple,
    mi.DictType: _Walker.check_dict,
    mi.StructType: _Walker.check_struct,
}
