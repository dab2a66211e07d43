"""Tampering with a stopped node's audit log, as someone with the database file could: edit an
entry, reorder two, delete the tail, or replace the log with a shorter (or same-size) consistent
one. ``audit verify`` catches what local evidence allows; the peer that witnessed the log catches
the rest over the network, and keeps both signed checkpoints as evidence.

Background rounds are slowed to an hour so every round here is one the test asks for through the
admin API (POST /v1/audit/checkpoint on the log, POST /v1/audit/witness on the witness); the happy
path instead lets the background rounds run fast.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cli.admin_client import call, exchange
from keys.card import parse_card
from node.storage.sqlite import open_store
from protocol.audit import decode_entry, encode_entry, origin_of
from protocol.checkpoint import open_checkpoint
from protocol.merkle import MerkleAccumulator, leaf_hash
from protocol.signednote import Verifier
from tests.integration.harness import NodeProc, make_network, stop_all
from tests.integration.waiting import start, wait_until
from tests.stores import audit

SLOW = {"BORDERLINK_AUDIT_CHECKPOINT_INTERVAL": "3600", "BORDERLINK_AUDIT_WITNESS_INTERVAL": "3600"}
FAST = {"BORDERLINK_AUDIT_CHECKPOINT_INTERVAL": "0.3", "BORDERLINK_AUDIT_WITNESS_INTERVAL": "0.5"}
PADDING = 8  # real events added before the first checkpoint, so there is a log worth tampering
DAMAGED = "the tree no longer matches the root recorded when it was appended"


def admin_checkpoint(node: NodeProc) -> tuple[int, str]:
    """POST /v1/audit/checkpoint answers text/plain (errors as JSON), so not through call()."""
    status, body = exchange(node.home / "admin.sock", "POST", "/v1/audit/checkpoint", None, 30)
    return status, body.decode()


def witness_round(node: NodeProc) -> dict[str, str]:
    return dict(call(node.home / "admin.sock", "POST", "/v1/audit/witness"))


def db(node: NodeProc) -> sqlite3.Connection:
    return sqlite3.connect(node.home / "node.db", isolation_level=None)


def query(node: NodeProc, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with db(node) as c:
        return c.execute(sql, args).fetchall()


def fix_state(c: sqlite3.Connection) -> None:
    """Make audit_state agree with the rows left, as a careful tamperer would."""
    rows = c.execute("SELECT entry FROM audit ORDER BY idx").fetchall()
    acc = MerkleAccumulator.from_leaf_hashes(leaf_hash(bytes(r[0])) for r in rows)
    c.execute(
        "INSERT OR REPLACE INTO audit_state (id, size, peaks) VALUES (0, ?, ?)",
        (acc.size, b"".join(acc.peaks)),
    )


def cover_tracks(node: NodeProc, thorough: bool = True) -> None:
    """Drop the node's own checkpoints and how far it verified its log; a thorough attacker also
    recomputes the roots the node recorded at append time, so nothing local contradicts the
    tampered log any more."""
    from protocol.merkle import MerkleAccumulator, leaf_hash

    with db(node) as c:
        c.execute("DELETE FROM checkpoints")
        c.execute("DELETE FROM cosignatures")
        c.execute("DELETE FROM audit_verified")
        if not thorough:
            return
        acc = MerkleAccumulator()
        for idx, entry in c.execute("SELECT idx, entry FROM audit ORDER BY idx").fetchall():
            acc.append(leaf_hash(bytes(entry)))
            c.execute("UPDATE audit SET root = ? WHERE idx = ?", (acc.root(), idx))
        c.execute("UPDATE audit_state SET size = ?, peaks = ?", (acc.size, b"".join(acc.peaks)))
        c.execute("DELETE FROM checkpoints")
        c.execute("DELETE FROM cosignatures")


def verify(node: NodeProc) -> tuple[int, str, str]:
    proc = node.cli("audit", "verify", check=False)
    return proc.returncode, proc.stdout, proc.stderr


@dataclass
class Watched:
    log: NodeProc  # the node whose audit log is tampered with
    witness: NodeProc
    size: int  # the checkpoint size the witness cosigned

    def restart(self) -> None:
        start(self.log)


def _verifier_of(node: NodeProc) -> Verifier:
    """The log's key, from the card make_network exported (as the witness has it)."""
    ident = parse_card((node.home.parent / f"{node.name}.card").read_text(), now=None).identity
    return Verifier(origin_of(ident.node_id), ident.sign_key)


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Watched]:
    """bar-pcu's log, with PADDING real events, signed and cosigned once by belgrade-accu."""
    nodes = make_network(tmp_path, ["bar-pcu", "belgrade-accu"], start=False, extra_env=SLOW)
    log, witness = nodes["bar-pcu"], nodes["belgrade-accu"]
    store = open_store(log.home / "node.db")
    for i in range(PADDING):
        audit(store, "message.queued", message_id=f"{i:032x}", peer="belgrade-accu")
    store.close()
    for n in nodes.values():
        n.start(wait=False)
    for n in nodes.values():
        n.wait_ready()
    try:
        status, note = admin_checkpoint(log)
        assert status == 200, note
        size = int(note.split("\n")[1])
        assert witness_round(witness) == {"bar-pcu": f"cosigned size {size}"}
        assert query(log, "SELECT size FROM cosignatures") == [(size,)]
        yield Watched(log, witness, size)
    finally:
        stop_all(nodes)


