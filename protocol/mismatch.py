"""Why a decoded value does not fit a type: the walk behind protocol/decoding.py's errors.

The value (decoded without a type) is walked against ``msgspec.inspect.type_info`` of the target
type, mirroring msgspec's rules, and the first rule it breaks is raised as a ``Mismatch`` with
the field path, the rule in borderlink's words and a ``kind``. Regexes are explained by the
words registered for them with ``describe_pattern``, never shown.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time
from functools import cache
from typing import Any, Final, Literal

import msgspec
import msgspec.inspect as mi

from protocol.text import shown

Source = Literal["json", "msgpack", "builtins"]

_PATTERN_WORDS: dict[str, str] = {}
_MAX_LISTED: Final = 12
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


class _GaveUp(Exception):
    """The walk's budget ran out before it found the fault."""


class Mismatch(Exception):
    """The first rule a value breaks: where, in words, and which kind of rule."""

    def __init__(self, path: str, rule: str, kind: str) -> None:
        super().__init__(rule)
        self.path, self.rule, self.kind = path, rule, kind


def find_mismatch(value: object, type_: Any, *, fmt: Source, strict: bool) -> Mismatch | None:
    """The first rule ``value`` breaks as ``type_``, or None if the walk finds none (or gave up
    within its budget). A RecursionError passes through: the caller says "nested too deeply"."""
    try:
        _Walker(fmt, strict).check(value, mi.type_info(type_), "")
    except Mismatch as found:
        return found
    except _GaveUp:
        pass
    return None


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
    """Walks a decoded value against type info, raising the first Mismatch found."""

    def __init__(self, fmt: Source, strict: bool) -> None:
        self.fmt = fmt
        self.strict = strict
        self.budget = _WALK_BUDGET
        self._owner: tuple[type, str] | None = None  # the Struct field being checked

    def fail_type(self, value: object, t: mi.Type, path: str) -> typing.NoReturn:
        raise Mismatch(
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
            raise Mismatch(path, f"must be {listed}, not {_kind_of(value, self.fmt)}", "type")
        self.check(value, fitting[0], path, words)

    def check_tagged(
        self, value: Mapping[Any, Any], tagged: list[mi.StructType], path: str
    ) -> None:
        field = tagged[0].tag_field
        assert field is not None
        tags = [m.tag for m in tagged]
        if field not in value:
            raise Mismatch(_at(path, field), f"is required (one of {_listing(tags)})", "missing")
        for m in tagged:
            if value[field] == m.tag and type(value[field]) is type(m.tag):
                self.check_struct(value, m, path)
                return
        raise Mismatch(
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
            raise Mismatch(path, rule, "pattern")

    def check_length(self, n: int, lo: int | None, hi: int | None, path: str, unit: str) -> None:
        many = unit in ("items", "entries")
        if lo is not None and n < lo:
            if lo == 1:
                raise Mismatch(path, "must not be empty", "too_short")
            rule = (
                f"must hold at least {lo} {unit} (this holds {n})"
                if many
                else (f"must be at least {lo} {unit} long (this is {n})")
            )
            raise Mismatch(path, rule, "too_short")
        if hi is not None and n > hi:
            rule = (
                f"must hold at most {hi} {unit} (this holds {n})"
                if many
                else (f"must be at most {hi} {unit} long (this is {n})")
            )
            raise Mismatch(path, rule, "too_long")

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
                raise Mismatch(path, "is too large a number", "too_large")
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
                raise Mismatch(path, rule, "too_small")
        for bound, words in highs:
            if bound is not None and not (value <= bound if words == "at most" else value < bound):
                rule = f"must be {words} {_num(bound)} (this is {_num(value)})"
                raise Mismatch(path, rule, "too_large")
        if t.multiple_of is not None and value % t.multiple_of:
            raise Mismatch(path, f"must be a multiple of {t.multiple_of}", "invalid")

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
        raise Mismatch(path, f"must be one of {_listing(values)} (not {shown(value)})", "choice")

    def check_enum(self, value: object, t: mi.EnumType, path: str, _w: str | None) -> None:
        members = [m.value for m in t.cls]
        if not any(value == v and type(value) is type(v) for v in members):
            raise Mismatch(
                path, f"must be one of {_listing(members)} (not {shown(value)})", "choice"
            )

    def check_bytes(self, value: object, t: Any, path: str, _w: str | None) -> None:
        if isinstance(value, str) and self.fmt != "msgpack":
            try:
                raw = msgspec.convert(value, bytes)
            except msgspec.ValidationError:
                raise Mismatch(path, "must be base64 text", "invalid") from None
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
                raise Mismatch(path, f"must be {_expected(t, self.fmt)}", "invalid") from None
        if not isinstance(parsed, target) or (target is date and isinstance(parsed, datetime)):
            self.fail_type(value, t, path)
        tz = getattr(t, "tz", None)
        aware = getattr(parsed, "tzinfo", None) is not None
        if tz is True and not aware:
            raise Mismatch(path, "must be in UTC (end in Z)", "invalid")
        if tz is False and aware:
            raise Mismatch(path, "must not give a time zone offset", "invalid")

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
            raise Mismatch(
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
                    raise Mismatch(_at(path, key), f"must be {shown(t.tag)}", "choice")
                continue
            field = by_name.get(key) if isinstance(key, str) else None
            if field is None:
                if t.forbid_unknown_fields:
                    known = _listing([f.encode_name for f in t.fields])
                    raise Mismatch(
                        _at(path, shown(key)[1:-1]),
                        f"is not a field here (known fields: {known})",
                        "unknown_field",
                    )
                continue
            self._owner = (t.cls, field.name)
            self.check(item, field.type, _at(path, key))
        for field in t.fields:
            if field.required and field.encode_name not in value:
                raise Mismatch(_at(path, field.encode_name), "is required", "missing")

    def check_array_struct(self, value: object, t: mi.StructType, path: str) -> None:
        if not isinstance(value, list | tuple):
            self.fail_type(value, t, path)
        required = sum(1 for f in t.fields if f.required)
        if not required <= len(value) <= len(t.fields):
            count = f"{required}" if required == len(t.fields) else f"{required} to {len(t.fields)}"
            raise Mismatch(path, f"must hold {count} items (this holds {len(value)})", "invalid")
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
