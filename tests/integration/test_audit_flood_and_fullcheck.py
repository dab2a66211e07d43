"""Regressions from the second review: a peer's refusals before decoding must not grow the audit
log one entry per request, and the node's full recomputation of its log must really run after a
start."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keys.keystore import open_keystore, read_keystore_file
from node.audit_ops import sign_checkpoint
from node.config import load_config
from node.daemon import Node
from node.home import Home
from node.storage.sqlite import open_store
from protocol.audit import AuditEntry, encode_entry
from protocol.errors import AuditError
from protocol.identity import Identity
from tests.integration.harness import PASSPHRASE, NodeProc, make_network, stop_all
from tests.stores import audit
from tests.tlsclient import connect, read_answer, request_bytes


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[NodeProc, NodeProc]]:
    nodes = make_network(tmp_path, ["bar-pcu", "belgrade-accu"], start=False)
    nodes["bar-pcu"].start()
    yield nodes["bar-pcu"], nodes["belgrade-accu"]
    stop_all(nodes)


def rejected_entries(node: NodeProc) -> int:
    return len(node.json("audit", "log", "--kind", "message.rejected", "--limit", "1000")["items"])


def test_regression_refusals_before_decoding_are_sampled(pair: tuple[NodeProc, NodeProc]) -> None:
    """Belgrade, a trusted peer, sends 64 undecodable batches and 64 oversize cosignatures over
    its own channel: the audit log samples each reason, the log line says how many so far."""
    bar, bel = pair
    before = rejected_entries(bar)
    codes = set()
    with connect(bar.port, bel.as_peer_of(bar)) as sock:
        for path, body, ctype in [
            ("/v1/envelopes", b"\xc1 garbage", "application/vnd.borderlink.batch+msgpack"),
            ("/v1/audit/cosignature", b"x" * 5000, "application/json"),
        ]:
            for _ in range(64):
                sock.sendall(request_bytes("POST", path, body, {"Content-Type": ctype}))
                codes.add(read_answer(sock).status)
    assert codes == {400, 413}
    # 1st, 2nd, 4th, ..., 64th of each reason from this peer: 7 + 7, not 128
    assert rejected_entries(bar) - before == 14
    last = bar.json("audit", "log", "--kind", "message.rejected", "--limit", "1000")["items"][-1]
    assert last["detail"].startswith("64 so far from this source")


async def test_regression_full_check_runs_after_a_start(tmp_path: Path) -> None:
    """An unchanged log at start used to consume the full check, so an edited entry was signed
    over by the fast path for the next full_check_interval. The check at start now covers every
    entry appended since the node last verified (here: all of them, it never did), so the very
    first checkpoint after the start refuses, and so does every later one."""
    nodes = make_network(tmp_path, ["bar-pcu"], start=False)
    home = Home(nodes["bar-pcu"].home)
    secret = open_keystore(read_keystore_file(home.keystore), PASSPHRASE.encode())
    identity = Identity.from_secret_bytes(secret)
    store = open_store(home.database)
    sign_checkpoint(store, identity, time.time())
    with sqlite3.connect(home.database) as db:
        db.execute(
            "UPDATE audit SET entry = ? WHERE idx = 1",
            (encode_entry(AuditEntry(time=1, actor="node", kind="peer.added", peer="forged")),),
        )
    store.close()
    config = load_config(home.config, env={"BORDERLINK_LISTEN": "127.0.0.1:0"})
    node = Node(home, config, identity)
    await node.start()
    try:
        with pytest.raises(AuditError, match=r"^refusing to sign: audit entry 1 is damaged"):
            await node.checkpoint()
        await node.run_db(audit, node.store, "peer.added", peer="carol")
        with pytest.raises(AuditError, match=r"^refusing to sign: audit entry 1 is damaged"):
            await node.checkpoint()
        assert node.store.audit_verified().prefix.size == 0  # nothing damaged is marked verified
    finally:
        await node.stop()
