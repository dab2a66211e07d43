"""The two real nodes a node benchmark drives: throwaway homes on 127.0.0.1, the sender's admin
socket for queueing, and read-only looks at both databases (bench/node_throughput.py)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SENDER, RECEIVER = "bar-pcu", "belgrade-accu"
MESSAGE_TYPE = "seizure-alert"
TTL = 3600
RETRY_ENV = {
    "BORDERLINK_DELIVERY_BACKOFF_BASE": "0.05",
    "BORDERLINK_DELIVERY_BACKOFF_MAX": "0.25",
    # A full run sends about 22,000 messages from one sender; the receiver's per-sender inbox
    # quota (default 10,000, quota_exceeded beyond) is a defence this bench does not measure.
    "BORDERLINK_LIMITS_MAX_INBOX_PER_SENDER": "1000000",
    # Likewise the per-peer budget, 400 envelopes a second by default: this bench measures what
    # the node can take, not what it lets one peer have (a backlog from one peer drains at the
    # budget's rate; see docs/benchmarks.md).
    "BORDERLINK_LIMITS_PEER_RATE": "100000",
    "BORDERLINK_LIMITS_PEER_BURST": "100000",
}


def limits_env() -> dict[str, str]:
    """``BORDERLINK_LIMITS_*`` and ``BORDERLINK_NODE_*`` from this process's environment, passed
    on to both nodes (the test harness gives nodes a clean environment), e.g. to see what the peer
    API rate limit costs, or the crypto workers save (``BORDERLINK_NODE_CRYPTO_PROCESSES=0``)."""
    passed = ("BORDERLINK_LIMITS_", "BORDERLINK_NODE_")
    # Workers from the start (not the first busy moment), so every phase measures them.
    started = {"BORDERLINK_NODE_CRYPTO_START": "start"}
    return started | {k: v for k, v in os.environ.items() if k.startswith(passed)}


def workers_up(node: Any, offset: int = 0, timeout: float = 10.0) -> None:
    """Wait (bounded) until a started node's crypto workers run: the phases measure a running
    node, not the interpreters its workers import at its start. A node without workers
    (``BORDERLINK_NODE_CRYPTO_PROCESSES=0``) logs none: the wait ends at once."""
    from tests.integration.waiting import log_events

    if node.extra_env.get("BORDERLINK_NODE_CRYPTO_PROCESSES") == "0":
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_events(node, "node.crypto_workers", offset):
            return
        time.sleep(0.05)


class Pair:
    """The running pair, the admin socket of the sender and read-only views of both databases."""

    def __init__(self, root: Path) -> None:
        from tests.integration.harness import make_network

        self.root = root
        # Short retry delays so the backlog phase resumes as soon as the receiver is back.
        self.nodes = make_network(root, [SENDER, RECEIVER], extra_env=RETRY_ENV | limits_env())
        for node in self.nodes.values():
            workers_up(node)
        self.sock = self.nodes[SENDER].home / "admin.sock"
        self.out = _readonly(self.nodes[SENDER].home / "node.db")
        self.inbox = _readonly(self.nodes[RECEIVER].home / "node.db")

    def restart_sender(self, env: dict[str, str]) -> None:
        """Restart the sender with ``env`` on top of the bench's own settings (bounded: 20 s)."""
        node = self.nodes[SENDER]
        node.stop()
        node.extra_env = RETRY_ENV | limits_env() | env
        offset = node.log.stat().st_size
        node.start()
        workers_up(node, offset)

    def close(self) -> None:
        from tests.integration.harness import stop_all

        self.out.close()
        self.inbox.close()
        stop_all(self.nodes)

    def send(self, body: dict[str, Any]) -> str:
        from cli.admin_client import call

        res = call(
            self.sock,
            "POST",
            "/v1/send",
            {"to": [RECEIVER], "type": MESSAGE_TYPE, "body": body, "ttl": TTL},
        )
        return str(res["id"])

    def delivered(self) -> int:
        return int(
            self.out.execute("SELECT COUNT(*) FROM outbox WHERE status = 'delivered'").fetchone()[0]
        )

    def is_delivered(self, msg_id: str) -> bool:
        row = self.out.execute(
            "SELECT status FROM outbox WHERE msg_id = ?", (bytes.fromhex(msg_id),)
        ).fetchone()
        return row is not None and row[0] == "delivered"

    def times(self, ids: Sequence[str]) -> list[tuple[float, float]]:
        """(queued_at, delivered_at) of delivered messages among ``ids``."""
        out = []
        for msg_id in ids:
            row = self.out.execute(
                "SELECT m.queued_at, o.delivered_at FROM messages m JOIN outbox o ON o.msg_id = m.id"
                " WHERE m.id = ? AND o.status = 'delivered'",
                (bytes.fromhex(msg_id),),
            ).fetchone()
            if row is not None:
                out.append((float(row[0]), float(row[1])))
        return out

    def receipts(self, ids: Sequence[str]) -> int:
        """Distinct receipts covering ``ids``: one per POST that delivered any of them."""
        found = set()
        for msg_id in ids:
            row = self.out.execute(
                "SELECT receipt FROM outbox WHERE msg_id = ? AND status = 'delivered'",
                (bytes.fromhex(msg_id),),
            ).fetchone()
            if row is not None:
                found.add(row[0])
        return len(found)

    def wait_delivered(self, target: int, deadline: float, interval: float = 0.005) -> bool:
        while time.monotonic() < deadline:
            if self.delivered() >= target:
                return True
            time.sleep(interval)
        return self.delivered() >= target

    def undelivered(self, ids: Sequence[str]) -> dict[str, int]:
        """Outbox status and last error of the messages among ``ids`` not delivered."""
        found: dict[str, int] = {}
        for msg_id in ids:
            row = self.out.execute(
                "SELECT status, last_error FROM outbox WHERE msg_id = ? AND status != 'delivered'",
                (bytes.fromhex(msg_id),),
            ).fetchone()
            if row is not None:
                key = f"{row[0]}: {(row[1] or '')[:80]}"
                found[key] = found.get(key, 0) + 1
        return found

    def rate_limited(self) -> int:
        """Log lines of the receiver refusing the sender over its peer budget (429). The node
        logs these sampled (1st, 2nd, 4th, ...), so any at all means the budget bound a phase."""
        log = self.nodes[RECEIVER].log
        return log.read_text(errors="replace").count("rate_limited") if log.exists() else 0

    def audit(self) -> list[str]:
        """Re-verify every stored receipt and count the receiver's inbox; returns problems."""
        from keys.card import parse_card
        from protocol.receipt import receipt_covers, verify_receipt

        signer = parse_card((self.root / f"{RECEIVER}.card").read_text(), now=None).identity
        me = parse_card((self.root / f"{SENDER}.card").read_text(), now=None).identity.node_id
        rows = self.out.execute(
            "SELECT o.msg_id, m.content_hash, o.receipt FROM outbox o JOIN messages m"
            " ON m.id = o.msg_id WHERE o.status = 'delivered'"
        ).fetchall()
        verified: dict[bytes, Any] = {}
        problems = []
        for msg_id, content_hash, receipt in rows:
            body = verified.get(receipt)
            if body is None:
                body = verified[receipt] = verify_receipt(receipt, signer=signer, sender=me)
            if not receipt_covers(body, msg_id, content_hash):
                problems.append(f"receipt does not cover {msg_id.hex()}")
        stored = self.inbox.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
        if stored != len(rows):
            problems.append(f"receiver stored {stored} messages, sender holds {len(rows)} receipts")
        return problems


def _readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


# phases ----------------------------------------------------------------------------------------
