"""Transcript of an operator reading, proving, signing and exporting the audit log with no node
running, and of an auditor in another unit verifying the export offline: ``borderlink audit``."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from keys.card import parse_card
from node.storage import AuditRow
from node.storage.sqlite import open_store
from protocol.audit import origin_of
from protocol.checkpoint import open_checkpoint
from protocol.merkle import leaf_hash, verify_inclusion
from protocol.signednote import Verifier
from tests.integration.harness import cli, cli_json, env, init_home, one_line_error
from tests.stores import audit

MSG = "0123456789abcdef" * 2
DAY_MS = 86_400_000


@pytest.fixture
def homes(tmp_path: Path) -> dict[str, Path]:
    """bar (the log), bel (trusts bar's card) and zag (trusts nobody); bar has some history."""
    h = {n: tmp_path / n for n in ("bar", "bel", "zag")}
    init_home(h["bar"], "bar-pcu")
    init_home(h["bel"], "belgrade-accu")
    init_home(h["zag"], "zagreb-jaitf")
    cli(h["bar"], "keys", "export-card", "-o", str(tmp_path / "bar.card"))
    fp = cli_json(h["bar"], "keys", "show")["fingerprint"]
    cli(h["bel"], "peers", "add", str(tmp_path / "bar.card"), "--fingerprint", fp)
    store = open_store(h["bar"] / "node.db")
    three_days_ago = time.time() - 3 * DAY_MS / 1000
    audit(store, "message.received", now=three_days_ago, message_id="ff" * 16, peer="belgrade-accu")
    audit(store, "message.queued", message_id=MSG, peer="belgrade-accu")
    audit(store, "message.delivered", message_id=MSG, peer="belgrade-accu")
    audit(store, "message.rejected", peer="belgrade-accu", outcome="replay")
    store.close()
    return h


def _rows(home: Path) -> list[AuditRow]:
    store = open_store(home / "node.db")
    try:
        return store.audit_rows()
    finally:
        store.close()


def log_json(home: Path, *args: str) -> list[dict[str, Any]]:
    page = cli_json(home, "audit", "log", *args)
    assert page["next"] is None  # without --limit, every matching entry
    return list(page["items"])


def test_audit_log_and_its_filters(homes: dict[str, Path]) -> None:
    bar = homes["bar"]
    everything = log_json(bar)
    assert [e["index"] for e in everything] == list(range(len(everything)))
    assert [e["kind"] for e in everything][:2] == ["node.initialised", "key.created"]

    assert [e["kind"] for e in log_json(bar, "--kind", "message.queued")] == ["message.queued"]
    assert [e["kind"] for e in log_json(bar, "--kind", "message.")] == [
        "message.received",
        "message.queued",
        "message.delivered",
        "message.rejected",
    ]
    assert log_json(bar, "--kind", "message") == []  # a prefix ends in a dot

    about = log_json(bar, "--message", MSG.upper())
    assert [(e["kind"], e["message_id"]) for e in about] == [
        ("message.queued", MSG),
        ("message.delivered", MSG),
    ]

    recent = log_json(bar, "--since", "2d")
    assert "message.received" not in {e["kind"] for e in recent}
    assert len(recent) == len(everything) - 1
    assert len(log_json(bar, "--since", "4d")) == len(everything)
    assert log_json(bar, "--since", "2999-01-01") == []
    both = log_json(bar, "--since", "1h", "--kind", "message.", "--message", MSG)
    assert [e["kind"] for e in both] == ["message.queued", "message.delivered"]

    human = cli(bar, "audit", "log", "--kind", "message.rejected").stdout
    assert human.count("\n") == 1 and "message.rejected" in human and "outcome=replay" in human
    assert cli(bar, "audit", "log", "--since", "2999-01-01").stdout == "no audit entries match\n"
    one_line_error(
        cli(bar, "audit", "log", "--since", "last tuesday", check=False),
        2,
        "--since takes a duration like 2h or a date like 2026-11-24, not 'last tuesday'",
    )


def test_audit_checkpoint_without_a_running_node_unlocks_the_keystore(
    homes: dict[str, Path], tmp_path: Path
) -> None:
    bar = homes["bar"]
    note = cli(bar, "audit", "checkpoint").stdout
    ident = parse_card((tmp_path / "bar.card").read_text(), now=None).identity
    cp = open_checkpoint(note, [Verifier(origin_of(ident.node_id), ident.sign_key)])
    size = len(log_json(bar))
    assert cp.size == size  # it covers its own checkpoint.published entry
    assert log_json(bar, "--kind", "checkpoint.published")[0]["actor"].startswith("cli")
    # again: nothing new to cover, the same note
    assert cli(bar, "audit", "checkpoint").stdout == note
    # no passphrase source and no terminal: one line, the keystore's exit code
    no_pass = {k: v for k, v in env().items() if k != "BORDERLINK_PASSPHRASE"}
    cli(bar, "audit", "log")  # reading needs no passphrase
    store = open_store(bar / "node.db")
    audit(store, "peer.added", peer="someone")
    store.close()
    one_line_error(
        cli(bar, "audit", "checkpoint", check=False, env=no_pass, stdin=subprocess.DEVNULL),
        1,
        "passphrase",
    )


def test_audit_prove_gives_a_proof_that_verifies(homes: dict[str, Path], tmp_path: Path) -> None:
    bar = homes["bar"]
    one_line_error(
        cli(bar, "audit", "prove", "3", check=False),
        2,
        "entry 3 is not covered by a signed checkpoint yet",
    )
    cli(bar, "audit", "checkpoint")
    ident = parse_card((tmp_path / "bar.card").read_text(), now=None).identity
    verifier = Verifier(origin_of(ident.node_id), ident.sign_key)
    entries = _rows(bar)
    for n in (0, 3, 7):
        got = cli_json(bar, "audit", "prove", str(n))
        cp = open_checkpoint(got["checkpoint"], [verifier])
        assert (got["index"], got["size"]) == (n, cp.size)
        assert got["leaf_hash"] == leaf_hash(entries[n].entry).hex()
        proof = [bytes.fromhex(h) for h in got["proof"]]
        verify_inclusion(leaf_hash(entries[n].entry), n, cp.size, proof, cp.root_hash)
    human = cli(bar, "audit", "prove", "3").stdout
    assert human.startswith(
        f"entry 3 of {cp.size}, leaf {leaf_hash(entries[3].entry).hex()}\nproof:\n"
    )
    one_line_error(cli(bar, "audit", "prove", str(cp.size), check=False), 2, "not covered")


def export(homes: dict[str, Path], tmp_path: Path) -> Path:
    out = tmp_path / "bar-audit.json"
    proc = cli(homes["bar"], "audit", "export", "-o", str(out))
    doc = json.loads(out.read_text())
    assert proc.stderr == f"exported {len(doc['entries'])} audit entries and checkpoint to {out}\n"
    return out


def test_an_export_verifies_where_the_node_is_trusted(
    homes: dict[str, Path], tmp_path: Path
) -> None:
    out = export(homes, tmp_path)
    doc = json.loads(out.read_text())
    size = len(doc["entries"])
    assert log_json(homes["bar"], "--kind", "audit.exported")[0]["outcome"] == f"size {size}"
    got = cli(homes["bel"], "audit", "verify", "--file", str(out))
    assert got.stdout == (
        f"ok: audit log of bar-pcu verified: {size} entries, signed checkpoint at size {size}\n"
    )
    assert cli(homes["bar"], "audit", "verify", "--file", str(out)).returncode == 0  # its own
    one_line_error(
        cli(homes["zag"], "audit", "verify", "--file", str(out), check=False),
        5,
        "borderlink: error: the export is from bar-pcu, whose card this home does not trust "
        "(hint: add the node's card with 'borderlink peers add' first)",
    )


def _tampered(out: Path, fn: object) -> Path:
    doc = json.loads(out.read_text())
    fn(doc)  # type: ignore[operator]
    bad = out.with_name("tampered.json")
    bad.write_text(json.dumps(doc))
    return bad


def _edit(index: int, change: dict[str, object]) -> object:
    def apply(doc: dict[str, list[dict[str, object]]]) -> None:
        e = doc["entries"][index]
        entry = json.loads(base64.b64decode(str(e["entry"])))
        entry.update(change)
        e["entry"] = base64.b64encode(json.dumps(entry).encode()).decode()

    return apply


def test_a_tampered_export_names_the_entry(homes: dict[str, Path], tmp_path: Path) -> None:
    out = export(homes, tmp_path)
    bel = homes["bel"]
    bad = _tampered(out, _edit(5, {"outcome": "nothing to see"}))
    one_line_error(
        cli(bel, "audit", "verify", "--file", str(bad), check=False),
        5,
        "borderlink: error: audit entry 5 is damaged: inclusion proof does not lead "
        "to the root hash",
    )

    def swap(doc: dict[str, list[dict[str, object]]]) -> None:
        a, b = doc["entries"][2], doc["entries"][4]
        a["entry"], b["entry"] = b["entry"], a["entry"]

    one_line_error(
        cli(bel, "audit", "verify", "--file", str(_tampered(out, swap)), check=False),
        5,
        "audit entry 2 is damaged",
    )

    def forged_root(doc: dict[str, str]) -> None:
        lines = doc["checkpoint"].split("\n")
        lines[2] = base64.b64encode(bytes(32)).decode()  # the signature no longer matches
        doc["checkpoint"] = "\n".join(lines)

    one_line_error(
        cli(bel, "audit", "verify", "--file", str(_tampered(out, forged_root)), check=False),
        5,
        "borderlink: error: ",
    )
    one_line_error(
        cli(bel, "audit", "verify", "--file", str(tmp_path / "none.json"), check=False),
        1,
        "cannot read audit export",
    )


def test_an_export_entry_that_is_not_an_entry_names_its_index(
    homes: dict[str, Path], tmp_path: Path
) -> None:
    out = export(homes, tmp_path)

    def garble(doc: dict[str, list[dict[str, object]]]) -> None:
        doc["entries"][4]["entry"] = base64.b64encode(b'{"v":1,"time":').decode()

    one_line_error(
        cli(homes["bel"], "audit", "verify", "--file", str(_tampered(out, garble)), check=False),
        5,
        "audit entry 4 is damaged",
    )


def test_an_export_with_an_entry_dropped_is_damaged(homes: dict[str, Path], tmp_path: Path) -> None:
    out = export(homes, tmp_path)

    def drop(doc: dict[str, list[dict[str, object]]]) -> None:
        del doc["entries"][5]

    one_line_error(
        cli(homes["bel"], "audit", "verify", "--file", str(_tampered(out, drop)), check=False),
        5,
        "audit entry 5 is missing",
    )


def _set(key: str, value: object) -> object:
    def apply(doc: dict[str, object]) -> None:
        doc[key] = value

    return apply


def _drop(key: str) -> object:
    def apply(doc: dict[str, object]) -> None:
        del doc[key]

    return apply


def _entry_past_the_checkpoint(doc: dict[str, list[dict[str, object]]]) -> None:
    extra = dict(doc["entries"][-1])
    extra["index"] = len(doc["entries"])
    doc["entries"].append(extra)


@pytest.mark.parametrize(
    ("damage", "text"),
    [
        (_drop("checkpoint"), "not a well-formed audit export: "),
        (_set("checkpoint", None), "not a well-formed audit export: checkpoint: "),
        (_set("card", 5), "not a well-formed audit export: card: "),
        (_set("entries", {"0": {}}), "not a well-formed audit export: entries: "),
        (_set("entries", [7]), "not a well-formed audit export: entries[0]: "),
        (_entry_past_the_checkpoint, "export has entries beyond the signed checkpoint"),
    ],
    ids=["no-checkpoint", "null-checkpoint", "card-5", "entries-dict", "entry-int", "extra-entry"],
)
def test_regression_damaged_export_gave_a_traceback(
    homes: dict[str, Path], tmp_path: Path, damage: object, text: str
) -> None:
    out = export(homes, tmp_path)
    bad = _tampered(out, damage)
    one_line_error(cli(homes["bel"], "audit", "verify", "--file", str(bad), check=False), 5, text)


def test_regression_deeply_nested_export_gave_a_recursion_traceback(
    homes: dict[str, Path], tmp_path: Path
) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    one_line_error(
        cli(homes["bel"], "audit", "verify", "--file", str(deep), check=False),
        1,
        f"cannot read audit export {deep}: the file is nested too deeply",
    )
