"""Abuse of the peer API's transport, against real nodes over TLS on 127.0.0.1 (PROTOCOL.md 11.0).

What a caller holds before it proves anything is bounded: connections per address, the time a
TLS handshake and then a request's headers may take. What it costs is bounded too: an anonymous
caller gets the card, the health checks and 401 for the rest, within a budget per address, and
costs no decoding, cryptography or storage; a trusted peer over its budget gets 429 before its body
is read, and other peers go on being served. 127.0.0.2, 127.0.0.3, ... act as other machines.
Every loop here is bounded in count and time.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import msgspec
import pytest

from keys.card import parse_card
from protocol.batch import BATCH_CONTENT_TYPE, BATCH_PATH, BatchResponse, encode_batch
from protocol.envelope import seal
from protocol.schemas import encode_body, template
from tests.integration.harness import PASSPHRASE, NodeProc, make_network, stop_all
from tests.integration.waiting import PATIENCE, log_events, wait_until
from tests.tlsclient import Answer, anonymous, connect, home_identity, read_answer, request_bytes

RATE, BURST = 5, 10  # per trusted peer, and per address for anonymous callers
CAP = 8  # connections per address
LIMITS = {
    "BORDERLINK_LIMITS_BODY_TIMEOUT": "1",
    "BORDERLINK_LIMITS_PEER_RATE": str(RATE),
    "BORDERLINK_LIMITS_PEER_BURST": str(BURST),
    "BORDERLINK_LIMITS_ANONYMOUS_RATE": str(RATE),
    "BORDERLINK_LIMITS_ANONYMOUS_BURST": str(BURST),
    "BORDERLINK_LIMITS_HEADER_TIMEOUT": "3",
    "BORDERLINK_LIMITS_KEEPALIVE_TIMEOUT": "3",
    "BORDERLINK_LIMITS_MAX_CONNECTIONS_PER_ADDRESS": str(CAP),
}
MAX_FLOOD = 2000  # requests: bounds a flood on a machine too slow to outrun the refill
WAIT = str(int(PATIENCE))  # ``send --wait``: returns once delivered
NAMES = ["bar-pcu", "belgrade-accu", "skopje-coord"]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeProc]]:
    nodes = make_network(tmp_path_factory.mktemp("abuse"), NAMES, extra_env=LIMITS)
    try:
        yield nodes
    finally:
        stop_all(nodes)


class Client:
    """One keep-alive HTTPS connection to ``node``, from ``source``, with ``context`` (a peer's
    or anonymous); reconnects when the node closed it between two requests."""

    def __init__(self, node: NodeProc, context: ssl.SSLContext, source: str = "127.0.0.1"):
        self.node, self.context, self.source = node, context, source
        self.sock: ssl.SSLSocket | None = None

    def call(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Answer:
        data = request_bytes(method, path, body, headers)
        for attempt in range(2):
            if self.sock is None:
                self.sock = connect(self.node.port, self.context, self.source, timeout=PATIENCE)
            try:
                self.sock.sendall(data)
                return read_answer(self.sock)
            except (ConnectionError, ssl.SSLError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def post_batch(self, body: bytes, headers: dict[str, str] | None = None) -> Answer:
        return self.call(
            "POST", BATCH_PATH, body, {"Content-Type": BATCH_CONTENT_TYPE, **(headers or {})}
        )

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def error_of(answer: Answer) -> str:
    return str(json.loads(answer.body)["error"])


def real_envelope(net: dict[str, NodeProc], sender: str, to: str) -> bytes:
    """A valid envelope ``sender`` sealed to ``to``: accepted if ``sender``'s channel brings it."""
    ident = home_identity(net[sender].home, PASSPHRASE)
    card = parse_card(net[to].home.joinpath("card.txt").read_text(), now=None)
    body = encode_body(template("seizure-alert"))
    return seal(
        ident, [card.identity], "seizure-alert", body, now=int(time.time()), ttl=3600
    ).encode()


