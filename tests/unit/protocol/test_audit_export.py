"""The audit export file, built and checked without a node: what an auditor in another unit gets,
and every way the file can arrive damaged or forged. Each error names what a person must look at."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from protocol.audit import AuditEntry, encode_entry, origin_of
from protocol.audit_export import (
    EXPORT_FORMAT,
    AuditExport,
    export_text,
    read_export,
    verify_export,
)
from protocol.checkpoint import Checkpoint, sign_checkpoint
from protocol.errors import AuditError, BorderlinkError
from protocol.identity import Identity
from protocol.merkle import leaf_hash, root_from_leaf_hashes
from tests.conftest import NOW

CARD = "-----BEGIN BORDERLINK CARD-----\n(the log's card)\n-----END BORDERLINK CARD-----\n"


def entries(n: int) -> list[tuple[int, bytes]]:
    return [
        (
            i,
            encode_entry(
                AuditEntry(
                    time=NOW * 1000 + i, actor="node", kind="message.queued", message_id=f"{i:032x}"
                )
            ),
        )
        for i in range(n)
    ]


def signed(log: list[tuple[int, bytes]], who: Identity) -> str:
    origin = origin_of(who.node_id)
    root = root_from_leaf_hashes([leaf_hash(e) for _, e in log])
    return sign_checkpoint(Checkpoint(origin, len(log), root), origin, who.signing_key)


def exported(who: Identity, n: int = 7) -> str:
    log = entries(n)
    return export_text(CARD, signed(log, who), log)


def reread(text: str, change: Callable[[dict[str, Any]], None]) -> AuditExport:
    doc = json.loads(text)
    change(doc)
    return read_export(json.dumps(doc).encode(), "bar-audit.json")


def test_an_export_verifies_against_the_log_key(alice: Identity) -> None:
    text = exported(alice)
    assert text.endswith("}\n") and text.startswith('{\n "format": "borderlink-audit-export"')
    export = read_export(text.encode(), "bar-audit.json")
    assert export.card == CARD and [e.index for e in export.entries] == list(range(7))
    report = verify_export(export, alice.public)
    log = entries(7)
    assert (report.entries, report.checkpoint_size) == (7, 7)
    assert report.root == root_from_leaf_hashes([leaf_hash(e) for _, e in log])


def test_the_same_entries_give_the_same_file(alice: Identity) -> None:
    assert exported(alice) == exported(alice)


def test_an_export_signed_by_another_key_is_refused(alice: Identity, bob: Identity) -> None:
    export = read_export(exported(alice).encode(), "x")
    with pytest.raises(AuditError):
        verify_export(export, bob.public)


def _edit(index: int) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        e = doc["entries"][index]
        entry = json.loads(base64.b64decode(e["entry"]))
        entry["outcome"] = "nothing to see"
        e["entry"] = base64.b64encode(json.dumps(entry).encode()).decode()

    return apply


def _drop(index: int) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        del doc["entries"][index]

    return apply


def _extra(doc: dict[str, Any]) -> None:
    extra = dict(doc["entries"][-1])
    extra["index"] = len(doc["entries"])
    doc["entries"].append(extra)


def _swap(doc: dict[str, Any]) -> None:
    a, b = doc["entries"][2], doc["entries"][4]
    a["entry"], b["entry"] = b["entry"], a["entry"]


def _garble(doc: dict[str, Any]) -> None:
    doc["entries"][4]["entry"] = base64.b64encode(b'{"v":1,"time":').decode()


@pytest.mark.parametrize(
    ("damage", "text"),
    [
        (_edit(5), "audit entry 5 is damaged: inclusion proof does not lead to the root hash"),
        (_swap, "audit entry 2 is damaged"),
        (_garble, "audit entry 4 is damaged"),
        (_drop(5), "audit entry 5 is missing from the export (or out of order)"),
        (_drop(6), "audit entry 6 is missing from the export"),
        (_extra, "export has entries beyond the signed checkpoint (size 7)"),
    ],
    ids=["edited", "swapped", "garbled", "dropped", "tail-dropped", "extra"],
)
def test_a_damaged_export_names_the_entry(
    alice: Identity, damage: Callable[[dict[str, Any]], None], text: str
) -> None:
    export = reread(exported(alice), damage)
    with pytest.raises(AuditError) as err:
        verify_export(export, alice.public)
    assert err.value.message.startswith(text)


def test_a_file_that_is_no_json_or_no_export_is_refused_in_our_words() -> None:
    with pytest.raises(BorderlinkError) as err:
        read_export(b"[" * 100_000, "deep.json")
    assert err.value.message == "cannot read audit export deep.json: the file is nested too deeply"
    assert type(err.value) is BorderlinkError  # a file we cannot read: exit 1, not damage
    with pytest.raises(AuditError, match=r"^x\.json is not a borderlink audit export$"):
        read_export(json.dumps({"format": "something-else"}).encode(), "x.json")
    with pytest.raises(AuditError, match=r"^x\.json is not a borderlink audit export$"):
        read_export(b"[]", "x.json")


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"checkpoint": None}, "not a well-formed audit export: checkpoint: "),
        ({"card": 5}, "not a well-formed audit export: card: "),
        ({"entries": [7]}, "not a well-formed audit export: entries[0]: "),
    ],
)
def test_an_export_of_the_wrong_shape_names_the_field(change: dict[str, Any], text: str) -> None:
    doc = {"format": EXPORT_FORMAT, "card": CARD, "checkpoint": "x", "entries": [], **change}
    with pytest.raises(AuditError) as err:
        read_export(json.dumps(doc).encode(), "x.json")
    assert text in err.value.message
