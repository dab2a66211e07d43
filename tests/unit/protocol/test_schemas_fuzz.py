"""Whatever bytes arrive, ``decode_body`` returns a message or raises ValidationError, nothing else.

Three kinds of input per type: random bytes, byte-level damage to a valid body (flip, insert,
delete), and structural damage (one value anywhere in the tree replaced by a JSON value of any
type, or one key removed). Anything accepted must survive a round trip unchanged.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import ValidationError
from protocol.schemas import MESSAGE_TYPES, decode_body, encode_body, template

TYPES = list(MESSAGE_TYPES)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["", "MWCU6059784", "2024-05-14T06:42:00Z", "sea", "KGM", "a" * 32]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def outcome(type_name: str, data: bytes) -> None:
    """The property: a message that round-trips, or a ValidationError with a str path and rule."""
    try:
        msg = decode_body(type_name, data)
    except ValidationError as exc:
        assert isinstance(exc.path, str) and isinstance(exc.rule, str) and exc.rule
        return
    assert decode_body(type_name, encode_body(msg)) == msg


def locations(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON tree, as key/index tuples."""
    found = [here] if here else []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in items:
        found += locations(child, (*here, key))
    return found


TEMPLATES = {t: encode_body(template(t)) for t in TYPES}
TREES = {t: msgspec.json.decode(data) for t, data in TEMPLATES.items()}


@pytest.mark.parametrize("type_name", TYPES)
@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(type_name: str, data: bytes) -> None:
    outcome(type_name, data)


@pytest.mark.parametrize("type_name", TYPES)
@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.sampled_from("fid"), st.integers(0, 10**6), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    )
)
def test_damaged_bytes(type_name: str, edits: list[tuple[str, int, int]]) -> None:
    data = bytearray(TEMPLATES[type_name])
    for kind, where, byte in edits:
        i = where % (len(data) + 1)
        if kind == "i":
            data.insert(i, byte)
        elif data and i < len(data):
            if kind == "f":
                data[i] ^= 1 << (byte % 8)
            else:
                del data[i]
    outcome(type_name, bytes(data))


@pytest.mark.parametrize("type_name", TYPES)
@FUZZ
@given(choice=st.data())
def test_damaged_structure(type_name: str, choice: st.DataObject) -> None:
    tree = msgspec.json.decode(TEMPLATES[type_name])
    path = choice.draw(st.sampled_from(locations(TREES[type_name])))
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and choice.draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = choice.draw(json_values)
    outcome(type_name, msgspec.json.encode(tree))


DEEP = b"[" * 100_000 + b"]" * 100_000


SEIZURE = TEMPLATES["seizure-alert"]


@pytest.mark.parametrize(
    ("raw", "path", "rule"),
    [
        (
            SEIZURE.replace(b'{"mode":"sea",', b'{"junk":' + DEEP + b',"mode":"sea",'),
            "",
            "body is nested too deeply",
        ),
        (
            SEIZURE.replace(b'"parties":[', b'"parties":[' + DEEP + b","),
            "",
            "body is nested too deeply",
        ),
        (SEIZURE[:-1] + b',"x":' + DEEP + b"}", "", "body is nested too deeply"),
    ],
)
def test_regression_deep_nesting_raised_recursion_error(raw: bytes, path: str, rule: str) -> None:
    """msgspec skips values it has no type for (the tag scan of a tagged union, the version probe)
    recursively; a deeply nested one raised RecursionError straight through decode_body."""
    with pytest.raises(ValidationError) as info:
        decode_body("seizure-alert", raw)
    assert (info.value.path, info.value.rule) == (path, rule)
