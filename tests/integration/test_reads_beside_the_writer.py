"""Operator reads on the node's own reader connection (issue 12): with the writer's database
thread held busy, ``status``, the inbox and outbox listings and the audit log still answer, from the
committed state, and the audit check at start has stored how far it verified the log."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from cli.admin_client import call
from keys.keystore import open_keystore, read_keystore_file
from node.config import load_config
from node.daemon import Node
from node.home import Home
from protocol.identity import Identity
from tests.integration.harness import PASSPHRASE, make_network

HELD = 20.0  # seconds the writer's thread is held at most


async def test_reads_answer_while_the_writers_thread_is_busy(tmp_path: Path) -> None:
    nodes = make_network(tmp_path, ["bar-pcu"], start=False)
    home = Home(nodes["bar-pcu"].home)
    secret = open_keystore(read_keystore_file(home.keystore), PASSPHRASE.encode())
    config = load_config(home.config, env={"BORDERLINK_LISTEN": "127.0.0.1:0"})
    node = Node(home, config, Identity.from_secret_bytes(secret))
    await node.start()
    try:
        await node.audit_check.run()  # the start-up check, awaited (it runs as a task)
        size = node.store.audit_state().size
        assert node.store.audit_verified().prefix.size == size > 0
        gate = threading.Event()
        held = asyncio.ensure_future(node.run_db(gate.wait, HELD))
        sock = home.admin_socket
        try:
            status = await asyncio.to_thread(call, sock, "GET", "/v1/status")
            inbox = await asyncio.to_thread(call, sock, "GET", "/v1/inbox?limit=5")
            outbox = await asyncio.to_thread(call, sock, "GET", "/v1/outbox?limit=5")
            log = await asyncio.to_thread(call, sock, "POST", "/v1/ops/audit.log", {})
            # Had any of them queued behind the held thread, it would have answered only once
            # the hold timed out: the hold is still on.
            assert not held.done()
        finally:
            gate.set()
            await held
        assert status["audit"]["size"] == size
        assert inbox == {"items": [], "next": None}
        assert outbox == {"items": [], "next": None}
        assert len(log["items"]) == size
    finally:
        await node.stop()
