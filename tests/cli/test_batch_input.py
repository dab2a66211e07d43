"""Reading a batch send's bodies (cli/batch_input.py): JSON lines numbered as an editor numbers
them, blank lines skipped, a document over several lines still one body, and the first bad body
refused by its file and line in one sentence."""

from __future__ import annotations

import json

import pytest

from cli.batch_input import Piece, checked, json_lines, pieces
from node.batches import MAX_BATCH
from protocol.errors import UsageError, ValidationError
from protocol.schemas import encode_body
from protocol.templates import template

ALERT = encode_body(template("seizure-alert"))


def with_tlp(tlp: str) -> bytes:
    body = json.loads(ALERT)
    body["meta"]["tlp"] = tlp
    return json.dumps(body).encode()


def refusal(found: list[Piece]) -> str:
    with pytest.raises(ValidationError) as err:
        checked("seizure-alert", found)
    return err.value.message


def test_json_lines_are_numbered_from_one_and_blank_lines_skipped() -> None:
    data = ALERT + b"\r\n\n   \n" + with_tlp("GREEN") + b"\n"
    found = json_lines(data)
    assert [(p.where, p.line) for p in found] == [
        ("standard input line 1", 1),
        ("standard input line 4", 4),
    ]
    assert checked("seizure-alert", found) == [ALERT, with_tlp("GREEN")]


def test_a_document_over_several_lines_is_one_body_and_nothing_is_empty() -> None:
    pretty = json.dumps(json.loads(ALERT), indent=2).encode()
    assert json_lines(pretty) == [Piece(pretty, "standard input")]
    assert refusal(json_lines(b"\n \n")) == "standard input is empty"


def test_the_first_bad_line_is_named_with_what_is_wrong() -> None:
    lines = ALERT + b"\n" + with_tlp("PURPLE") + b"\n" + b"{nope\n"
    said = refusal(json_lines(lines))
    assert said.startswith("standard input line 2: meta.tlp: must be one of")
    assert refusal(json_lines(ALERT + b"\n{nope}\n")) == (
        "standard input line 2 is not valid JSON (column 2)"
    )
    assert refusal(json_lines(ALERT + b'\n{"meta": \n')) == (
        "standard input line 2 ends in the middle of a value"
    )


def test_files_are_named_and_stdin_is_read_once() -> None:
    files = {"a.json": ALERT, "b.json": with_tlp("PURPLE"), "-": ALERT + b"\n" + ALERT}
    found = pieces(["a.json", "-", "b.json"], files.__getitem__)
    assert [p.where for p in found] == [
        "a.json",
        "standard input line 1",
        "standard input line 2",
        "b.json",
    ]
    assert refusal(found).startswith("b.json: meta.tlp: must be one of")
    with pytest.raises(UsageError, match="can be given once"):
        pieces(["-", "-"], files.__getitem__)


def test_the_bound_is_checked_before_any_body_is() -> None:
    many = b"{}\n" * (MAX_BATCH + 1)
    with pytest.raises(UsageError, match=f"at most {MAX_BATCH:,} messages, not {MAX_BATCH + 1:,}"):
        pieces(["-"], lambda _: many)
