"""Write docs/schemas/message-bodies.schema.json and card.schema.json from the msgspec Structs
(``make vectors``).

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
CARD_OUT = OUT.with_name("card.schema.json")


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


def card_schema() -> dict[str, Any]:
    from keys.card import CardBody

    schema = msgspec.json.schema(CardBody)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "borderlink contact card body (PROTOCOL.md 3.1), versions 1 and 2",
        "description": "The signed JSON body of a card. Rules a schema cannot state: version 2 "
        "requires tls_cert (a self-signed DER certificate whose subject is one common name, "
        "the card's node id in lowercase hex, PROTOCOL.md 3.5) and https:// "
        "endpoints, version 1 has no tls_cert; location starts with country; valid_until > "
        "valid_from; rotations (PROTOCOL.md 13.1) each signed by the key it replaces, in "
        "rising seq up to the card's seq, the last handing over to sign_key; the node id is "
        "that of the first link's old_key (else of sign_key). Patterns use Python regex syntax "
        "(\\Z = end of text); bytes are base64.",
        **schema,
    }


def card_text() -> str:
    return json.dumps(card_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text())
    CARD_OUT.write_text(card_text())
    print(f"wrote {OUT} and {CARD_OUT}")
