"""Transcript of an operator at a node that a hostile trusted peer flooded: the inbox, outbox and
audit log in pages, a failed delivery queued again, and a peer's control and bidi characters
escaped on the terminal but exact in --json. A real node (admin socket, services, SQLite) runs in
this process; the peer's envelopes go through the node's real Receiver on the peer's channel.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from keys.card import make_card
from keys.keystore import open_keystore, read_keystore_file
from keys.trust import PeerRecord
from node.auditing import record
from node.config import load_config
from node.daemon import Node
from node.home import Home
from protocol.envelope import seal
from protocol.identity import Identity
from protocol.schemas import encode_body, template
from tests.conftest import fixed_identity
from tests.inprocess import run_main

PASSPHRASE = "paging-test-passphrase"
BEL = fixed_identity("belgrade-accu")  # the flooding peer
HOSTILE = "\x1b]0;pwned\x07 \x9b2J \u202eevil"
IN_TEXT = "paid \u202e0001\u202c EUR \x9b2J done"  # what a message's free text may carry
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("BORDERLINK_")}
    out["BORDERLINK_PASSPHRASE"] = PASSPHRASE
    return out


@dataclass
class Bar:
    root: Path
    node: Node
    up: bool = True

    async def stop(self) -> None:
        if self.up:
            self.up = False
            await self.node.stop()

    async def cli(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        proc = await asyncio.to_thread(run_main, ["--home", str(self.root), *args], env=env())
        assert proc.returncode == code, proc.stderr
        return proc

    async def json(self, *args: str) -> object:
        out = (await self.cli(*args, "--json")).stdout
        try:
            return json.loads(out)
        except ValueError:
            raise AssertionError(out) from None


def peer_record() -> PeerRecord:
    now = int(time.time())
    card = make_card(
        BEL,
        name="belgrade-accu",
        unit_type="ACCU",
        country="RS",
        location="RSBEG",
        endpoints=[],  # nothing is ever delivered to it: its deliveries fail
        valid_from=now - 10,
        valid_until=now + 86400,
    )
    return PeerRecord(
        name="belgrade-accu",
        node_id=BEL.node_id,
        fingerprint=BEL.public.fingerprint,
        card=card.armored(),
        verified_by="fingerprint",
        added_at=now,
    )


@pytest.fixture
async def bar(tmp_path: Path) -> AsyncIterator[Bar]:
    root = tmp_path / "bar"
    init = run_main(
        ["--home", str(root), "init", "--name", "bar-pcu", "--unit-type", "PCU", "--country",
         "ME", "--location", "MEBAR", "--kdf-profile", "interactive"],
        env=env(),
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    home = Home(root)
    identity = Identity.from_secret_bytes(
        open_keystore(read_keystore_file(home.keystore), PASSPHRASE.encode())
    )
    node = Node(home, load_config(home.config, env={"BORDERLINK_LISTEN": "127.0.0.1:0"}), identity)

    def trust() -> None:
        with node.store.unit(time.time()) as u:
            u.put_peer(peer_record())

    await node.run_db(trust)
    with capture_logs():  # the node's log lines, not on the CLI's stdout
        await node.start()
        bar = Bar(root, node)
        try:
            yield bar
        finally:
            await bar.stop()


async def flood(bar: Bar) -> str:
    """Belgrade's real flash alert, then 600 small routine messages: the alert's id."""
    me = bar.node.identity.public

    def sealed(priority: str, narrative: str | None = None) -> bytes:
        body = template("seizure-alert")
        body = msgspec.structs.replace(
            body, meta=msgspec.structs.replace(body.meta, priority=priority)
        )
        if narrative is not None:
            body = msgspec.structs.replace(body, narrative=narrative)
        env = seal(
            BEL, [me], "seizure-alert", encode_body(body), now=int(time.time()) - 5, ttl=3600
        )
        return env.for_recipient(me.node_id).encode()

    alert = sealed("flash", IN_TEXT)
    [first] = (await bar.node.receiver.receive([alert], source="t", peer=BEL.node_id)).results
    assert first.outcome == "accepted" and first.id is not None
    junk = [sealed("routine") for _ in range(600)]
    for i in range(0, 600, 200):
        resp = await bar.node.receiver.receive(junk[i : i + 200], source="t", peer=BEL.node_id)
        assert {r.outcome for r in resp.results} == {"accepted"}
    return first.id.hex()


async def follow(bar: Bar, *args: str) -> list[str]:
    """Every page of a listing as a person follows the 'more:' lines: all their rows."""
    rows, command = [], list(args)
    while True:
        out = (await bar.cli(*command)).stdout.splitlines()
        if out and out[-1].startswith("more: "):
            rows += out[:-1]
            command = shlex.split(out[-1][len("more: ") :])[1:]  # without 'borderlink'
        else:
            return rows + out


async def test_regression_a_flood_of_small_messages_hid_a_real_unread_alert(bar: Bar) -> None:
    alert = await flood(bar)
    status = await bar.json("status")
    assert isinstance(status, dict) and status["inbox"]["unread"] == 601

    page = (await bar.cli("inbox", "--unread")).stdout.splitlines()
    assert len(page) == 51  # 50 rows and how to see the next ones
    assert page[0].startswith(alert) and "FLASH" in page[0]
    assert page[-1].startswith("more: borderlink inbox --unread --limit 50 --after ")

    rows = await follow(bar, "inbox", "--unread", "--limit", "200")
    ids = [r.split()[0] for r in rows]
    assert len(ids) == len(set(ids)) == 601 and ids[0] == alert

    listed = await bar.json("inbox", "--unread", "--limit", "2")
    assert isinstance(listed, dict) and list(listed) == ["items", "next"]
    assert [m["priority"] for m in listed["items"]] == ["flash", "routine"]
    after = await bar.json("inbox", "--unread", "--limit", "2", "--after", listed["next"])
    assert isinstance(after, dict) and after["items"][0]["id"] != listed["items"][1]["id"]

    bad = await bar.cli("inbox", "--after", "not-a-cursor", code=2)
    assert bad.stderr.count("\n") == 1 and "--after takes the cursor" in bad.stderr

    # status: each sender's share of the inbox, what its quota counts
    await bar.cli("inbox", "show", alert)
    human = (await bar.cli("status")).stdout
    assert "  from belgrade-accu    601 messages (600 unread, " in human
    status = await bar.json("status")
    assert isinstance(status, dict)
    [share] = status["inbox"]["senders"]
    assert (share["name"], share["messages"], share["unread"]) == ("belgrade-accu", 601, 600)


async def test_a_peers_control_and_bidi_text_is_escaped_for_people_and_exact_in_json(
    bar: Bar,
) -> None:
    alert = await flood(bar)
    shown = (await bar.cli("inbox", "show", alert)).stdout
    assert "narrative:\n    paid \\u202e0001\\u202c EUR \\u009b2J done\n" in shown
    assert not RAW_CONTROL.search(shown)
    exact = await bar.json("inbox", "show", alert)
    assert isinstance(exact, dict) and exact["message"]["narrative"] == IN_TEXT

    # a peer's error text as an older version stored it, and a peer's words in an audit entry
    msg_id = (await bar.json("send", "--to", "belgrade-accu", "--type", "seizure-alert",
                             str(_alert_file(bar.root))))  # fmt: skip
    assert isinstance(msg_id, dict)

    def hostile_rows() -> None:
        with bar.node.store.unit(time.time()) as u:
            u.mark_failed(BEL.node_id, [(bytes.fromhex(msg_id["id"]), HOSTILE, time.time() + 600)])
            record(u, "checkpoint.received", peer="belgrade-accu", detail=HOSTILE)

    await bar.node.deliveries.stop()  # no worker rewrites the entry while we look
    await bar.node.run_db(hostile_rows)
    outbox = (await bar.cli("outbox")).stdout
    assert "so far), next in 10 min: \\u001b]0;pwned\\u0007 \\u009b2J \\u202eevil" in outbox
    assert not RAW_CONTROL.search(outbox)
    page = await bar.json("outbox")
    assert isinstance(page, dict) and page["items"][0]["last_error"] == HOSTILE

    log = (await bar.cli("audit", "log", "--kind", "checkpoint.received")).stdout
    assert "detail=\\u001b]0;pwned\\u0007 \\u009b2J \\u202eevil" in log
    assert not RAW_CONTROL.search(log)
    entries = await bar.json("audit", "log", "--kind", "checkpoint.received")
    assert isinstance(entries, dict) and entries["items"][0]["detail"] == HOSTILE


def _alert_file(root: Path) -> Path:
    path = root.parent / "alert.json"
    path.write_bytes(encode_body(template("seizure-alert")))
    return path


async def test_outbox_retry_queues_a_failed_delivery_again(bar: Bar) -> None:
    sent = await bar.json("send", "--to", "belgrade-accu", "--type", "seizure-alert",
                          str(_alert_file(bar.root)))  # fmt: skip
    assert isinstance(sent, dict)
    msg_id = sent["id"]
    for _ in range(400):  # the worker finds no endpoint in the peer's card
        page = await bar.json("outbox")
        assert isinstance(page, dict)
        if page["items"][0]["status"] == "failed":
            break
        await asyncio.sleep(0.05)
    assert "has no endpoint" in page["items"][0]["last_error"]

    retried = await bar.cli("outbox", "retry", msg_id, "--to", "belgrade-accu")
    assert retried.stdout == f"queued {msg_id} again for belgrade-accu\n"
    log = await bar.json("audit", "log", "--kind", "message.requeued", "--message", msg_id)
    assert isinstance(log, dict)
    [entry] = log["items"]
    assert (entry["actor"], entry["detail"]) == ("operator", "to belgrade-accu")

    unknown = await bar.cli("outbox", "retry", "42" * 16, code=1)
    assert unknown.stderr.startswith(f"borderlink: error: no message {'42' * 16} in the outbox")
    nobody = await bar.cli("outbox", "retry", msg_id, "--to", "nobody", code=4)
    assert "no peer named 'nobody'" in nobody.stderr


async def test_the_audit_log_pages_with_the_node_up_or_down(bar: Bar) -> None:
    def entries() -> None:
        with bar.node.store.unit(time.time()) as u:
            for i in range(7):
                record(u, "message.shown", "operator", message_id=f"{i:032x}")

    await bar.node.run_db(entries)
    rows = await follow(bar, "audit", "log", "--limit", "2")
    everything = (await bar.cli("audit", "log")).stdout.splitlines()
    assert rows == everything and len(everything) > 2
    await bar.stop()
    down = await follow(bar, "audit", "log", "--limit", "2")
    assert down[: len(everything)] == everything
    gone = await bar.cli("inbox", code=3)  # the inbox needs the node, as before
    assert gone.stderr.count("\n") == 1