def rejected_in_audit(node: NodeProc) -> int:
    return len(node.json("audit", "log", "--kind", "message.rejected", "--limit", "1000")["items"])


# -- slow senders -------------------------------------------------------------------------------


def client_hello() -> bytes:
    """The first flight of a real TLS 1.3 client, to be sent one byte at a time."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = anonymous().wrap_bio(incoming, outgoing, server_side=False)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the other end closed ``sock`` (read side), without blocking."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
        return False
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except (TimeoutError, ssl.SSLWantReadError):
        return False
    except (OSError, ssl.SSLError):
        return True


class Trickle(threading.Thread):
    """Slow senders, one more byte each per second: half never finish their TLS handshake (a
    real ClientHello, trickled over TCP), half finish it and never finish their request headers.
    Runs until every socket was closed by the node, ``close()``, or ``seconds``."""

    def __init__(self, node: NodeProc, count: int, seconds: float = PATIENCE) -> None:
        super().__init__(daemon=True)
        self.seconds = seconds
        self.stop = threading.Event()
        self.socks: list[tuple[socket.socket, bytes]] = []
        hello = client_hello()
        head = request_bytes("POST", BATCH_PATH, b"\x91" + bytes(4095))
        for i in range(count):
            source = f"127.0.1.{2 + i // CAP}"  # no address over the node's cap
            if i % 2 == 0:
                raw = socket.create_connection(
                    ("127.0.0.1", node.port), timeout=30, source_address=(source, 0)
                )
                self.socks.append((raw, hello))
            else:
                self.socks.append((connect(node.port, anonymous(), source), head))
        self.sent = [0] * count
        self.hung_up: set[int] = set()  # sockets the node closed on us

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            for i, (s, data) in enumerate(self.socks):
                if i in self.hung_up:
                    continue
                if closed_by_peer(s):
                    self.hung_up.add(i)
                    continue
                if self.sent[i] < len(data):
                    try:
                        s.settimeout(1)
                        s.send(data[self.sent[i] : self.sent[i] + 1])
                        self.sent[i] += 1
                    except (OSError, ssl.SSLError):
                        self.hung_up.add(i)
            if len(self.hung_up) == len(self.socks):
                return
            self.stop.wait(1.0)

    def close(self) -> None:
        self.stop.set()
        self.join(30)
        for s, _ in self.socks:
            s.close()


def test_slow_senders_are_cut_off_and_do_not_delay_a_real_delivery(
    net: dict[str, NodeProc], tmp_path: Path
) -> None:
    """50 connections trickle a handshake or request headers at a byte a second. The node
    delivers a real alert meanwhile, and closes every one of them (header_timeout for a
    handshake, keepalive_timeout for headers, 3 s each here) instead of holding them for as long
    as they care to trickle. How long the delivery took is no criterion on a loaded machine."""
    bar, bel = net["bar-pcu"], net["belgrade-accu"]
    alert = tmp_path / "alert.json"
    alert.write_text(bar.cli("template", "seizure-alert").stdout)
    crowd = Trickle(bel, count=50)
    crowd.start()
    try:
        wait_until(lambda: all(crowd.sent), "every slow sender to have begun")
        sent = bar.json(
            "send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert), "--wait", WAIT
        )
        wait_until(
            lambda: len(crowd.hung_up) == 50 or not crowd.is_alive(),
            lambda: f"the node to close all 50 slow senders ({len(crowd.hung_up)} so far)",
        )
        completed = [i for i, (_, data) in enumerate(crowd.socks) if crowd.sent[i] >= len(data)]
    finally:
        crowd.close()
    assert sent["recipients"] == {"belgrade-accu": "delivered"}
    assert crowd.hung_up == set(range(50)) and completed == []
    assert [m["id"] for m in bel.json("inbox")["items"]].count(sent["id"]) == 1


def test_connections_per_address_are_capped(net: dict[str, NodeProc]) -> None:
    """CAP connections from one address are served; one more from it is closed before any TLS
    work; other addresses are not held; a closed connection frees its place."""
    bel = net["belgrade-accu"]
    held = [Client(bel, anonymous(), "127.0.0.9") for _ in range(CAP)]
    try:
        for c in held:  # each answered: the node has counted it
            assert c.call("GET", "/livez").status == 200
        with pytest.raises((OSError, ssl.SSLError)):
            connect(bel.port, anonymous(), "127.0.0.9").close()
        other = Client(bel, anonymous(), "127.0.0.10")
        assert other.call("GET", "/livez").status == 200
        other.close()
        held.pop().close()

        def one_more() -> bool:
            try:
                connect(bel.port, anonymous(), "127.0.0.9").close()
                return True
            except (OSError, ssl.SSLError):
                return False

        wait_until(one_more, "a place to free up at 127.0.0.9")
    finally:
        for c in held:
            c.close()
    assert log_events(bel, "connection.refused")


def peak_memory_kib(node: NodeProc) -> int:
    assert node.proc is not None
    status = Path(f"/proc/{node.proc.pid}/status").read_text()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM:")))


def test_silent_connections_cost_no_tls_memory(net: dict[str, NodeProc]) -> None:
    """600 connections that never send a byte (75 addresses, under every per-address bound) are
    held until the node closes them. Each used to get its TLS state and a 256 KiB buffer at once
    (6,400 of them took 1.9 GiB); now they cost a socket each, so the node's peak memory barely
    moves."""
    bel = net["belgrade-accu"]
    before = peak_memory_kib(bel)
    crowd = [
        socket.create_connection(
            ("127.0.0.1", bel.port), timeout=30, source_address=(f"127.0.4.{2 + i // CAP}", 0)
        )
        for i in range(600)
    ]
    try:
        wait_until(
            lambda: all(closed_by_peer(s) for s in crowd),
            "the node to close every silent connection",
        )
    finally:
        for s in crowd:
            s.close()
    grown = peak_memory_kib(bel) - before
    assert grown < 40 * 1024, f"peak memory grew {grown} KiB for 600 silent connections"


# -- bodies a peer sends ------------------------------------------------------------------------


def test_slow_body_gets_408(net: dict[str, NodeProc]) -> None:
    """A trusted peer's trickling body gets its whole ``body_timeout`` (1 s here), then 408
    without the node waiting for the rest: at 4 bytes a second, 1000 bytes take 4 minutes."""
    bar, bel = net["bar-pcu"], net["belgrade-accu"]
    inbox = bel.json("inbox")["items"]
    body = b"\x91" + bytes(999)
    head = request_bytes("POST", BATCH_PATH, body, {"Content-Type": BATCH_CONTENT_TYPE})
    head = head[: len(head) - len(body)]
    with connect(bel.port, bar.as_peer_of(bel)) as sock:
        sock.sendall(head)
        sock.settimeout(0.25)
        got, sent = b"", 0
        deadline = time.monotonic() + PATIENCE
        while b"\r\n\r\n" not in got and time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                if sent < len(body):
                    sock.send(body[sent : sent + 1])
                    sent += 1
                continue
            if not chunk:
                break
            got += chunk
        sock.settimeout(PATIENCE)
        rest = got.partition(b"\r\n\r\n")[2]
        status = got.split(b"\r\n", 1)[0]
        while got and not rest.rstrip().endswith(b"}"):
            rest += sock.recv(65536)
    assert status == b"HTTP/1.1 408 Request Timeout", got
    assert json.loads(rest)["error"] == "body_timeout"
    assert 0 < sent < len(body), "the node waited for the whole body"
    assert bel.json("inbox")["items"] == inbox


def test_an_array_header_of_two_million_is_refused_before_decoding(
    net: dict[str, NodeProc],
) -> None:
    """A 4 MB batch of 2,000,000 empty items: its 5-byte array header alone says it is over the
    256 a batch may hold, so nothing of it is decoded (it used to stall the node 0.5 s)."""
    bar, bel = net["bar-pcu"], net["belgrade-accu"]
    n = 2_000_000
    body = b"\xdd" + n.to_bytes(4, "big") + b"\xc4\x00" * n
    inbox = bel.json("inbox")["items"]
    peer = Client(bel, bar.as_peer_of(bel))
    try:
        answer = peer.post_batch(body)
        assert (answer.status, error_of(answer)) == (400, "malformed"), answer
        assert "more than 256 envelopes" in json.loads(answer.body)["message"]
        header_only = peer.post_batch(body[:5])
        assert (header_only.status, error_of(header_only)) == (400, "malformed")
    finally:
        peer.close()
    assert bel.json("inbox")["items"] == inbox


def test_a_header_value_that_is_not_utf8_gets_400(net: dict[str, NodeProc]) -> None:
    bel = net["belgrade-accu"]
    with connect(bel.port, anonymous(), "127.0.0.11") as sock:
        sock.sendall(b"GET /v1/card HTTP/1.1\r\nHost: x\r\nX-Unit: \xff\xfe caf\xe9\r\n\r\n")
        answer = read_answer(sock)
    assert (answer.status, error_of(answer)) == (400, "malformed")
    assert answer.headers["content-type"].startswith("application/json")


BAD_REQUESTS = [
    b"GET /v1/card HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"\x16\x03\x01 /v1/card HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/card HTTP/1.1\r\nHost x\r\n\r\n",
    b"GET /v1/card HTTP/9.9\r\nHost: x\r\n\r\n",
    b"POST /v1/envelopes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
]


def test_unparsable_requests_are_refused_without_a_traceback_each(
    net: dict[str, NodeProc],
) -> None:
    """200 requests aiohttp cannot parse (40 of each kind), from 20 addresses: each one used to
    write "Error handling request" and a traceback to the log. Now: refused, and logged in a few
    sampled lines (1st, 2nd, 4th... of each kind of error)."""
    bel = net["belgrade-accu"]
    offset = bel.log.stat().st_size
    statuses = []
    for i in range(200):
        with connect(bel.port, anonymous(), f"127.0.5.{2 + i // 10}") as sock:
            sock.sendall(BAD_REQUESTS[i % len(BAD_REQUESTS)])
            try:
                statuses.append(read_answer(sock).status)
            except ConnectionError:
                statuses.append(0)  # closed without an answer
    assert set(statuses) <= {400, 0} and statuses.count(400) >= 100, statuses
    text = bel.log.read_bytes()[offset:].decode(errors="replace")
    assert "Traceback" not in text and "Error handling request" not in text, text[:2000]
    lines = log_events(bel, "http.bad_request", offset)
    assert lines and len(lines) <= 8 * len(BAD_REQUESTS), len(lines)


# -- budgets -------------------------------------------------------------------------------------


class Flood(NamedTuple):
    statuses: list[int]
    held_at: float  # time.monotonic() before sending the last request, which was refused


def flood(
    client: Client,
    body: bytes,
    refusals: int,
    tokens: float = BURST,
    since: float | None = None,
    headers: dict[str, str] | None = None,
) -> Flood:
    """POST as fast as this machine allows until ``refusals`` answers were 429 (at most
    MAX_FLOOD requests).

    Checks the token bucket's own bound on what it let through: the ``tokens`` it held at most
    at ``since`` (default: the start), plus RATE per second from then to the end, the clock read
    around the requests, so a slow machine is allowed more, never less. A fixed number of
    requests would not do: on a loaded machine they come slower, the bucket refills between
    them and fewer are refused, which is right, not a failure.
    """
    statuses: list[int] = []
    start = time.monotonic() if since is None else since
    held_at = start
    for _ in range(MAX_FLOOD):
        before = time.monotonic()
        answer = client.post_batch(body, headers)
        statuses.append(answer.status)
        if answer.status == 429:
            assert error_of(answer) == "rate_limited"
            held_at = before
            if statuses.count(429) >= refusals:
                break
    elapsed = time.monotonic() - start
    assert statuses.count(429) >= refusals, f"{len(statuses)} requests in {elapsed:.1f} s"
    allowed = len(statuses) - statuses.count(429)
    assert allowed <= tokens + RATE * elapsed, (allowed, elapsed, statuses)
    return Flood(statuses, held_at)


def test_the_budget_counts_envelopes_not_requests(net: dict[str, NodeProc]) -> None:
    """A batch is charged one token per envelope before any of it is opened: BURST + 1 valid
    envelopes in one request are over the budget (429, nothing stored), and the refusal empties
    the budget, so the next request is refused before its body is read; a smaller batch sent
    with backoff, as a node's delivery worker does, then goes in whole."""
    bar, bel = net["bar-pcu"], net["belgrade-accu"]
    inbox = bar.json("inbox")["items"]
    peer = Client(bar, bel.as_peer_of(bar))
    try:
        big = [real_envelope(net, "belgrade-accu", "bar-pcu") for _ in range(BURST + 1)]
        # On a loaded machine the bucket may refill a token (1 / RATE s) before the probe's
        # handshake is done; the probe then waits for its body and gets 408: so the budget is
        # emptied again and the probe repeated, a bounded number of times.
        for _ in range(20):
            over = peer.post_batch(encode_batch(big))
            assert (over.status, error_of(over)) == (429, "rate_limited"), over
            with connect(bar.port, bel.as_peer_of(bar)) as sock:  # declares 100 kB, sends none
                sock.sendall(
                    request_bytes("POST", BATCH_PATH, headers={"Content-Length": "100000"})
                )
                emptied = read_answer(sock)
            if emptied.status != 408:
                break
        assert (emptied.status, error_of(emptied)) == (429, "rate_limited")
        assert bar.json("inbox")["items"] == inbox
        for attempt in range(12):  # backoff 0.1 s, 0.2 s, ... : bounded, not a timing
            time.sleep(0.1 * 2**attempt)
            small = peer.post_batch(encode_batch(big[:4]))
            if small.status != 429:
                break
    finally:
        peer.close()
    assert small.status == 200, small
    results = msgspec.msgpack.decode(small.body, type=BatchResponse).results
    assert [r.outcome for r in results] == ["accepted"] * 4


