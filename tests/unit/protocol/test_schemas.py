"""The codec: type names, versions, round trips, and decoding errors in the project's words.

Helpers here (``body``, ``rule_for``) are shared by the other test_schemas_* files: a test edits the
template's JSON as plain data and reads back the one (path, rule) the decoder reports.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from protocol.errors import ValidationError
from protocol.schemas import (
    MESSAGE_TYPES,
    SCHEMA_VERSION,
    Feedback,
    Retraction,
    RiskProfile,
    SeizureAlert,
    decode_body,
    encode_body,
    strip_personal_data,
    template,
    type_name_of,
)

TYPES = list(MESSAGE_TYPES)
FEEDBACK = encode_body(template("feedback"))


def body(type_name: str) -> Any:
    """The template of ``type_name`` as plain JSON data (dicts and lists), to edit."""
    return msgspec.json.decode(encode_body(template(type_name)))


def rule_for(type_name: str, data: Any) -> tuple[str, str]:
    """Decode ``data`` (bytes, or JSON data to encode) and return the (path, rule) it is refused for."""
    raw = data if isinstance(data, bytes) else msgspec.json.encode(data)
    with pytest.raises(ValidationError) as info:
        decode_body(type_name, raw)
    return info.value.path, info.value.rule


# Types and names --------------------------------------------------------------------------------


def test_message_types() -> None:
    assert MESSAGE_TYPES == {
        "seizure-alert": SeizureAlert,
        "risk-profile": RiskProfile,
        "feedback": Feedback,
        "retraction": Retraction,
    }
    assert SCHEMA_VERSION == 1


@pytest.mark.parametrize("type_name", TYPES)
def test_type_name_of(type_name: str) -> None:
    assert type_name_of(template(type_name)) == type_name


def test_type_name_of_something_else() -> None:
    with pytest.raises(ValidationError) as info:
        type_name_of(object())  # type: ignore[arg-type]
    assert (info.value.path, info.value.rule) == ("type", "object is not a borderlink message")


@pytest.mark.parametrize("use", [lambda t: decode_body(t, b"{}"), template])
def test_unknown_type(use: Any) -> None:
    with pytest.raises(ValidationError) as info:
        use("warning")
    assert info.value.path == "type"
    assert info.value.rule == (
        "unknown message type 'warning'; "
        "expected one of seizure-alert, risk-profile, feedback, retraction"
    )


# Round trips ------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_name", TYPES)
def test_template_round_trip(type_name: str) -> None:
    msg = template(type_name)
    data = encode_body(msg)
    assert decode_body(type_name, data) == msg
    assert encode_body(decode_body(type_name, data)) == data


@pytest.mark.parametrize("type_name", TYPES)
def test_encoding_is_compact_and_deterministic(type_name: str) -> None:
    data = encode_body(template(type_name))
    assert data == encode_body(template(type_name))
    assert b"\n" not in data and b'": ' not in data
    assert data.startswith(b'{"meta":{"schema_version":1,')


def test_optional_fields_are_left_out_not_null() -> None:
    data = encode_body(template("retraction"))
    assert b"null" not in data and b"in_reply_to" not in data


def test_other_key_order_and_whitespace_decode_to_the_same_message() -> None:
    data = body("feedback")
    reordered = dict(reversed(list(data.items())))
    raw = msgspec.json.format(msgspec.json.encode(reordered), indent=4)
    assert decode_body("feedback", raw) == template("feedback")


def test_encode_refuses_a_message_built_wrong_in_code() -> None:
    msg = msgspec.structs.replace(template("feedback"), refers_to="not-an-id")
    with pytest.raises(ValidationError) as info:
        encode_body(msg)
    assert info.value.path == "refers_to"


def test_body_of_one_type_is_not_another() -> None:
    assert rule_for("retraction", encode_body(template("feedback"))) == (
        "refers_to",
        "is not a field here (known fields: meta, retracts, kind, reason, replacement)",
    )


# Schema versions --------------------------------------------------------------------------------


@pytest.mark.parametrize("type_name", TYPES)
@pytest.mark.parametrize("version", [0, 2, -1, 2**40])
def test_unsupported_schema_version(type_name: str, version: int) -> None:
    data = body(type_name)
    data["meta"]["schema_version"] = version
    assert rule_for(type_name, data) == (
        "meta.schema_version",
        f"schema version {version} is not supported (this node reads 1)",
    )


def test_newer_version_is_refused_for_its_version_not_its_new_fields() -> None:
    data = body("seizure-alert")
    data["meta"]["schema_version"] = 2
    data["meta"]["caveats"] = ["NOFORN"]
    data["vehicle_colour"] = "red"
    assert rule_for("seizure-alert", data)[0] == "meta.schema_version"


def test_schema_version_must_be_an_int() -> None:
    data = body("feedback")
    data["meta"]["schema_version"] = "1"
    assert rule_for("feedback", data) == ("meta.schema_version", "must be a whole number, not text")


# Decoding errors in the project's words (path, rule) ------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (b"", "body is empty"),
        (b"{", "body ends in the middle of a value"),
        (b"[1]", "must be an object, not a list"),
        (b"null", "must be an object, not null"),
        (b"\xff", "body is not valid UTF-8 (byte 0)"),
        (FEEDBACK.replace(b"Container", b"\xffontainer"), "body is not valid UTF-8 (byte 248)"),
        (
            FEEDBACK.replace(b"Container", b"\\ud800ontainer"),
            "body holds a number too large, or text that is not valid Unicode",
        ),
    ],
)
def test_malformed_bodies_are_whole_body_errors(raw: bytes, rule: str) -> None:
    assert rule_for("feedback", raw) == ("", rule)


def test_escaped_surrogate_pairs_are_text() -> None:
    raw = FEEDBACK.replace(b"Container", b"\\ud83d\\udce6 Container")
    msg = decode_body("feedback", raw)
    assert isinstance(msg, Feedback) and msg.details and msg.details.startswith("\U0001f4e6 ")


def edit(type_name: str, path: str, value: Any) -> Any:
    """The template with the dotted ``path`` (list items as .0) set to ``value``; ``...`` deletes."""
    data = body(type_name)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is ...:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "where", "rule"),
    [
        (
            "meta.colour",
            "red",
            "meta.colour",
            "is not a field here (known fields: schema_version, priority, tlp, handling, source_reliability, info_accuracy, supersedes, in_reply_to)",
        ),
        ("meta.priority", ..., "meta.priority", "is required"),
        (
            "meta.priority",
            "asap",
            "meta.priority",
            "must be one of routine, urgent, flash (not 'asap')",
        ),
        (
            "meta.tlp",
            "WHITE",
            "meta.tlp",
            "must be one of RED, AMBER+STRICT, AMBER, GREEN, CLEAR (not 'WHITE')",
        ),
        (
            "meta.tlp",
            "amber",
            "meta.tlp",
            "must be one of RED, AMBER+STRICT, AMBER, GREEN, CLEAR (not 'amber')",
        ),
        ("meta.handling", "H4", "meta.handling", "must be one of H0, H1, H2, H3 (not 'H4')"),
        (
            "meta.source_reliability",
            "D",
            "meta.source_reliability",
            "must be one of A, B, C, X (not 'D')",
        ),
        ("meta.info_accuracy", 5, "meta.info_accuracy", "must be at most 4 (this is 5)"),
        ("meta.info_accuracy", 0, "meta.info_accuracy", "must be at least 1 (this is 0)"),
        (
            "meta.info_accuracy",
            2.0,
            "meta.info_accuracy",
            "must be a whole number, not a decimal number",
        ),
        (
            "meta.supersedes",
            "5F2B8C0E9D4A4E6B8A1C3D7E9F0A1B2C",
            "meta.supersedes",
            "must be a message id (32 lowercase hex characters)",
        ),
        (
            "meta.in_reply_to",
            "5f2b8c0e9d4a4e6b8a1c3d7e9f0a1b2",
            "meta.in_reply_to",
            "must be a message id (32 lowercase hex characters)",
        ),
    ],
)
def test_meta_rules(path: str, value: Any, where: str, rule: str) -> None:
    for type_name in TYPES:
        assert rule_for(type_name, edit(type_name, path, value)) == (where, rule)


def test_regression_unknown_field_name_reached_the_terminal_raw() -> None:
    """msgspec quotes an unknown field name as sent; ESC sequences in it repainted the terminal of
    whoever ran ``borderlink validate`` and could forge log lines."""
    data = edit("feedback", "meta.\x1b[2J\nok: valid", 1)
    assert rule_for("feedback", data) == (
        "meta.\\u001b[2J\\u000aok: valid",
        "is not a field here (known fields: schema_version, priority, tlp, handling, source_reliability, info_accuracy, supersedes, in_reply_to)",
    )


def test_long_unknown_field_name_is_cut() -> None:
    path, rule = rule_for("feedback", edit("feedback", "x" * 5000, 1))
    assert path == "x" * 57 + "..."
    assert rule.startswith("is not a field here (known fields: meta, refers_to, action")


def test_meta_optional_ids_may_be_null() -> None:
    data = edit("feedback", "meta.in_reply_to", None)
    assert decode_body("feedback", msgspec.json.encode(data)).meta.in_reply_to is None


# Personal data ----------------------------------------------------------------------------------


def test_strip_personal_data_removes_parties_only() -> None:
    msg = template("seizure-alert")
    assert isinstance(msg, SeizureAlert) and msg.parties
    stripped = strip_personal_data(msg)
    assert isinstance(stripped, SeizureAlert)
    assert stripped.parties is None
    assert msg.parties, "the original is left as it was"
    assert msgspec.structs.replace(stripped, parties=msg.parties) == msg
    data = encode_body(stripped)
    assert b"parties" not in data and b"Example Person" not in data
    assert decode_body("seizure-alert", data) == stripped


@pytest.mark.parametrize("type_name", ["risk-profile", "feedback", "retraction"])
def test_strip_personal_data_leaves_other_types_alone(type_name: str) -> None:
    msg = template(type_name)
    copy = strip_personal_data(msg)
    assert copy == msg and copy is not msg


def test_regression_trailing_newline_is_not_one_line() -> None:
    """Python's "$" matches before a final newline; every pattern must end in \\Z instead
    (found by an implementation written from PROTOCOL.md alone)."""
    import json

    for type_name, field in (("feedback", "refers_to"), ("risk-profile", "title")):
        data = json.loads(encode_body(template(type_name)))
        data[field] += "\n"
        with pytest.raises(ValidationError) as err:
            decode_body(type_name, json.dumps(data).encode())
        assert err.value.path == field
