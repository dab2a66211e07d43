"""The one translator of decoding errors: every refusal in borderlink's words, found without
reading msgspec's message, with the path of what is wrong and a ``kind`` callers branch on."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Annotated, Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keys.card import CardBody
from keys.keystore import KeystoreDocument
from protocol.audit import AuditEntry
from protocol.batch import BatchResponse
from protocol.decoding import Decoder, convert, decode_json, pattern_words
from protocol.envelope import Envelope
from protocol.errors import ValidationError
from protocol.receipt import ReceiptBody, SignedReceipt
from protocol.schemas import MESSAGE_TYPES, encode_body, template
from protocol.text import shown
from tests.unit.protocol.test_schemas import rule_for

TLP_LABELS = "RED, AMBER+STRICT, AMBER, GREEN, CLEAR"
# Words another library uses; none may reach a user through the translator.
FOREIGN = ("Expected `", "Object contains", "Object missing", "Invalid enum", "regex", " - at `$")


def refusal(data: bytes, type_: Any = Any, **kw: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        Decoder[Any](type_, **kw).decode(data)
    return info.value


# The issue's own examples -----------------------------------------------------------------------


def test_a_name_is_explained_not_shown_as_a_regex() -> None:
    err = refusal(b'{"name": "b\xc3\xa4r-pcu"}', CardBody)
    assert (err.path, err.rule, err.kind) == (
        "name",
        "must be 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
        "pattern",
    )


def test_an_unknown_tlp_lists_the_five_labels_in_their_order() -> None:
    data = msgspec.json.decode(encode_body(template("seizure-alert")))
    data["meta"]["tlp"] = "PURPLE"
    assert rule_for("seizure-alert", data) == (
        "meta.tlp",
        f"must be one of {TLP_LABELS} (not 'PURPLE')",
    )


@pytest.mark.parametrize(
    ("raw", "rule", "kind"),
    [
        (b"", "alert.json is empty", "empty"),
        (b" \n\t", "alert.json is empty", "empty"),
        (b'{"a', "alert.json ends in the middle of a value", "truncated"),
        (b'{"meta": {"tlp": "RE', "alert.json ends in the middle of a value", "truncated"),
        (b'{"a": tru', "alert.json ends in the middle of a value", "truncated"),
        (b"[1.", "alert.json ends in the middle of a value", "truncated"),
        (b'{"a": 1,', "alert.json ends in the middle of a value", "truncated"),
        (b'{"a": 1}x', "alert.json is not valid JSON (line 1, column 9)", "syntax"),
        (b'{\n  "a": 1,\n  ,}', "alert.json is not valid JSON (line 3, column 3)", "syntax"),
        (
            b"\xef\xbb\xbf{}",
            "alert.json starts with a byte order mark; save it as UTF-8 without one",
            "syntax",
        ),
        (b"[1.5.", "alert.json is not valid JSON (line 1, column 5)", "syntax"),
        (b"[1e5e", "alert.json is not valid JSON (line 1, column 5)", "syntax"),
        (b'{"a": "\\u12', "alert.json ends in the middle of a value", "truncated"),
        (b'{"a": "caf\xc3', "alert.json ends in the middle of a character", "truncated"),
        (b'{"a": "\xff"}', "alert.json is not valid UTF-8 (byte 7)", "encoding"),
        (b"[" * 100_000, "alert.json is nested too deeply", "nesting"),
    ],
)
def test_whole_input_errors_name_the_input(raw: bytes, rule: str, kind: str) -> None:
    err = refusal(raw, what="alert.json")
    assert (err.path, err.rule, err.kind) == ("", rule, kind)


def test_the_call_may_name_the_input() -> None:
    with pytest.raises(ValidationError, match=r"^standard input is empty$"):
        Decoder[Any](Any, what="body").decode(b"", what="standard input")


# Field errors -----------------------------------------------------------------------------------


class Inner(msgspec.Struct, forbid_unknown_fields=True):
    n: Annotated[int, msgspec.Meta(ge=1, le=4)]


class Outer(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[Inner], msgspec.Meta(min_length=1, max_length=2)]
    when: Annotated[dt.datetime, msgspec.Meta(tz=True)]
    key: Annotated[bytes, msgspec.Meta(max_length=4)] = b""
    tags: dict[str, int] = {}


GOOD: dict[str, Any] = {"items": [{"n": 1}], "when": "2026-12-02T08:30:00Z"}


@pytest.mark.parametrize(
    ("change", "path", "rule", "kind"),
    [
        ({"items": []}, "items", "must not be empty", "too_short"),
        (
            {"items": [{"n": 1}] * 3},
            "items",
            "must hold at most 2 items (this holds 3)",
            "too_long",
        ),
        (
            {"items": [{"n": 1}, {"n": 9}]},
            "items[1].n",
            "must be at most 4 (this is 9)",
            "too_large",
        ),
        ({"items": [{"n": 0}]}, "items[0].n", "must be at least 1 (this is 0)", "too_small"),
        (
            {"items": [{"n": 1.5}]},
            "items[0].n",
            "must be a whole number, not a decimal number",
            "type",
        ),
        (
            {"items": [{"n": True}]},
            "items[0].n",
            "must be a whole number, not true or false",
            "type",
        ),
        ({"items": [{"n": 2**70}]}, "items[0].n", "is too large a number", "too_large"),
        ({"items": [{}]}, "items[0].n", "is required", "missing"),
        (
            {"items": [{"n": 1, "m": 2}]},
            "items[0].m",
            "is not a field here (known fields: n)",
            "unknown_field",
        ),
        ({"items": {"n": 1}}, "items", "must be a list, not an object", "type"),
        ({"when": "2026-12-02T08:30:00"}, "when", "must be in UTC (end in Z)", "invalid"),
        ({"when": "yesterday"}, "when", "must be a time such as 2026-12-02T08:30:00Z", "invalid"),
        ({"key": "!!"}, "key", "must be base64 text", "invalid"),
        ({"key": "AAAAAAA="}, "key", "must be at most 4 bytes long (this is 5)", "too_long"),
        ({"tags": {"a": "b"}}, "tags['a']", "must be a whole number, not text", "type"),
    ],
)
def test_field_errors(change: dict[str, Any], path: str, rule: str, kind: str) -> None:
    doc = {**copy.deepcopy(GOOD), **change}
    err = refusal(msgspec.json.encode(doc), Outer)
    assert (err.path, err.rule, err.kind) == (path, rule, kind)


def test_unknown_field_names_are_escaped_and_cut() -> None:
    doc = {**GOOD, "\u202eevil\x1b[2J" + "x" * 100: 1}
    err = refusal(msgspec.json.encode(doc), Outer)
    assert err.path.startswith("\\u202eevil\\u001b[2J") and err.path.endswith("...")
    assert err.kind == "unknown_field"


def test_choice_values_are_escaped() -> None:
    data = msgspec.json.decode(encode_body(template("feedback")))
    data["action"] = "seized\u2066\n"
    path, rule = rule_for("feedback", data)
    assert path == "action" and rule.endswith("(not 'seized\\u2066\\u000a')")


def test_msgpack_errors() -> None:
    assert refusal(b"\xc1", Envelope, fmt="msgpack", what="envelope").rule == (
        "envelope is not valid MessagePack"
    )
    err = refusal(msgspec.msgpack.encode({"v": "1"}), Envelope, fmt="msgpack")
    assert (err.path, err.kind) == ("v", "type")


def test_convert_of_builtins_non_strict() -> None:
    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        rate: float = 1.0
        burst: int = 1

    assert convert({"rate": "2.5", "burst": "3"}, Settings, strict=False) == Settings(2.5, 3)
    with pytest.raises(ValidationError) as info:
        convert({"rate": "fast"}, Settings, strict=False)
    assert (info.value.path, info.value.rule) == ("rate", "must be a number, not text")
    with pytest.raises(ValidationError) as info:
        convert({"rates": 1}, Settings, strict=False)
    assert info.value.path == "rates" and info.value.kind == "unknown_field"


def test_decode_json_untyped() -> None:
    assert decode_json(b'{"a": [1]}') == {"a": [1]}
    with pytest.raises(ValidationError, match=r"^x\.json is empty$"):
        decode_json(b"", what="x.json")


def test_shown_escapes_controls_and_bidi() -> None:
    assert shown("a\x00b\u202e\u2028c") == "'a\\u0000b\\u202e\\u2028c'"
    assert shown("x" * 100) == "'" + "x" * 57 + "...'"


# Every pattern has words ------------------------------------------------------------------------

WIRE_TYPES: list[Any] = [
    *MESSAGE_TYPES.values(),
    CardBody,
    Envelope,
    BatchResponse,
    ReceiptBody,
    SignedReceipt,
    AuditEntry,
    KeystoreDocument,
]


def _patterns(t: mi.Type, seen: set[type]) -> list[str]:
    if isinstance(t, mi.Metadata):
        return _patterns(t.type, seen)
    if isinstance(t, mi.StrType):
        return [t.pattern] if t.pattern else []
    found: list[str] = []
    if isinstance(t, mi.StructType):
        if t.cls in seen:
            return []
        seen.add(t.cls)
        for f in t.fields:
            found += _patterns(f.type, seen)
    for attr in ("types", "item_types"):
        for sub in getattr(t, attr, ()):
            found += _patterns(sub, seen)
    for attr in ("item_type", "key_type", "value_type"):
        if hasattr(t, attr):
            found += _patterns(getattr(t, attr), seen)
    return found


@pytest.mark.parametrize("type_", WIRE_TYPES, ids=lambda t: t.__name__)
def test_every_pattern_has_words(type_: Any) -> None:
    for pattern in _patterns(mi.type_info(type_), set()):
        assert pattern_words(pattern), f"no words registered for {pattern!r}"


# Fidelity: whatever msgspec refuses, the walk finds a reason for ---------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


# MessagePack carries integers of at most 64 bits.
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*at, i))
    return out


def _mutate(doc: Any, where: tuple[Any, ...], new: Any, delete: bool) -> Any:
    doc = copy.deepcopy(doc)
    if not where:
        return new
    parent = doc
    for key in where[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[where[-1]]
    else:
        parent[where[-1]] = new
    return doc


@pytest.mark.parametrize("type_name", list(MESSAGE_TYPES))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_refusal_of_a_mutated_body_has_a_located_reason(type_name: str, data: Any) -> None:
    doc = msgspec.json.decode(encode_body(template(type_name)))
    paths = _paths(doc)
    where = data.draw(st.sampled_from(paths))
    mutated = _mutate(doc, where, data.draw(json_values), data.draw(st.booleans()))
    raw = msgspec.json.encode(mutated)
    try:
        msgspec.json.decode(raw, type=MESSAGE_TYPES[type_name])
    except msgspec.ValidationError:
        err = refusal(raw, MESSAGE_TYPES[type_name], what="body")
        assert err.kind != "invalid" or err.path, err
        assert not any(word in err.message for word in FOREIGN), err.message


def _sample_envelope() -> Any:
    from protocol.envelope import seal
    from tests.conftest import NOW, fixed_identity

    env = seal(
        fixed_identity("alice"),
        [fixed_identity("bob").public],
        "feedback",
        encode_body(template("feedback")),
        now=NOW,
        ttl=3600,
    )
    return msgspec.msgpack.decode(env.encode())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_refusal_of_a_mutated_envelope_has_a_located_reason(data: Any) -> None:
    doc = _sample_envelope()
    where = data.draw(st.sampled_from(_paths(doc)))
    new = data.draw(msgpack_values | st.binary(max_size=40))
    raw = msgspec.msgpack.encode(_mutate(doc, where, new, data.draw(st.booleans())))
    try:
        msgspec.msgpack.decode(raw, type=Envelope)
    except msgspec.ValidationError:
        err = refusal(raw, Envelope, fmt="msgpack", what="envelope")
        assert err.kind != "invalid" or err.path, err
        assert not any(word in err.message for word in FOREIGN), err.message


def test_a_fault_behind_a_million_good_items_costs_a_bounded_walk() -> None:
    data = msgspec.json.encode([1] * 1_000_000 + ["x"])
    err = refusal(data, list[int], what="input")
    assert (err.path, err.rule, err.kind) == (
        "",
        "input does not have the expected form",
        "invalid",
    )
    err = refusal(msgspec.json.encode([1] * 1000 + ["x"]), list[int])
    assert (err.path, err.kind) == ("[1000]", "type")


def test_a_number_past_pythons_digit_limit_is_a_refusal_not_a_crash() -> None:
    data = b'{"meta": {"schema_version": 1' + b"0" * 5000 + b"}}"
    err = refusal(data, MESSAGE_TYPES["feedback"], what="body")
    assert err.rule == "body holds a number too large, or text that is not valid Unicode"


def test_lax_numbers_follow_msgspecs_rule_not_pythons() -> None:
    class Settings(msgspec.Struct):
        size: int = 1

    for text in ("1_000", "\u0665", " 5 "):
        with pytest.raises(ValidationError) as info:
            convert({"size": text}, Settings, strict=False)
        assert (info.value.path, info.value.rule) == ("size", "must be a whole number, not text")


def test_values_are_shown_as_a_person_reads_them() -> None:
    assert [shown(v) for v in (None, True, 12, 1.5, b"abc", [1])] == [
        "null",
        "true",
        "12",
        "1.5",
        "3 bytes",
        "a list",
    ]


def test_json_for_a_terminal_is_exact_json_without_unsafe_characters() -> None:
    from protocol.text import json_for_terminal

    value = {"a": "x\u202ey\u009b\n\x1b", "b": ["\u2066"]}
    text = json_for_terminal(value)
    assert not any(c in text for c in "\u202e\u009b\x1b\u2066")
    assert json.loads(text) == value
