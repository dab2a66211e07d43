"""Who may make the node work right now: the peer API's token buckets, keyed by caller.

A trusted peer's claimed id gets a bucket of its own (peers may share an address); every other
claim from an address shares that address's bucket, so rotating the unauthenticated header buys
nothing. Claiming a real peer's id can at worst slow that peer's deliveries, which it retries.
The set of trusted ids is re-read from storage at most every two seconds, or at once after a peer
change (:meth:`forget_peers`). Reads storage; no HTTP (the routes pass the header and address).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from node.config import Limits
from node.ratelimit import RateLimiter, source_key
from node.runtime import Run
from node.storage import Store

PEERS_TTL = 2.0  # seconds a read of the trusted ids is used for


class Admission:
    def __init__(
        self,
        limits: Limits,
        store: Store,
        run_db: Run,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiter = RateLimiter(limits.rate, limits.burst)
        self.store = store
        self.run_db = run_db
        self.monotonic = monotonic
        self._ids: frozenset[str] = frozenset()
        self._read_at = float("-inf")

    def forget_peers(self) -> None:
        self._read_at = float("-inf")

    async def bucket(self, claimed: str, remote: str | None) -> str:
        now = self.monotonic()
        if now - self._read_at > PEERS_TTL:
            peers = await self.run_db(self.store.peers)
            self._ids = frozenset(p.node_id.hex() for p in peers if p.status == "trusted")
            self._read_at = now
        if claimed in self._ids:
            return f"peer|{claimed}"
        return f"addr|{source_key(remote)}"

    async def allow(self, claimed: str, remote: str | None) -> bool:
        return self.limiter.allow(await self.bucket(claimed, remote), self.monotonic())
