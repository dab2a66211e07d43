"""TLS contexts for the peer API: mutual TLS 1.3, each side pinned to the certificate in the other's
signed card (PROTOCOL.md 11.1). No CA and no custom verify callback: OpenSSL checks a presented
certificate against trust anchors that are exactly the pinned certificates.

- Server: asks for a client certificate (optional, so anyone may still fetch the card and the
  health checks) and accepts only one that is the certificate of a peer this node trusts or
  trusted since it started. Which peer a request comes from is then decided per request from the
  presented certificate against the current peer table (node/admission.py), so a removed or
  revoked peer gets nothing even though OpenSSL's trust store only grows while the node runs.
- Client: one context per pinned certificate, trusting that certificate alone; hostnames are not
  checked, because the pin already names the one key the server may hold.

Python's ``ssl`` loads keys only from files: the key is written, encrypted under a random
one-time password, to a 0600 file in the private home and unlinked as soon as it is loaded.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import ssl
import tempfile
from collections.abc import Iterable
from pathlib import Path

from keys.tls import cert_pem, key_pem
from protocol.identity import Identity


def _base(purpose: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
    return ctx


class NodeTls:
    """This node's TLS credentials and the contexts built from them."""

    def __init__(self, identity: Identity, cert_der: bytes, workdir: Path) -> None:
        self._identity = identity
        self.cert_der = cert_der
        self._workdir = workdir
        self._server: ssl.SSLContext | None = None
        self._anchors: set[bytes] = set()
        self._clients: dict[bytes, ssl.SSLContext] = {}

    def _load_own(self, ctx: ssl.SSLContext) -> None:
        password = secrets.token_bytes(32)
        fd, path = tempfile.mkstemp(dir=self._workdir, prefix=".tls-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as f:  # mkstemp creates it 0600
                f.write(cert_pem(self.cert_der))
                f.write(key_pem(self._identity, password))
            ctx.load_cert_chain(path, password=password)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def server_context(self, trusted: Iterable[bytes]) -> ssl.SSLContext:
        """The peer site's context, trusting ``trusted`` (peers' DER certificates) as clients."""
        if self._server is None:
            ctx = _base(ssl.PROTOCOL_TLS_SERVER)
            self._load_own(ctx)
            ctx.verify_mode = ssl.CERT_OPTIONAL
            self._server = ctx
        self.trust(trusted)
        return self._server

    def trust(self, certs: Iterable[bytes]) -> None:
        """Accept these peers' certificates from now on (called when the peer table changes)."""
        if self._server is None:
            return
        for der in certs:
            if der not in self._anchors:
                self._server.load_verify_locations(cadata=der)
                self._anchors.add(der)

    def client_context(self, pin: bytes) -> ssl.SSLContext:
        """A context that accepts only the server certificate ``pin`` and presents ours."""
        ctx = self._clients.get(pin)
        if ctx is None:
            ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=pin)
            self._load_own(ctx)
            self._clients[pin] = ctx
        return ctx

    def reload(self, cert_der: bytes) -> None:
        """After a rotation: serve and present the new certificate (its key derives from the
        identity, which took over the new keys in place). New handshakes use it; client
        contexts are built again on next use."""
        self.cert_der = cert_der
        if self._server is not None:
            self._load_own(self._server)
        self._clients.clear()


def anonymous_client(pin: bytes) -> ssl.SSLContext:
    """Pinned to the peer's certificate, presenting none: for key statements, which carry their
    own signatures and must reach a peer that does not yet know this node's new certificate
    (or from a machine without the node's keys at all)."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=pin)
    return ctx


def unverified_client() -> ssl.SSLContext:
    """Only to learn which certificate a server presents after a pin mismatch, to name it in the
    error; nothing is sent over it."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def presented_certificate(transport: object) -> bytes | None:
    """The DER certificate the other side of a TLS connection presented and OpenSSL verified."""
    get = getattr(transport, "get_extra_info", None)
    ssl_object = get("ssl_object") if get is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return bytes(der) if der else None
