"""TLS for tests that call a node's peer API directly, as a peer would or as an anonymous caller.

A peer's context is built exactly as a node builds its own (node/tls.py): it presents that
peer's certificate and pins the server's. An anonymous context presents nothing and checks
nothing: it is what an attacker with no key has.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
from pathlib import Path
from typing import NamedTuple

from keys.card import parse_card
from keys.keystore import open_keystore
from node.tls import NodeTls, unverified_client
from protocol.identity import Identity


def card_cert(card_text: str) -> bytes:
    cert = parse_card(card_text, now=None).body.tls_cert
    assert cert is not None, "a version 1 card pins no certificate"
    return cert


def home_identity(home: Path, passphrase: str) -> Identity:
    secret = open_keystore((home / "keystore.json").read_bytes(), passphrase.encode())
    return Identity.from_secret_bytes(secret)


def peer_context(identity: Identity, own_cert: bytes, server_cert: bytes) -> ssl.SSLContext:
    """What the peer with ``identity`` (and card certificate ``own_cert``) uses to call a node
    whose card pins ``server_cert``."""
    return NodeTls(identity, own_cert, Path(tempfile.gettempdir())).client_context(server_cert)


def anonymous() -> ssl.SSLContext:
    return unverified_client()


def connect(
    port: int, context: ssl.SSLContext, source: str = "127.0.0.1", timeout: float = 30
) -> ssl.SSLSocket:
    """A TLS connection to a node on 127.0.0.1, from ``source`` (127.0.0.2, ... act as other
    machines), handshake done: for requests written by hand."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    try:
        return context.wrap_socket(raw)
    except BaseException:
        raw.close()
        raise


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


def read_answer(sock: socket.socket) -> Answer:
    """One HTTP/1.1 response with a Content-Length, read to its end."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the node closed the connection after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the node closed the connection mid-answer")
        body += chunk
    return Answer(int(lines[0].split()[1]), headers, body[:length])


def request_bytes(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    fields = {"Host": "127.0.0.1", "Content-Length": str(len(body)), **(headers or {})}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode("latin-1") + b"\r\n" + body