def test_a_flooding_peer_is_held_before_its_body_is_read_and_others_are_not(
    net: dict[str, NodeProc],
) -> None:
    bar, bel, skopje = net["bar-pcu"], net["belgrade-accu"], net["skopje-coord"]
    flooder = Client(bel, skopje.as_peer_of(bel))
    try:
        first_flood = flood(flooder, encode_batch([b"junk"]), refusals=BURST)
        statuses = first_flood.statuses
        first = statuses.index(429)
        assert first >= BURST - 2 and set(statuses[:first]) == {400}, statuses
        # Over its budget, a peer's request is answered before its body is read: this one
        # declares 100 kB and sends none, and gets 429, not the 408 of a body never sent. (On a
        # loaded machine the bucket may refill before it arrives, then it waits for its body and
        # gets 408: so the bucket is emptied again and the probe repeated, a bounded number of
        # times.)
        held, last_refused = None, first_flood.held_at
        for _ in range(20):
            for _ in range(MAX_FLOOD):
                before = time.monotonic()
                if flooder.post_batch(encode_batch([b"junk"])).status == 429:
                    last_refused = before  # the bucket held under one token then
                    break
            with connect(bel.port, skopje.as_peer_of(bel)) as sock:
                sock.sendall(
                    request_bytes("POST", BATCH_PATH, headers={"Content-Length": "100000"})
                )
                held = read_answer(sock)
            if held.status != 408:
                break
        assert held is not None and (held.status, error_of(held)) == (429, "rate_limited")
        first_flood = first_flood._replace(held_at=last_refused)
        # Another peer gets through at once, while the flooder is still held: its bucket had
        # under one token at its last refusal, and only refills at RATE since.
        legit = Client(bel, bar.as_peer_of(bel))
        answer = legit.post_batch(encode_batch([real_envelope(net, "bar-pcu", "belgrade-accu")]))
        legit.close()
        assert answer.status == 200, answer
        outcome = msgspec.msgpack.decode(answer.body, type=BatchResponse).results[0].outcome
        assert outcome == "accepted"
        flood(flooder, encode_batch([b"junk"]), refusals=1, tokens=1, since=first_flood.held_at)
    finally:
        flooder.close()