def assert_caught(w: Watched, kind: str, new_size: int) -> None:
    """The witness's round finds misbehaviour of ``kind``; status, evidence, log all show it."""
    got = witness_round(w.witness)
    assert got["bar-pcu"].startswith("MISBEHAVIOUR: "), got
    status = w.witness.json("status")
    assert [(m["peer"], m["kind"]) for m in status["misbehaviour"]] == [("bar-pcu", kind)]
    # Evidence: both checkpoints, each still verifiable with bar-pcu's key alone.
    [(node_id, ev_kind, old_note, new_note)] = query(
        w.witness, "SELECT node, kind, old_note, new_note FROM evidence"
    )
    verifier = _verifier_of(w.log)
    old = open_checkpoint(old_note, [verifier])
    new = open_checkpoint(new_note, [verifier])
    assert bytes(node_id) == verifier_node_id(verifier)
    assert ev_kind == kind
    assert old.size == w.size
    assert new.size == new_size
    assert old.root_hash != new.root_hash
    entries = json.loads(
        w.witness.cli("audit", "log", "--kind", "checkpoint.inconsistent", "--json").stdout
    )["items"]
    assert [(e["peer"], e["outcome"]) for e in entries] == [("bar-pcu", kind)]
    assert "witness.misbehaviour" in w.witness.log.read_text()


def verifier_node_id(v: Verifier) -> bytes:
    return bytes.fromhex(v.name.removeprefix("borderlink.log/"))


# the happy path ---------------------------------------------------------------------------------


WITNESSING = {"checkpoint.received", "checkpoint.cosigned"}  # entries that call for no checkpoint


def test_two_nodes_witness_and_cosign_each_other(tmp_path: Path) -> None:
    """Each node witnesses and cosigns the other's log, and then the logs settle: witnessing
    entries alone do not call for new checkpoints (else each cosignature would make the other
    log sign again, for ever). Settling is read from what the nodes say and keep, not from a
    quiet spell: each witness's background round finds the other's checkpoint unchanged since it
    cosigned it, and neither log holds a checkpoint that followed witnessing entries only."""
    nodes = make_network(tmp_path, ["bar-pcu", "belgrade-accu"], extra_env=FAST)
    pairs = (("bar-pcu", "belgrade-accu"), ("belgrade-accu", "bar-pcu"))

    def audits() -> dict[str, dict[str, Any]]:
        return {n: node.json("status")["audit"] for n, node in nodes.items()}

    def settled() -> dict[str, dict[str, Any]] | None:
        st = audits()
        for me, other in pairs:
            mine, theirs = st[me], st[other]
            seen = f"consistent at size {theirs['checkpoint_size']}"
            if theirs["cosignatures"] != 1 or mine["witnessing"].get(other) != seen:
                return None
        return st

    try:
        before = wait_until(settled, lambda: f"each log cosigned, then left alone: {audits()}")
        for me, other in pairs:
            code, out, err = verify(nodes[me])
            assert code == 0, err
            assert out.startswith("ok: audit log verified: ")
            assert out.rstrip().endswith(f"; cosigned by {other}")
            assert nodes[me].json("status")["misbehaviour"] == []

        for name, node in nodes.items():
            kinds = [decode_entry(bytes(e)).kind for (e,) in query(node, "SELECT entry FROM audit")]
            published = [i for i, k in enumerate(kinds) if k == "checkpoint.published"]
            for prev, nxt in itertools.pairwise(published):
                assert set(kinds[prev + 1 : nxt]) - WITNESSING, (name, kinds)
            assert set(kinds[before[name]["checkpoint_size"] :]) <= WITNESSING, (name, kinds)
        # A witness round on each node now (the step that would extend the other's log again)
        # finds nothing new to cosign, and adds nothing to either log.
        for me, other in pairs:
            size = before[other]["checkpoint_size"]
            assert witness_round(nodes[me]) == {other: f"consistent at size {size}"}
        after = audits()
        assert {n: (s["size"], s["checkpoint_size"]) for n, s in before.items()} == {
            n: (s["size"], s["checkpoint_size"]) for n, s in after.items()
        }
    finally:
        stop_all(nodes)


# the four tamperings (and a fork) ---------------------------------------------------------------


