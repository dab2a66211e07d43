"""Write docs/schemas/message-bodies.schema.json from the msgspec Structs (``make vectors``).

The JSON Schema is normative for the shape of every body (PROTOCOL.md 9); docs/SCHEMAS.md lists
the rules a schema cannot state (check digits, code lists, cross-field rules).
tests/unit/protocol/test_schema_doc.py fails when the committed file is out of date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from protocol.schemas import MESSAGE_TYPES, SCHEMA_VERSION

OUT = Path(__file__).resolve().parent.parent / "docs" / "schemas" / "message-bodies.schema.json"


def build() -> dict[str, Any]:
    _, defs = msgspec.json.schema_components(
        list(MESSAGE_TYPES.values()), ref_template="#/$defs/{name}"
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"borderlink message bodies, schema version {SCHEMA_VERSION}",
        "description": "One of the four bodies, by the envelope's type: "
        + ", ".join(f"{name} = {cls.__name__}" for name, cls in MESSAGE_TYPES.items())
        + ". Patterns use Python regex syntax (\\Z = end of text). See docs/SCHEMAS.md.",
        "oneOf": [{"$ref": f"#/$defs/{cls.__name__}"} for cls in MESSAGE_TYPES.values()],
        "$defs": defs,
    }


def text() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text())
    print(f"wrote {OUT}")