def test_an_anonymous_flood_costs_nothing_and_is_held_per_address(
    net: dict[str, NodeProc],
) -> None:
    """A valid envelope of Bar's, replayed by a caller with no certificate (and a header that
    names Bar, which used to be believed): 401 every time, then 429 once its address's budget is
    spent; nothing stored, nothing audited, its refusals logged sampled. Another address still
    gets the card; Bar itself then delivers the same envelope as new."""
    bar, bel = net["bar-pcu"], net["belgrade-accu"]
    envelope = real_envelope(net, "bar-pcu", "belgrade-accu")
    bar_id = bar.json("keys", "show")["node_id"]
    inbox, audited = bel.json("inbox")["items"], rejected_in_audit(bel)
    offset = bel.log.stat().st_size
    stranger = Client(bel, anonymous(), "127.0.0.2")
    try:
        refused = flood(
            stranger,
            encode_batch([envelope]),
            refusals=BURST,
            headers={"X-Borderlink-Sender": bar_id},
        )
    finally:
        stranger.close()
    first = refused.statuses.index(429)
    assert first >= BURST - 2 and set(refused.statuses[:first]) == {401}, refused.statuses
    other = Client(bel, anonymous(), "127.0.0.3")
    assert other.call("GET", "/v1/card").status == 200
    other.close()
    assert bel.json("inbox")["items"] == inbox
    assert rejected_in_audit(bel) == audited
    logged = [e for e in log_events(bel, "request.unauthenticated", offset)]
    assert logged and all(e["source"] == "127.0.0.2" for e in logged)
    assert len(logged) <= len(refused.statuses).bit_length() + 1, len(logged)
    legit = Client(bel, bar.as_peer_of(bel))
    answer = legit.post_batch(encode_batch([envelope]))
    legit.close()
    assert answer.status == 200, answer
    assert msgspec.msgpack.decode(answer.body, type=BatchResponse).results[0].outcome == "accepted"