def test_an_edited_entry(watched: Watched) -> None:
    w = watched
    w.log.stop()
    with db(w.log) as c:
        entry = decode_entry(
            bytes(c.execute("SELECT entry FROM audit WHERE idx = 6").fetchone()[0])
        )
        entry.outcome = "never sent"
        c.execute("UPDATE audit SET entry = ? WHERE idx = 6", (encode_entry(entry),))
    code, _, err = verify(w.log)
    assert code == 5
    assert err == f"borderlink: error: audit entry 6 is damaged: {DAMAGED}\n"

    # The node itself refuses to sign over the edit (its start-up check re-checks old entries
    # a slice at a time: this small log in one), and keeps serving its honest checkpoint.
    w.restart()
    status, body = admin_checkpoint(w.log)
    assert status == 400
    assert json.loads(body)["message"] == (
        f"refusing to sign: audit entry 6 is damaged: {DAMAGED}; run 'borderlink audit verify'"
    )
    assert witness_round(w.witness) == {"bar-pcu": f"consistent at size {w.size}"}
    assert w.witness.json("status")["misbehaviour"] == []

    # With its checkpoints deleted the node signs the edited log; the witness cannot be fooled.
    w.log.stop()
    cover_tracks(w.log)
    w.restart()
    status, note = admin_checkpoint(w.log)
    assert status == 200, note
    assert_caught(w, "badconsistencyproof", int(note.split("\n")[1]))


def test_two_reordered_entries(watched: Watched) -> None:
    w = watched
    w.log.stop()
    with db(w.log) as c:
        a, b = (
            c.execute("SELECT entry FROM audit WHERE idx = ?", (i,)).fetchone()[0] for i in (3, 9)
        )
        c.execute("UPDATE audit SET entry = ? WHERE idx = 3", (b,))
        c.execute("UPDATE audit SET entry = ? WHERE idx = 9", (a,))
    code, _, err = verify(w.log)
    assert code == 5
    assert err == f"borderlink: error: audit entry 3 is damaged: {DAMAGED}\n"
    cover_tracks(w.log, thorough=False)
    code, _, err = verify(w.log)  # the recorded roots still tell, without any checkpoint
    assert (code, err) == (5, f"borderlink: error: audit entry 3 is damaged: {DAMAGED}\n")
    cover_tracks(w.log)  # with the recorded roots rewritten too, only a witness can tell
    assert verify(w.log)[0] == 0
    w.restart()
    status, note = admin_checkpoint(w.log)
    assert status == 200, note
    assert_caught(w, "badconsistencyproof", int(note.split("\n")[1]))


def test_a_deleted_tail(watched: Watched) -> None:
    w = watched
    w.log.stop()
    with db(w.log) as c:
        c.execute("DELETE FROM audit WHERE idx >= 5")
        fix_state(c)
    code, _, err = verify(w.log)
    assert code == 5
    assert err == (
        f"borderlink: error: audit log has 5 entries but a signed checkpoint has {w.size}: "
        "entries from index 5 on are missing\n"
    )
    cover_tracks(w.log)
    w.restart()
    status, note = admin_checkpoint(w.log)
    assert status == 200, note
    assert int(note.split("\n")[1]) == 6 < w.size
    assert_caught(w, "rollback", 6)


def _replace_log(node: NodeProc, entries: int) -> None:
    """A fresh, internally consistent log of ``entries`` entries, written through the storage interface,
    with the old checkpoints gone: nothing local is left to compare it with."""
    with db(node) as c:
        c.execute("DELETE FROM audit")
        c.execute("DELETE FROM audit_state")
    cover_tracks(node)
    store = open_store(node.home / "node.db")
    for i in range(entries):
        audit(store, "peer.added", peer=f"nobody-{i}")
    store.close()


def test_a_log_replaced_by_a_shorter_consistent_one(watched: Watched) -> None:
    w = watched
    w.log.stop()
    _replace_log(w.log, 4)
    # Local verification has no evidence left: only the witness can catch this.
    code, out, err = verify(w.log)
    assert code == 0, err
    assert out == (
        "ok: audit log verified: 4 entries, signed checkpoint at size 0 "
        "(4 newer entries not yet in a checkpoint)\n"
    )
    w.restart()
    status, note = admin_checkpoint(w.log)
    assert status == 200, note
    assert_caught(w, "rollback", 5)


def test_a_log_replaced_by_one_of_the_same_size_is_a_fork(watched: Watched) -> None:
    w = watched
    w.log.stop()
    _replace_log(w.log, w.size - 1)  # signing adds checkpoint.published: the same size again
    assert verify(w.log)[0] == 0
    w.restart()
    status, note = admin_checkpoint(w.log)
    assert status == 200, note
    assert int(note.split("\n")[1]) == w.size
    assert_caught(w, "fork", w.size)


def test_the_same_misbehaviour_is_recorded_once(watched: Watched) -> None:
    w = watched
    w.log.stop()
    _replace_log(w.log, 4)
    w.restart()
    assert admin_checkpoint(w.log)[0] == 200
    for _ in range(3):
        assert witness_round(w.witness)["bar-pcu"].startswith("MISBEHAVIOUR: ")
    assert len(w.witness.json("status")["misbehaviour"]) == 1
