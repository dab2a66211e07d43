"""The admin client reads HTTP itself (cli/admin_client.py): every way an answer can be framed
(length, chunks, the close) and every way it can go wrong ends as the node's answer or as one
NodeUnreachable, exit 3, in our words.

The node (aiohttp) always sends a Content-Length, which the suites with real nodes cover; the
other framings and the broken answers come from a socket here that answers with given bytes.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli.admin_client import NodeNotRunning, call, exchange
from protocol.errors import NodeUnreachable, UnknownPeer


class Server:
    """A Unix socket that answers one request with ``answer`` and keeps the request it read."""

    def __init__(self, path: Path, answer: bytes) -> None:
        self.path = path
        self.answer = answer
        self.request = b""
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(1)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            conn.settimeout(10)
            while b"\r\n\r\n" not in self.request:
                self.request += conn.recv(65536)
            head, _, body = self.request.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += conn.recv(65536)
            self.request = head + b"\r\n\r\n" + body
            conn.sendall(self.answer)

    def close(self) -> None:
        self._thread.join(10)
        self._listener.close()


Serve = Callable[[bytes], Server]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    servers: list[Server] = []

    def start(answer: bytes) -> Server:
        server = Server(tmp_path / "admin.sock", answer)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_the_request_is_one_http_1_1_exchange_with_its_json_body(serve: Serve) -> None:
    server = serve(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"id": "x"}')
    assert call(server.path, "POST", "/v1/send", {"to": ["belgrade-accu"]}) == {"id": "x"}
    head, _, body = server.request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/send HTTP/1.1"
    assert b"Connection: close" in lines and b"Content-Length: %d" % len(body) in lines
    assert body == b'{"to": ["belgrade-accu"]}'


def test_a_chunked_answer_is_joined(serve: Serve) -> None:
    server = serve(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;note=x\r\n{"a"\r\nA\r\n: [1, 2]}\n\r\n0\r\nX-Trailer: 1\r\n\r\n'
    )
    assert call(server.path, "GET", "/v1/status") == {"a": [1, 2]}


def test_an_answer_without_a_length_ends_with_the_close(serve: Serve) -> None:
    server = serve(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nline 1\nline 2\n")
    assert call(server.path, "POST", "/v1/audit/checkpoint", text=True) == "line 1\nline 2\n"


def test_an_error_answer_is_the_nodes_error(serve: Serve) -> None:
    error = b'{"error": "UnknownPeer", "message": "no peer named x", "exit_code": 4}'
    server = serve(
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(error)
        + error
        + b"\r\n0\r\n\r\n"
    )
    with pytest.raises(UnknownPeer) as caught:
        call(server.path, "GET", "/v1/peers/x")
    assert caught.value.message == "no peer named x" and caught.value.exit_code == 4


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"", "closed the connection without answering"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "is not HTTP"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{}", "in the middle of its answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n{}", "a bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "a bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}", "in the middle"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 200 + b"\r\n", "too many header fields"),
    ],
)
def test_a_broken_answer_is_one_error_in_our_words(serve: Serve, answer: bytes, words: str) -> None:
    server = serve(answer)
    with pytest.raises(NodeUnreachable) as caught:
        call(server.path, "GET", "/v1/status")
    assert not isinstance(caught.value, NodeNotRunning)
    assert caught.value.exit_code == 3
    assert caught.value.message.startswith(f"cannot talk to the node in {server.path.parent}: ")
    assert words in caught.value.message


def test_no_listener_is_a_node_that_is_not_running(tmp_path: Path) -> None:
    with pytest.raises(NodeNotRunning, match="is not running"):
        exchange(tmp_path / "admin.sock", "GET", "/v1/status", None, 5)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "admin.sock"))  # a socket file left by a node that died
    stale.close()
    with pytest.raises(NodeNotRunning, match="is not running"):
        exchange(tmp_path / "admin.sock", "GET", "/v1/status", None, 5)
