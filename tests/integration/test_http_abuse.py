"""Abuse of the peer API's transport: slow senders and floods, against real nodes on 127.0.0.1.

The node's cheap refusals (node/http/peer_routes.py docstring) must keep it answering legitimate
peers: a slowloris crowd does not delay a real delivery, a trickling body gets 408, and a flooding
caller key gets 429 while other keys still get through. Every loop here is bounded in count and time.
"""

from __future__ import annotations

import itertools
import json
import selectors
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import msgspec
import pytest

from keys.card import parse_card
from keys.keystore import open_keystore, read_keystore_file
from protocol.batch import BATCH_CONTENT_TYPE, BATCH_PATH, BatchResponse, encode_batch
from protocol.envelope import seal
from protocol.identity import Identity
from protocol.schemas import encode_body, template
from tests.integration.harness import PASSPHRASE, NodeProc, make_network, stop_all
from tests.integration.waiting import PATIENCE, wait_until

RATE, BURST = 5, 10
LIMITS = {
    "BORDERLINK_LIMITS_BODY_TIMEOUT": "1",
    "BORDERLINK_LIMITS_RATE": str(RATE),
    "BORDERLINK_LIMITS_BURST": str(BURST),
}
MAX_FLOOD = 2000  # requests: bounds a flood on a machine too slow to outrun the refill
WAIT = str(int(PATIENCE))  # ``send --wait``: returns once delivered
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeProc]]:
    nodes = make_network(
        tmp_path_factory.mktemp("abuse"), ["bar-pcu", "belgrade-accu"], extra_env=LIMITS
    )
    try:
        yield nodes
    finally:
        stop_all(nodes)


