"""An operator reads ``outbox``, ``status`` and ``send --wait`` in words (issue 11, "for unit
operators too"): "4 retrying (next in 2 s)" and "connection refused by ...", never a status
dictionary or an exception's class name; ``send --wait`` says how each recipient's delivery moves,
and Ctrl-C stops the waiting, not the delivery. Real nodes on 127.0.0.1, one of them stopped."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, NodeProc, env, make_network, stop_all
from tests.integration.waiting import wait_until

# What the old views printed: a dict, an exception class, "link down queued 4".
RAW = re.compile(r"\{'|Error\b|ClientConnector|link (up|down)\b|tries \d")


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeProc]]:
    # kotor-pcu is down for the whole module: its link's backoff is capped low, so a message
    # each test sends is tried (and fails) within the test's wait, whatever ran before.
    nodes = make_network(
        tmp_path_factory.mktemp("words"),
        ["bar-pcu", "belgrade-accu", "kotor-pcu"],
        extra_env={"BORDERLINK_DELIVERY_BACKOFF_MAX": "0.5"},
    )
    nodes["kotor-pcu"].stop()
    try:
        yield nodes
    finally:
        stop_all(nodes)


@pytest.fixture(scope="module")
def alert(region: dict[str, NodeProc], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("body") / "alert.json"
    path.write_text(region["bar-pcu"].cli("template", "seizure-alert").stdout)
    return path


def send(bar: NodeProc, alert: Path, *extra: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return bar.cli(
        "send",
        "--to",
        "belgrade-accu,kotor-pcu",
        "--type",
        "seizure-alert",
        str(alert),
        *extra,
        **kw,
    )


def test_outbox_and_status_say_in_words_what_is_retrying_why_and_when(
    region: dict[str, NodeProc], alert: Path
) -> None:
    bar = region["bar-pcu"]
    msg_id = send(bar, alert).stdout.strip()
    wait_until(
        lambda: (
            {r["peer"]: r["status"] for r in bar.json("outbox")["items"] if r["id"] == msg_id}
            == {"belgrade-accu": "delivered", "kotor-pcu": "failed"}
        ),
        "delivered to belgrade-accu, failed to kotor-pcu",
    )
    outbox = bar.cli("outbox").stdout
    [header, *lines] = outbox.split("\n" + msg_id)[0].splitlines()[:3]
    assert header.startswith(f"{msg_id}  seizure-alert, queued ") and header.endswith(
        ", 1 of 2 delivered"
    ), outbox
    entries = dict(line.strip().split(None, 1) for line in lines)  # peer -> its delivery
    assert re.fullmatch(r"delivered .*, \d+ (ms|s) after it was queued", entries["belgrade-accu"])
    assert re.fullmatch(
        r"retrying \(\d+ tr(y|ies) so far\), next (now|in \d+ (ms|s)): "
        r"connection refused by kotor-pcu at 127\.0\.0\.1:\d+",
        entries["kotor-pcu"],
    ), outbox
    assert not RAW.search(outbox)

    status = bar.cli("status").stdout
    assert re.search(
        r"^outbox: \d+ delivered, \d+ retrying \(next (now|in [^)]+)\); inbox", status, re.M
    )
    assert re.search(
        r"^  peer kotor-pcu +down, \d+ to deliver; \d+ retrying, failing for \d+ (ms|s), "
        r"next try (now|in [^:]+): connection refused by kotor-pcu at 127\.0\.0\.1:\d+$",
        status,
        re.M,
    ), status
    assert re.search(r"^  peer belgrade-accu +up$", status, re.M), status
    assert not RAW.search(status), status

    # --json carries the same, exactly, for scripts
    doc = bar.json("status")
    kotor = next(p for p in doc["peers"] if p["name"] == "kotor-pcu")
    assert kotor["retrying"] == kotor["queued"] == doc["outbox"]["failed"] >= 1
    assert kotor["last_error"].startswith("connection refused by kotor-pcu at 127.0.0.1:")
    assert kotor["failing_since"] <= time.time() and kotor["next_retry"] == doc["next_retry"]
    belgrade = next(p for p in doc["peers"] if p["name"] == "belgrade-accu")
    assert (belgrade["retrying"], belgrade["last_error"], belgrade["next_retry"]) == (0, None, None)


def test_send_wait_shows_each_recipient_and_exits_6_for_the_one_that_is_down(
    region: dict[str, NodeProc], alert: Path
) -> None:
    done = send(region["bar-pcu"], alert, "--wait", "2", check=False)
    assert done.returncode == 6
    msg_id = done.stdout.splitlines()[0]
    progress = done.stderr.splitlines()
    assert progress[0] == (
        f"queued {msg_id}; waiting for receipts (Ctrl-C stops waiting, not the delivery)"
    )
    assert any(
        re.fullmatch(r"  belgrade-accu: delivered .* after it was queued", p) for p in progress
    )
    assert any(p.startswith("  kotor-pcu: retrying (1 try so far)") for p in progress), progress
    assert progress[-1].startswith("borderlink: error: not delivered within 2 s to: kotor-pcu")
    shown = dict(line.strip().split(None, 1) for line in done.stdout.splitlines()[1:])
    assert re.fullmatch(r"retrying \(\d+ tr(y|ies) so far\).*", shown["kotor-pcu"]), shown
    assert shown["belgrade-accu"].startswith("delivered ")

    exact = json.loads(send(region["bar-pcu"], alert, "--wait", "1", "--json", check=False).stdout)
    # Queued while kotor-pcu's link is down, it waits for the link's next try (one per backoff
    # step, not one per message): not tried yet, or tried and failed.
    assert exact["recipients"]["belgrade-accu"] == "delivered"
    assert exact["recipients"]["kotor-pcu"] in ("queued", "failed")


def test_ctrl_c_stops_the_waiting_and_the_message_stays_queued_until_it_is_delivered(
    region: dict[str, NodeProc], alert: Path
) -> None:
    bar, kotor = region["bar-pcu"], region["kotor-pcu"]
    argv = ["--home", str(bar.home), "send", "--to", "belgrade-accu,kotor-pcu"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *argv, "--type", "seizure-alert", str(alert), "--wait"],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the message is durable once this is printed
        msg_id = first.split()[1].rstrip(";")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert out == ""
    assert err.splitlines()[-1] == (
        f"borderlink: stopped waiting; message {msg_id} stays queued and is delivered as its "
        "recipients answer ('borderlink outbox' follows it)"
    )
    assert "Traceback" not in err
    kotor.start()
    wait_until(
        lambda: (
            {r["status"] for r in bar.json("outbox")["items"] if r["id"] == msg_id} == {"delivered"}
        ),
        "delivered to both once kotor-pcu is back",
    )
    assert msg_id in {m["id"] for m in kotor.json("inbox", "--limit", "1000")["items"]}
    kotor.stop()  # as the module's other tests expect it
