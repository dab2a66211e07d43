"""Batch queueing through the CLI, as an operator does it: several FILEs, or JSON lines on stdin,
queued in one call and one transaction, ids in input order; a bad line refuses the whole batch and
changes nothing; a kill -9 right after the call returned loses none of it. Real node processes."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
from pathlib import Path
from typing import Any

from cli.admin_client import call
from cli.send import BY_ID
from node.batches import MAX_BATCH
from tests.integration.harness import NodeProc, one_line_error
from tests.integration.waiting import PATIENCE, log_events, start, wait_until

WAIT = str(int(PATIENCE))


class AdminConnection(http.client.HTTPConnection):
    """The admin socket spoken to directly, to see the answer's status and shape."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=PATIENCE)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(self.path))


def alert(node: NodeProc, **meta: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(node.cli("template", "seizure-alert").stdout)
    body["meta"].update(meta)
    return body


def json_lines(bodies: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(b) + "\n" for b in bodies)


def send(node: NodeProc, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return node.cli("send", "--to", "belgrade-accu", "--type", "seizure-alert", *args, **kw)


def queued_state(node: NodeProc) -> tuple[list[Any], list[Any]]:
    """What a refused batch must leave as it was: the outbox and the audit log."""
    audit = node.json("audit", "log")["items"]
    return node.json("outbox", "--limit", "1000")["items"], audit


def test_several_files_are_queued_in_input_order_and_all_delivered(
    pair: dict[str, NodeProc], tmp_path: Path
) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    files = []
    for n, tlp in enumerate(["GREEN", "AMBER", "CLEAR"]):
        path = tmp_path / f"alert-{n}.json"
        path.write_text(json.dumps(alert(bar, tlp=tlp), indent=2))
        files.append(str(path))
    sent = json.loads(send(bar, *files, "--json", "--wait", WAIT).stdout)
    ids = sent["ids"]
    assert len(set(ids)) == 3 and sent["to"] == ["belgrade-accu"]
    assert sent["recipients"] == {i: {"belgrade-accu": "delivered"} for i in ids}
    # Input order: each id holds the body of the file at its place.
    assert [bel.json("inbox", "show", i)["message"]["meta"]["tlp"] for i in ids] == [
        "GREEN",
        "AMBER",
        "CLEAR",
    ]
    [batch] = log_events(bar, "messages.queued")
    assert (batch["count"], batch["type"], batch["to"]) == (3, "seizure-alert", ["belgrade-accu"])
    queued = bar.json("audit", "log", "--kind", "message.queued")["items"]
    assert sorted(e["message_id"] for e in queued) == sorted(ids)


def test_json_lines_on_stdin_one_id_a_line_blank_lines_skipped(
    pair: dict[str, NodeProc],
) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    bodies = [alert(bar, tlp="GREEN"), alert(bar, tlp="AMBER")]
    lines = json_lines(bodies[:1]) + "\n   \n" + json_lines(bodies[1:])
    proc = send(bar, "-", input=lines)
    ids = proc.stdout.splitlines()
    assert len(ids) == 2 and all(len(i) == 32 for i in ids), proc.stdout
    wait_until(
        lambda: {m["id"] for m in bel.json("inbox")["items"]} == set(ids),
        "both messages in belgrade-accu's inbox",
    )
    assert [bel.json("inbox", "show", i)["message"]["meta"]["tlp"] for i in ids] == [
        "GREEN",
        "AMBER",
    ]


def test_a_document_over_several_lines_on_stdin_is_still_one_message(
    pair: dict[str, NodeProc],
) -> None:
    bar = pair["bar-pcu"]
    template = bar.cli("template", "seizure-alert").stdout  # indented: many lines
    [msg_id] = send(bar, "-", input=template).stdout.splitlines()
    assert [r["id"] for r in bar.json("outbox")["items"]] == [msg_id]


def test_a_bad_line_refuses_the_whole_batch_naming_its_line(
    pair: dict[str, NodeProc], tmp_path: Path
) -> None:
    bar = pair["bar-pcu"]
    before = queued_state(bar)
    good = json_lines([alert(bar)] * 3)
    bad_tlp = json_lines([alert(bar, tlp="PURPLE")])
    # line 4 breaks the schema, after three good ones: none of them is queued
    one_line_error(
        send(bar, "-", input=good + bad_tlp + good, check=False),
        1,
        "borderlink: error: standard input line 4: meta.tlp: must be one of",
    )
    # line 2 (after a blank line) is not JSON at all
    one_line_error(
        send(bar, "-", input=good[: len(good) // 3] + "\n" + '{"meta": \n', check=False),
        1,
        "standard input line 3 ",
    )
    # with several files, the file too
    path = tmp_path / "bad.json"
    path.write_text(bad_tlp)
    ok = tmp_path / "ok.json"
    ok.write_text(json_lines([alert(bar)]))
    one_line_error(
        send(bar, str(ok), str(path), check=False),
        1,
        f"borderlink: error: {path}: meta.tlp: must be one of",
    )
    assert queued_state(bar) == before
    assert log_events(bar, "messages.queued") == []


def test_a_batch_past_the_bound_is_refused_and_queues_nothing(pair: dict[str, NodeProc]) -> None:
    bar = pair["bar-pcu"]
    before = queued_state(bar)
    line = json.dumps(alert(bar)) + "\n"
    proc = send(bar, "-", input=line * (MAX_BATCH + 1), check=False)
    one_line_error(proc, 2, f"a batch holds at most {MAX_BATCH:,} messages, not {MAX_BATCH + 1:,}")
    # The node refuses it as well, whoever calls: the same words, nothing queued.
    request = {"to": ["belgrade-accu"], "type": "seizure-alert", "bodies": [{}] * (MAX_BATCH + 1)}
    try:
        call(bar.home / "admin.sock", "POST", "/v1/send/batch", request)
    except Exception as exc:  # the node's error, rebuilt: a UsageError with exit code 2
        assert type(exc).__name__ == "UsageError" and "at most 10,000 messages" in str(exc)
    else:
        raise AssertionError("the node queued a batch past its bound")
    assert queued_state(bar) == before


def test_a_single_send_over_the_admin_bound_is_refused_in_our_words(
    pair: dict[str, NodeProc],
) -> None:
    """The admin API reads at most 4 MiB for a request other than a batch: one over it is
    refused as the node's own UsageError (JSON, exit code 2), not aiohttp's plain-text 413,
    which the CLI could only call "an answer that is not JSON"; nothing is queued."""
    bar = pair["bar-pcu"]
    before = queued_state(bar)
    body = alert(bar) | {"narrative": "x" * (5 * 1024 * 1024)}
    request = {"to": ["belgrade-accu"], "type": "seizure-alert", "body": body}
    try:
        call(bar.home / "admin.sock", "POST", "/v1/send", request)
    except Exception as exc:
        assert type(exc).__name__ == "UsageError"
        assert "over the admin API's bound of 4,194,304 bytes" in str(exc)
        assert getattr(exc, "exit_code", None) == 2
    else:
        raise AssertionError("the node queued a request over its bound")
    assert queued_state(bar) == before


def test_the_admin_endpoint_names_a_bad_body_by_index_and_queues_nothing(
    pair: dict[str, NodeProc],
) -> None:
    bar = pair["bar-pcu"]
    before = queued_state(bar)
    good, bad = alert(bar), alert(bar, tlp="PURPLE")
    request = {"to": ["belgrade-accu"], "type": "seizure-alert", "bodies": [good, good, bad]}
    conn = AdminConnection(bar.home / "admin.sock")
    conn.request("POST", "/v1/send/batch", json.dumps(request))
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    conn.close()
    assert resp.status == 400
    assert answer["error"] == "ValidationError" and answer["exit_code"] == 1
    assert answer["message"].startswith("bodies[2].meta.tlp: must be one of")
    assert queued_state(bar) == before


def test_kill_9_right_after_the_batch_returned_loses_nothing(
    pair: dict[str, NodeProc], tmp_path: Path
) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    bel.stop()  # nothing is delivered: the batch sits in the outbox when bar dies
    lines = json_lines([alert(bar)] * 200)
    ids = send(bar, "-", input=lines).stdout.splitlines()
    bar.kill9()
    start(bar)
    rows = bar.json("outbox", "--limit", "1000")["items"]
    assert sorted(r["id"] for r in rows) == sorted(ids) and len(ids) == 200
    audited = bar.json("audit", "log", "--kind", "message.queued")["items"]
    assert sorted(e["message_id"] for e in audited) == sorted(ids)
    assert bar.json("audit", "verify")["ok"] is True
    start(bel)
    wait_until(
        lambda: len(bel.json("inbox", "--limit", "1000")["items"]) == 200,
        "all 200 in belgrade-accu's inbox after the restart",
    )


def test_waiting_on_a_batch_exits_6_naming_how_many_were_not_delivered(
    pair: dict[str, NodeProc],
) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    bel.stop()
    # More than BY_ID messages: their entries are read in pages of the outbox, not one by one.
    count = BY_ID + 4
    proc = send(bar, "-", "--wait", "2", input=json_lines([alert(bar)] * count), check=False)
    assert proc.returncode == 6, proc.stderr
    lines = proc.stdout.splitlines()
    ids, recipients = lines[::2], lines[1::2]
    assert [r.split()[0] for r in recipients] == ["belgrade-accu"] * count
    assert {r["id"] for r in bar.json("outbox")["items"]} == set(ids)
    progress = proc.stderr.splitlines()
    assert progress[0] == (
        f"queued {count} messages; waiting for receipts (Ctrl-C stops waiting, not the delivery)"
    )
    assert progress[-1].startswith(
        f"borderlink: error: not delivered within 2 s: {count} of {count} messages, to: "
        "belgrade-accu"
    )