def test_idle_sockets_beyond_the_file_limit_do_not_stop_deliveries(tmp_path: Path) -> None:
    """Belgrade may open 160 files in all; 240 connections from four addresses (under the
    per-address cap) each send a ClientHello and then nothing. The listener keeps at most a
    quarter of the file limit silent and half in TLS, the oldest making room, so descriptors
    never run out (1,020 idle sockets under a limit of 1,024 used to stop deliveries, hang
    ``status`` and write a traceback per failed accept): Bar's alert is delivered and the
    operator's ``status`` answers while the crowd holds its sockets."""
    nodes = make_network(
        tmp_path,
        ["bar-pcu", "belgrade-accu"],
        start=False,
        extra_env={"BORDERLINK_LIMITS_MAX_CONNECTIONS_PER_ADDRESS": "64"},
    )
    bar, bel = nodes["bar-pcu"], nodes["belgrade-accu"]
    bel.open_files = 160
    crowd: list[socket.socket] = []
    try:
        bar.start()
        bel.start()
        assert bel.proc is not None
        fds = Path(f"/proc/{bel.proc.pid}/fd")
        hello = client_hello()
        most = 0
        for i in range(240):
            s = socket.create_connection(
                ("127.0.0.1", bel.port), timeout=30, source_address=(f"127.0.3.{2 + i // 60}", 0)
            )
            crowd.append(s)
            s.sendall(hello)
            most = max(most, len(list(fds.iterdir())))
        alert = tmp_path / "alert.json"
        alert.write_text(bar.cli("template", "seizure-alert").stdout)
        sent = bar.json(
            "send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert), "--wait", WAIT
        )
        status = bel.cli("status")
        assert status.returncode == 0, status.stderr
        assert sent["recipients"] == {"belgrade-accu": "delivered"}
        assert most < 160, f"{most} descriptors open"
        assert log_events(bel, "connection.evicted") or log_events(bel, "connection.refused")
        text = bel.log.read_text(errors="replace")
        assert "Traceback" not in text, text[text.find("Traceback") :][:2000]
    finally:
        for s in crowd:
            s.close()
        stop_all(nodes)


