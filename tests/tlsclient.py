"""TLS for tests that call a node's peer API directly, as a peer would or as an anonymous caller.

A peer's context is built exactly as a node builds its own (node/tls.py): it presents that
peer's certificate and pins the server's. An anonymous context presents nothing and checks
nothing: it is what an attacker with no key has.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

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
