"""Crypto worker processes in real nodes (node/runtime.py): a worker killed while the node
receives costs a retry, never a message (none lost, none stored twice); kill -9 of the node
leaves no worker behind; at the default log level a batch is one line, not one per message."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import NodeProc, make_network, stop_all
from tests.integration.waiting import log_events, wait_until

MESSAGES = 40


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[dict[str, NodeProc]]:
    nodes = make_network(
        tmp_path,
        ["bar-pcu", "belgrade-accu"],
        extra_env={
            "BORDERLINK_NODE_CRYPTO_PROCESSES": "2",
            "BORDERLINK_NODE_CRYPTO_START": "start",
        },
    )
    yield nodes
    stop_all(nodes)


def workers(node: NodeProc) -> list[int]:
    """The pids of the node's crypto workers, as it logged them once they ran."""
    events = wait_until(lambda: log_events(node, "node.crypto_workers"), "the workers started")
    pids: list[int] = events[-1]["pids"]
    return pids


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def send(node: NodeProc, alert: Path, to: str) -> str:
    msg_id: str = node.json("send", "--to", to, "--type", "seizure-alert", str(alert))["id"]
    return msg_id


def test_a_killed_worker_costs_a_retry_not_a_message(tmp_path: Path) -> None:
    """A backlog arrives as one batch, opened in chunks on the crypto thread and the workers at
    once; one worker was killed just before: its chunk is refused as unavailable (or the dead
    worker is found idle and replaced), the sender retries, and every message is stored once."""
    nodes = make_network(
        tmp_path,
        ["bar-pcu", "belgrade-accu"],
        extra_env={
            "BORDERLINK_NODE_CRYPTO_PROCESSES": "2",
            "BORDERLINK_NODE_CRYPTO_START": "start",
            # the sender's next try comes after the receiver's workers are up (and one killed)
            "BORDERLINK_DELIVERY_BACKOFF_BASE": "3",
            "BORDERLINK_DELIVERY_BACKOFF_MAX": "4",
        },
    )
    try:
        bar, bel = nodes["bar-pcu"], nodes["belgrade-accu"]
        alert = tmp_path / "alert.json"
        alert.write_text(bar.cli("template", "seizure-alert").stdout)
        assert bel.stop() == 0
        ids = [send(bar, alert, "belgrade-accu") for _ in range(MESSAGES)]
        wait_until(
            lambda: all(r["attempts"] >= 1 for r in bar.json("outbox")["items"]),
            "each message tried once while the receiver was down",
        )
        offset = bel.log.stat().st_size
        bel.start()
        started = wait_until(
            lambda: log_events(bel, "node.crypto_workers", offset), "the workers started"
        )
        os.kill(started[-1]["pids"][0], signal.SIGKILL)
        wait_until(
            lambda: {r["status"] for r in bar.json("outbox")["items"]} == {"delivered"},
            lambda: f"every message delivered: {bar.json('outbox')['items'][:3]}",
        )
        inbox = [m["id"] for m in bel.json("inbox", "--limit", "1000")["items"]]
        assert sorted(inbox) == sorted(ids)  # each stored once, none lost
        assert log_events(bel, "crypto.worker_lost", offset)  # the node saw it, and went on
        assert log_events(bar, "delivery.rejected") == []  # a retry, never a refusal
    finally:
        stop_all(nodes)


def test_kill9_of_the_node_leaves_no_worker(pair: dict[str, NodeProc]) -> None:
    bel = pair["belgrade-accu"]
    pids = workers(bel)
    assert all(alive(p) for p in pids)
    # status says where the cryptography runs: both workers up, not given up on.
    assert bel.json("status")["crypto"] == {"processes": 2, "running": 2, "failing": False}
    bel.kill9()
    wait_until(lambda: not any(alive(p) for p in pids), "the workers gone with their node")


def test_at_info_a_batch_is_one_line_and_no_message_has_its_own(
    pair: dict[str, NodeProc], tmp_path: Path
) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    alert = tmp_path / "alert.json"
    alert.write_text(bar.cli("template", "seizure-alert").stdout)
    msg_id = send(bar, alert, "belgrade-accu")
    wait_until(lambda: log_events(bar, "delivery.batch"), "the sender's batch summary")
    [got] = wait_until(lambda: log_events(bel, "batch.received"), "the receiver's summary")
    assert (got["accepted"], got["rejected"]) == (1, 0)
    [sent] = log_events(bar, "delivery.batch")
    assert (sent["delivered"], sent["failed"]) == (1, 0)
    assert log_events(bel, "message.received") == []
    assert log_events(bar, "delivery.ok") == []
    assert [m["id"] for m in bel.json("inbox")["items"]] == [msg_id]
