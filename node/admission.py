"""Who is calling the peer API and whether it may make the node work right now.

Who: the TLS channel says it. A caller that presented the certificate pinned in a trusted peer's
card is that peer (a pin two trusted cards share is nobody's, PROTOCOL.md 11.0); anyone else is
anonymous, whatever its headers say, and may only fetch the card and the health checks (the
routes enforce that). The pins of trusted peers are kept in memory and
re-read from storage at most every two seconds, or at once after a peer change
(:meth:`forget_peers`); an anonymous request costs no storage read at all.

Whether: token buckets, one per authenticated peer (peers may share an address) and one per
address (an IPv4 address or an IPv6 /64) for anonymous callers, each set below what the node can
serve, so no one caller can take it all; a peer's bucket pays one token per request and one per
envelope of a batch (:meth:`Admission.charge`); and a bound on each peer's requests in progress, so a
peer cannot queue unbounded work on the crypto and database threads either. Reads storage; no HTTP
(the routes pass the presented certificate and the address).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from keys.tls import spki_sha256
from node.config import Limits
from node.peer_info import parsed_card
from node.ratelimit import RateLimiter, source_key
from node.runtime import Run
from node.storage import Store
from protocol.errors import Malformed

log = structlog.get_logger("borderlink.admission")

PEERS_TTL = 2.0  # seconds a read of the trusted pins is used for
_MAX_CACHED_CERTS = 4096


@dataclass(frozen=True)
class Caller:
    """A request's caller: the trusted peer the TLS channel authenticated, or nobody."""

    peer: bytes | None  # the node id, None for an anonymous caller
    name: str | None
    source: str  # the address key its budget is counted under when anonymous

    @property
    def bucket(self) -> str:
        return f"peer|{self.peer.hex()}" if self.peer is not None else f"addr|{self.source}"

    @property
    def who(self) -> str:
        """How logs name the caller: the peer's name, or the address."""
        return self.name if self.name is not None else f"anonymous {self.source}"


class Admission:
    def __init__(
        self,
        limits: Limits,
        store: Store,
        run_db: Run,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.peers = RateLimiter(limits.peer_rate, limits.peer_burst, max_keys=10_000)
        self.anonymous = RateLimiter(limits.anonymous_rate, limits.anonymous_burst)
        self.max_in_progress = limits.peer_concurrency
        self.store = store
        self.run_db = run_db
        self.monotonic = monotonic
        self._by_pin: dict[bytes, tuple[bytes, str]] = {}
        self._certs: dict[bytes, bytes] = {}  # node id -> the pinned certificate, DER
        self._pin_of: dict[bytes, bytes] = {}  # certificate DER -> SPKI digest
        self._read_at = float("-inf")
        self._in_progress: dict[bytes, int] = {}
        self._shared_logged: set[bytes] = set()  # pins of several peers, already logged

    def forget_peers(self) -> None:
        self._read_at = float("-inf")

    async def trusted_certificates(self) -> list[bytes]:
        """Every trusted peer's pinned certificate: the server's client trust anchors."""
        await self._refresh(force=True)
        return list(self._certs.values())

    async def _refresh(self, force: bool = False) -> None:
        now = self.monotonic()
        if not force and now - self._read_at <= PEERS_TTL:
            return
        holders: dict[bytes, list[tuple[bytes, str]]] = {}
        certs: dict[bytes, bytes] = {}
        for rec in await self.run_db(self.store.peers):
            if rec.status != "trusted":
                continue
            der = parsed_card(rec.card).body.tls_cert
            if der is None:
                continue
            holders.setdefault(self._pin(der), []).append((rec.node_id, rec.name))
            certs[rec.node_id] = der
        # A pin is one peer's (PROTOCOL.md 3.5, 11.0). Two trusted cards sharing one (a table
        # filled before certificates were bound to cards) make it nobody's: the channel cannot
        # say which of them calls, and the last one read must not take the other's requests.
        shared = {pin: names for pin, names in holders.items() if len(names) > 1}
        for pin, names in shared.items():
            if pin not in self._shared_logged:
                log.error(
                    "peer.pin_shared",
                    peers=sorted(name for _, name in names),
                    pin=pin.hex(),
                    detail="the TLS pin of several trusted peers: their calls are anonymous "
                    "until all but one of them is removed",
                )
        self._shared_logged = set(shared)
        self._by_pin = {pin: names[0] for pin, names in holders.items() if len(names) == 1}
        self._certs, self._read_at = certs, now

    def _pin(self, der: bytes) -> bytes:
        pin = self._pin_of.get(der)
        if pin is None:
            if len(self._pin_of) >= _MAX_CACHED_CERTS:
                self._pin_of.clear()
            pin = self._pin_of[der] = spki_sha256(der)
        return pin

    async def caller(self, certificate: bytes | None, remote: str | None) -> Caller:
        """Who is calling: ``certificate`` is what the TLS channel verified (None: none shown)."""
        source = source_key(remote)
        if certificate is None:
            return Caller(None, None, source)
        await self._refresh()
        known = self._known(certificate)
        if known is None:
            return Caller(None, None, source)
        return Caller(known[0], known[1], source)

    def _known(self, der: bytes) -> tuple[bytes, str] | None:
        """(node id, name) of the trusted peer whose pin ``der`` is, from the pins read last."""
        try:
            return self._by_pin.get(self._pin(der))
        except Malformed:
            return None

    def peer_of_certificate(self, der: bytes) -> str | None:
        """The trusted peer (node id, hex) whose pinned certificate ``der`` is, from the pins
        read last (re-read at most every PEERS_TTL while requests come, and at once after a
        peer change): the listener's test of whom a connection may never be evicted for."""
        known = self._known(der)
        return known[0].hex() if known is not None else None

    def allow(self, caller: Caller) -> bool:
        """Charge one request to ``caller``'s bucket; False if it cannot pay."""
        return self._limiter(caller).allow(caller.bucket, self.monotonic())

    def _limiter(self, caller: Caller) -> RateLimiter:
        return self.peers if caller.peer is not None else self.anonymous

    def charge(self, caller: Caller, envelopes: int) -> bool:
        """Charge a batch of ``envelopes`` to ``caller``'s bucket: one token per envelope, the
        request's own token (:meth:`allow`, at entry) counted as the first. False if the bucket
        cannot pay the rest, and then it is emptied: the batch is refused (429) before any
        cryptography. Each envelope is work on the crypto thread, so a budget in requests would
        let one batch of 256 cost 256 times one request's (attack9 F3)."""
        if envelopes <= 1:
            return True
        limiter = self._limiter(caller)
        now = self.monotonic()
        if limiter.allow(caller.bucket, now, cost=envelopes - 1):
            return True
        # What is left is taken too: otherwise each next request would pass the entry check
        # with its one token and have its whole body read before this refusal (attack10: 870
        # refused 512 KB batches a second, read in full, from one peer).
        limiter.empty(caller.bucket, now)
        return False

    def enter(self, caller: Caller) -> bool:
        """Start a request of ``caller``'s that does work; False if it has too many in progress.
        Pair each True with :meth:`leave`."""
        if caller.peer is None:
            return True
        n = self._in_progress.get(caller.peer, 0)
        if n >= self.max_in_progress:
            return False
        self._in_progress[caller.peer] = n + 1
        return True

    def leave(self, caller: Caller) -> None:
        if caller.peer is None:
            return
        n = self._in_progress.get(caller.peer, 1) - 1
        if n > 0:
            self._in_progress[caller.peer] = n
        else:
            self._in_progress.pop(caller.peer, None)