def test_one_peers_key_cannot_take_every_place(tmp_path: Path) -> None:
    """Belgrade's key opens 10 connections: it keeps at most 4 (its oldest closed for each new
    one), so it cannot fill the 12 places in TLS and lock other callers out (found by an attack
    run: with every place held by one peer's connections, nobody else could connect). Once
    Belgrade is removed, its connections are strangers': strangers evict them, never Skopje's."""
    nodes = make_network(
        tmp_path,
        ["bar-pcu", "belgrade-accu", "skopje-coord"],
        start=False,
        extra_env={
            "BORDERLINK_LIMITS_MAX_CONNECTIONS": "12",
            "BORDERLINK_LIMITS_MAX_CONNECTIONS_PER_PEER": "4",
        },
    )
    bar, bel, skopje = nodes["bar-pcu"], nodes["belgrade-accu"], nodes["skopje-coord"]
    held: list[Client] = []
    try:
        bar.start()  # only Bar runs: the test plays its peers
        skopje_client = Client(bar, skopje.as_peer_of(bar), "127.0.6.1")
        assert skopje_client.call("GET", "/livez").status == 200
        bel_clients = [Client(bar, bel.as_peer_of(bar), f"127.0.6.{2 + i}") for i in range(10)]
        for c in bel_clients:
            assert c.call("GET", "/livez").status == 200
        wait_until(
            lambda: sum(c.sock is not None and closed_by_peer(c.sock) for c in bel_clients) == 6,
            "Bar to close Belgrade's six oldest connections",
        )
        still = [c for c in bel_clients if c.sock is not None and not closed_by_peer(c.sock)]
        assert still == bel_clients[6:]
        assert bar.cli("peers", "remove", "belgrade-accu").returncode == 0
        strangers = [Client(bar, anonymous(), f"127.0.7.{2 + i}") for i in range(12)]
        held = [skopje_client, *bel_clients, *strangers]
        for c in strangers:
            c.call("GET", "/livez")
        wait_until(
            lambda: all(c.sock is not None and closed_by_peer(c.sock) for c in still),
            "strangers to evict the removed peer's connections",
        )
        assert skopje_client.sock is not None and not closed_by_peer(skopje_client.sock)
        assert skopje_client.call("GET", "/livez").status == 200  # the same connection
    finally:
        for c in held:
            c.close()
        stop_all(nodes)


def test_no_node_logged_a_traceback(net: dict[str, NodeProc]) -> None:
    """Everything above was answered or logged in one line: no handler, accept or TLS error
    reached a node's log as a traceback. (Last in this module, after all the abuse.)"""
    for node in net.values():
        text = node.log.read_text(errors="replace")
        assert "Traceback" not in text, f"{node.name}: {text[text.find('Traceback') :][:2000]}"
