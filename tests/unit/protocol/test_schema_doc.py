"""The published JSON Schema of message bodies matches the code (regenerate: make vectors)."""

from __future__ import annotations

import json

import msgspec

from keys.card import parse_card
from tests.schemas_gen import CARD_OUT, OUT, card_text, text
from tests.vectors import PROJECT_VECTORS


def test_committed_schema_is_current() -> None:
    assert OUT.read_text() == text(), "run: python -m tests.schemas_gen"


def test_committed_card_schema_is_current_and_names_both_versions() -> None:
    assert CARD_OUT.read_text() == card_text(), "run: python -m tests.schemas_gen"
    schema = json.loads(CARD_OUT.read_text())
    body = schema["$defs"]["CardBody"]
    assert body["properties"]["version"]["enum"] == [1, 2]
    assert "tls_cert" in body["properties"] and "tls_cert" not in body.get("required", [])
    vectors = json.loads((PROJECT_VECTORS / "envelope-v1.json").read_text())
    for which in ("card", "card_v1"):  # both vector cards' bodies have only declared members
        members = msgspec.json.decode(parse_card(vectors[which]["armored"], now=None).body_bytes)
        assert set(members) <= set(body["properties"]), which
