"""The published JSON Schema of message bodies matches the code (regenerate: make vectors)."""

from __future__ import annotations

from tests.schemas_gen import OUT, text


def test_committed_schema_is_current() -> None:
    assert OUT.read_text() == text(), "run: python -m tests.schemas_gen"