def post(node: NodeProc, body: bytes, sender_key: str) -> tuple[int, bytes]:
    req = urllib.request.Request(
        node.url + BATCH_PATH,
        data=body,
        method="POST",
        headers={"Content-Type": BATCH_CONTENT_TYPE, "X-Borderlink-Sender": sender_key},
    )
    try:
        with OPENER.open(req, timeout=PATIENCE) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def request_head(node: NodeProc, content_length: int) -> bytes:
    return (
        f"POST {BATCH_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n"
        f"Content-Type: {BATCH_CONTENT_TYPE}\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode()


class Trickle(threading.Thread):
    """Slow senders: each socket gets one more byte of its request per second until ``close()``
    (or ``seconds``, a bound for a test that fails to close it). None ever finishes its headers
    in that time: half send only half of them, half a request head and then a 4 KiB body."""

    def __init__(self, node: NodeProc, count: int, seconds: float = PATIENCE) -> None:
        super().__init__(daemon=True)
        self.seconds = seconds
        self.stop = threading.Event()
        self.socks: list[tuple[socket.socket, bytes]] = []
        for i in range(count):
            s = socket.create_connection(("127.0.0.1", node.port), timeout=30)
            data = request_head(node, 4096)
            data = data[: len(data) // 2] if i % 2 == 0 else data + b"\x91" + b"\x00" * 4095
            self.socks.append((s, data))
        self.sent = [0] * count
        self.hung_up: set[int] = set()  # sockets the node closed on us

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            for i, (s, data) in enumerate(self.socks):
                if self.sent[i] < len(data) and i not in self.hung_up:
                    try:
                        s.send(data[self.sent[i] : self.sent[i] + 1])
                        self.sent[i] += 1
                    except OSError:
                        self.hung_up.add(i)
            self.stop.wait(1.0)

    def close(self) -> None:
        self.stop.set()
        self.join(30)
        for s, _ in self.socks:
            s.close()


def test_slowloris_does_not_delay_a_real_delivery(
    pair: dict[str, NodeProc], tmp_path: Path
) -> None:
    """The crowd holds 50 connections open mid-request for as long as the delivery takes: a
    node that served them before a real peer (or stopped accepting while they hang) would not
    deliver until they gave up, and they do not give up. How long the delivery takes is no
    criterion: on a loaded machine even an undisturbed one can take seconds."""
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    alert = tmp_path / "alert.json"
    alert.write_text(bar.cli("template", "seizure-alert").stdout)
    crowd = Trickle(bel, count=50)
    crowd.start()
    try:
        wait_until(lambda: all(crowd.sent), "every slow sender to have begun its request")
        sent = bar.json(
            "send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert), "--wait", WAIT
        )
        # The slow-header half is still connected after the delivery went through: half a head
        # never ends the headers, so each is still mid-request however long the delivery took.
        slow_headers = set(range(0, 50, 2))
        still_sending = slow_headers - crowd.hung_up
    finally:
        crowd.close()
    assert sent["recipients"] == {"belgrade-accu": "delivered"}
    assert still_sending == slow_headers
    assert [m["id"] for m in bel.json("inbox")["items"]].count(sent["id"]) == 1


def read_response(sock: socket.socket, head: bytes, trickle: bytes) -> tuple[float, int, bytes]:
    """Send ``head``, then ``trickle`` one byte per 0.25 s until the node answers (bounded by
    PATIENCE); return (seconds from sending the head to the answer, body bytes sent, response).
    """
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    started = time.monotonic()  # before the head: the node's body timer cannot start earlier
    sock.sendall(head)
    got, answered = b"", None
    sent = 0
    while time.monotonic() - started < PATIENCE:
        if sel.select(timeout=0.25):
            chunk = sock.recv(65536)
            answered = answered or time.monotonic() - started
            got += chunk
            if not chunk or (b"\r\n\r\n" in got and got.rstrip().endswith(b"}")):
                break
        elif answered is None and sent < len(trickle):
            sock.send(trickle[sent : sent + 1])
            sent += 1
    sel.close()
    assert answered is not None, "the node never answered the slow body"
    return answered, sent, got


def test_slow_body_gets_408(pair: dict[str, NodeProc]) -> None:
    """The node gives a trickling body its whole ``body_timeout`` (1 s here), then answers 408
    without waiting for the rest: at 4 bytes a second, the 1000 bytes would take over 4 minutes.
    How soon after the timeout the answer comes is up to the machine's load, so it is not bound.
    """
    bel = pair["belgrade-accu"]
    inbox = bel.json("inbox")["items"]
    body = b"\x91" + b"\x00" * 999
    with socket.create_connection(("127.0.0.1", bel.port), timeout=30) as sock:
        answered, sent, raw = read_response(sock, request_head(bel, len(body)), body)
    head, _, answer = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 408 Request Timeout"
    assert json.loads(answer)["error"] == "body_timeout"
    assert answered > 0.9, f"answered after {answered:.2f} s with body_timeout=1"
    assert sent < len(body), "the node waited for the whole body"
    assert bel.json("inbox")["items"] == inbox


def real_envelope(pair: dict[str, NodeProc], sender: str, to: str) -> bytes:
    ident = Identity.from_secret_bytes(
        open_keystore(read_keystore_file(pair[sender].home / "keystore.json"), PASSPHRASE.encode())
    )
    card = parse_card(pair[to].home.joinpath("card.txt").read_text(), now=None)
    body = encode_body(template("seizure-alert"))
    return seal(
        ident, [card.identity], "seizure-alert", body, now=int(time.time()), ttl=3600
    ).encode()


class Flood(NamedTuple):
    statuses: list[int]
    held_at: float  # time.monotonic() before sending the last request, which was refused


def flood(
    node: NodeProc,
    body: bytes,
    keys: Iterator[str],
    refusals: int,
    tokens: float = BURST,
    since: float | None = None,
) -> Flood:
    """POST as fast as this machine allows, the sender header from ``keys``, until ``refusals``
    answers were 429 (at most MAX_FLOOD requests).

    Checks the token bucket's own bound on what it let through: the ``tokens`` it held at most
    at ``since`` (default: the start), plus RATE per second from then to the end, the clock read
    around the requests, so a slow machine is allowed more, never less. A fixed number of
    requests would not do: on a loaded machine they come slower, the bucket refills between
    them and fewer are refused, which is right, not a failure.
    """
    statuses: list[int] = []
    start = time.monotonic() if since is None else since
    held_at = start
    for key in itertools.islice(keys, MAX_FLOOD):
        before = time.monotonic()
        status, answer = post(node, body, key)
        statuses.append(status)
        if status == 429:
            assert json.loads(answer)["error"] == "rate_limited"
            held_at = before
            if statuses.count(429) >= refusals:
                break
    elapsed = time.monotonic() - start
    assert statuses.count(429) >= refusals, f"{len(statuses)} requests in {elapsed:.1f} s"
    allowed = len(statuses) - statuses.count(429)
    assert allowed <= tokens + RATE * elapsed, (allowed, elapsed, statuses)
    return Flood(statuses, held_at)


def test_flooding_caller_key_is_rate_limited_others_are_not(pair: dict[str, NodeProc]) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    legit_key = bar.json("keys", "show")["node_id"]
    envelope = real_envelope(pair, "bar-pcu", "belgrade-accu")
    junk, flooder = encode_batch([b"junk"]), itertools.repeat("f1" * 32)
    first_flood = flood(bel, junk, flooder, refusals=BURST)
    statuses = first_flood.statuses
    first = statuses.index(429)
    assert first >= BURST - 2 and set(statuses[:first]) == {400}, statuses
    # A legitimate peer with its own key gets through at once, while the flooder is still held:
    # its bucket had under one token at its last refusal, and only refills at RATE since.
    status, answer = post(bel, encode_batch([envelope]), legit_key)
    assert status == 200, answer
    assert msgspec.msgpack.decode(answer, type=BatchResponse).results[0].outcome == "accepted"
    flood(bel, junk, flooder, refusals=1, tokens=1, since=first_flood.held_at)


def test_rotating_the_sender_header_does_not_escape_the_limit(pair: dict[str, NodeProc]) -> None:
    bel = pair["belgrade-accu"]
    rotating = (f"{i:064x}" for i in itertools.count())
    flood(bel, encode_batch([b"junk"]), rotating, refusals=BURST)
