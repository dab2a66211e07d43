"""Two and three nodes exchanging messages end to end through the CLI, as operators would."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

from tests.integration.harness import NodeProc, one_line_error
from tests.integration.waiting import PATIENCE, wait_until

WAIT = str(int(PATIENCE))  # ``send --wait``: returns once delivered, so only a failure waits it out


def write_template(tmp: Path, type_name: str, node: NodeProc) -> Path:
    path = tmp / f"{type_name}.json"
    path.write_text(node.cli("template", type_name).stdout)
    return path


def test_alert_sent_delivered_read_and_acknowledged(
    pair: dict[str, NodeProc], tmp_path: Path
) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    alert = write_template(tmp_path, "seizure-alert", bar)
    sent = bar.json(
        "send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert), "--wait", WAIT
    )
    assert sent["recipients"] == {"belgrade-accu": "delivered"}
    inbox = bel.json("inbox")["items"]
    assert [(m["id"], m["from"], m["type"], m["read"]) for m in inbox] == [
        (sent["id"], "bar-pcu", "seizure-alert", False)
    ]
    shown = bel.json("inbox", "show", sent["id"])
    assert shown["message"] == json.loads(alert.read_text())
    ack = bel.json("inbox", "ack", sent["id"], "--action", "seized")
    assert ack["to"] == "bar-pcu"
    # The feedback travels back and links to the alert.
    back = wait_until(lambda: bar.json("inbox")["items"], "the feedback in the sender's inbox")
    assert [(m["type"], m["refers_to"], m["from"]) for m in back] == [
        ("feedback", sent["id"], "belgrade-accu")
    ]
    outbox = bar.json("outbox")["items"]
    assert [(r["peer"], r["status"]) for r in outbox if r["id"] == sent["id"]] == [
        ("belgrade-accu", "delivered")
    ]
    assert bel.json("inbox", "--unread")["items"] == []


def test_three_nodes_and_a_retraction(trio: dict[str, NodeProc], tmp_path: Path) -> None:
    bar, bel, coord = trio["bar-pcu"], trio["belgrade-accu"], trio["skopje-coord"]
    profile = write_template(tmp_path, "risk-profile", bar)
    sent = bar.json(
        "send",
        "--to",
        "belgrade-accu,skopje-coord",
        "--type",
        "risk-profile",
        str(profile),
        "--wait",
        WAIT,
        "--priority",
        "urgent",
    )
    assert sent["recipients"] == {"belgrade-accu": "delivered", "skopje-coord": "delivered"}
    for node in (bel, coord):
        msg = node.json("inbox", "show", sent["id"])
        assert msg["from"] == "bar-pcu" and msg["message"]["meta"]["priority"] == "urgent"
    retraction = json.loads(bar.cli("template", "retraction").stdout)
    retraction["retracts"] = sent["id"]
    retraction["kind"] = "withdraw"
    retraction.pop("replacement", None)
    retraction["meta"].pop("supersedes", None)
    path = tmp_path / "retract.json"
    path.write_text(json.dumps(retraction))
    bar.json("send", "--to", "belgrade-accu", "--type", "retraction", str(path), "--wait", WAIT)
    original = next(m for m in bel.json("inbox")["items"] if m["id"] == sent["id"])
    assert original["withdrawn_by"] is not None
    assert (
        next(m for m in coord.json("inbox")["items"] if m["id"] == sent["id"])["withdrawn_by"]
        is None
    )


def test_operator_commands_without_a_running_node(pair: dict[str, NodeProc]) -> None:
    bar = pair["bar-pcu"]
    assert bar.stop() == 0
    for args in (["status"], ["outbox"], ["inbox"]):
        proc = bar.cli(*args, check=False)
        assert proc.returncode == 3
        assert (
            proc.stderr.count("\n") == 1
            and "not running" in proc.stderr
            and "borderlink serve" in proc.stderr
        )


def test_partial_delivery_exits_6_and_undeliverable_messages_expire(
    trio: dict[str, NodeProc], tmp_path: Path
) -> None:
    """Whether belgrade-accu's copy arrives within the 2 s of ``--wait`` depends on the machine's
    load, so the error is checked against the statuses the same command printed, and expiry on a
    message of its own, so the delivered copy cannot expire first on a slow machine."""
    bar, coord = trio["bar-pcu"], trio["skopje-coord"]
    assert stat.S_IMODE(os.stat(bar.home / "admin.sock").st_mode) == 0o600
    coord.stop()
    alert = write_template(tmp_path, "seizure-alert", bar)
    # Queued first, so its 3 s to live run out while the other send waits.
    short = bar.json(
        "send", "--to", "skopje-coord", "--type", "seizure-alert", "--ttl", "3s", str(alert)
    )["id"]
    proc = bar.cli(
        "send",
        "--to",
        "belgrade-accu,skopje-coord",
        "--type",
        "seizure-alert",
        str(alert),
        "--wait",
        "2",
        check=False,
    )
    assert proc.returncode == 6, proc.stderr
    msg_id, *lines = proc.stdout.splitlines()
    # "  PEER   how its delivery stands, in words" per recipient
    printed = dict(line.strip().split(None, 1) for line in lines)
    assert set(printed) == {"belgrade-accu", "skopje-coord"}, proc.stdout
    missing = [peer for peer, st in printed.items() if not st.startswith("delivered ")]
    assert "skopje-coord" in missing
    said = f"borderlink: error: not delivered within 2 s to: {', '.join(missing)}"
    last = proc.stderr.splitlines()[-1]
    assert last.startswith(said) and not last[len(said) :].startswith(","), last

    def status() -> dict[str, Any]:
        return {r["peer"]: r for r in bar.json("outbox")["items"] if r["id"] == msg_id}

    def partly_delivered() -> bool:
        st = status()
        return bool(st["belgrade-accu"]["status"] == "delivered" and st["skopje-coord"]["attempts"])

    wait_until(partly_delivered, lambda: f"delivery to the peer that is up only: {status()}")
    down = status()["skopje-coord"]
    assert down["status"] == "failed"
    assert "connection refused by skopje-coord" in down["last_error"]

    def row() -> dict[str, Any]:
        [r] = [r for r in bar.json("outbox")["items"] if r["id"] == short]
        return dict(r)

    wait_until(lambda: row()["status"] == "expired", lambda: f"expiry: {row()}")
    assert row()["next_attempt"] is None


def test_serve_on_a_taken_port_is_one_line_exit_3(pair: dict[str, NodeProc]) -> None:
    bar = pair["bar-pcu"]
    assert bar.stop() == 0
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", bar.port))
        taken.listen()
        proc = bar.cli("serve", "--listen", f"127.0.0.1:{bar.port}", check=False, timeout=PATIENCE)
    one_line_error(proc, 3, "the address is already in use")  # os_reason(), not strerror
