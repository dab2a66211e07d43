"""Abuse of the peer API's transport: slow senders and floods, against real nodes on 127.0.0.1.

The node's cheap refusals (peer_api.py docstring) must keep it answering legitimate peers: a
slowloris crowd does not delay a real delivery, a trickling body gets 408, and a flooding caller
key gets 429 while other keys still get through. Every loop here is bounded in count and time.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from keys.card import parse_card
from keys.identity import Identity
from keys.keystore import open_keystore, read_keystore_file
from node.transport import BATCH_CONTENT_TYPE, BATCH_PATH
from protocol.batch import BatchResponse, encode_batch
from protocol.envelope import seal
from protocol.schemas import encode_body, template
from tests.integration.harness import PASSPHRASE, NodeProc, make_network, stop_all

RATE, BURST = 5, 10
LIMITS = {
    "BORDERLINK_LIMITS_BODY_TIMEOUT": "1",
    "BORDERLINK_LIMITS_RATE": str(RATE),
    "BORDERLINK_LIMITS_BURST": str(BURST),
}
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
        with OPENER.open(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def request_head(node: NodeProc, content_length: int) -> bytes:
    return (
        f"POST {BATCH_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n"
        f"Content-Type: {BATCH_CONTENT_TYPE}\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode()


class Trickle(threading.Thread):
    """Slow senders: each socket gets one more byte of its request per second, for ``seconds``."""

    def __init__(self, node: NodeProc, count: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.seconds = seconds
        self.stop = threading.Event()
        self.socks: list[tuple[socket.socket, bytes]] = []
        for i in range(count):
            s = socket.create_connection(("127.0.0.1", node.port), timeout=2)
            # Half never finish their headers; half finish them and then trickle a 4 KiB body.
            data = request_head(node, 4096)
            data = data[: len(data) // 2] if i % 2 == 0 else data + b"\x91" + b"\x00" * 4095
            self.socks.append((s, data))
        self.sent = [0] * count
        self.alive_at_end = 0

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            for i, (s, data) in enumerate(self.socks):
                if self.sent[i] < len(data):
                    try:
                        s.send(data[self.sent[i] : self.sent[i] + 1])
                        self.sent[i] += 1
                    except OSError:
                        self.sent[i] = len(data)  # the node hung up on it
            self.stop.wait(1.0)

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        for s, _ in self.socks:
            s.close()


def test_slowloris_does_not_delay_a_real_delivery(
    pair: dict[str, NodeProc], tmp_path: Path
) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    alert = tmp_path / "alert.json"
    alert.write_text(bar.cli("template", "seizure-alert").stdout)
    crowd = Trickle(bel, count=50, seconds=4)
    crowd.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        sent = bar.json(
            "send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert), "--wait", "20"
        )
        elapsed = time.monotonic() - started
        # The slow-header half is still connected and mid-request while the delivery went through.
        still_sending = sum(
            1 for i in range(0, 50, 2) if 0 < crowd.sent[i] < len(crowd.socks[i][1])
        )
    finally:
        crowd.close()
    assert sent["recipients"] == {"belgrade-accu": "delivered"}
    assert elapsed < 5, f"delivery took {elapsed:.1f} s under slowloris"
    assert still_sending == 25
    assert [m["id"] for m in bel.json("inbox")].count(sent["id"]) == 1


def read_response(sock: socket.socket, trickle: bytes, seconds: float) -> tuple[float, bytes]:
    """Send ``trickle`` one byte per 0.25 s until the node answers; return (when, raw response)."""
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    started = time.monotonic()
    got, answered = b"", None
    sent = 0
    while time.monotonic() - started < seconds:
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
    return answered, got


def test_slow_body_gets_408(pair: dict[str, NodeProc]) -> None:
    bel = pair["belgrade-accu"]
    inbox = bel.json("inbox")
    with socket.create_connection(("127.0.0.1", bel.port), timeout=5) as sock:
        sock.sendall(request_head(bel, 1000))
        answered, raw = read_response(sock, b"\x91" + b"\x00" * 999, seconds=5)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 408 Request Timeout"
    assert json.loads(body)["error"] == "body_timeout"
    assert 0.9 < answered < 3, f"answered after {answered:.1f} s with body_timeout=1"
    assert bel.json("inbox") == inbox


def real_envelope(pair: dict[str, NodeProc], sender: str, to: str) -> bytes:
    ident = Identity.from_secret_bytes(
        open_keystore(read_keystore_file(pair[sender].home / "keystore.json"), PASSPHRASE.encode())
    )
    card = parse_card(pair[to].home.joinpath("card.txt").read_text(), now=None)
    body = encode_body(template("seizure-alert"))
    return seal(
        ident, [card.identity], "seizure-alert", body, now=int(time.time()), ttl=3600
    ).encode()


def test_flooding_caller_key_is_rate_limited_others_are_not(pair: dict[str, NodeProc]) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    legit_key = bar.json("keys", "show")["node_id"]
    envelope = real_envelope(pair, "bar-pcu", "belgrade-accu")
    junk, flooder = encode_batch([b"junk"]), "f1" * 32
    statuses = []
    for _ in range(4 * BURST):  # bounded: far more than the burst, sent as fast as possible
        status, answer = post(bel, junk, flooder)
        statuses.append(status)
        if status == 429:
            assert json.loads(answer)["error"] == "rate_limited"
    first = statuses.index(429)
    assert first >= BURST - 2 and set(statuses[:first]) == {400}, statuses
    assert statuses.count(429) >= BURST, statuses
    # A legitimate peer with its own key gets through at once, while the flooder is still held.
    status, answer = post(bel, encode_batch([envelope]), legit_key)
    assert status == 200, answer
    assert msgspec.msgpack.decode(answer, type=BatchResponse).results[0].outcome == "accepted"
    assert [post(bel, junk, flooder)[0] for _ in range(5)].count(429) >= 3


def test_rotating_the_sender_header_does_not_escape_the_limit(pair: dict[str, NodeProc]) -> None:
    bel = pair["belgrade-accu"]
    junk = encode_batch([b"junk"])
    statuses = [post(bel, junk, f"{i:064x}")[0] for i in range(10 * BURST)]
    assert 429 in statuses
