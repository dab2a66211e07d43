"""Budgets for callers nobody vouches for: who a caller is, token buckets, and sampled counting.

Who a caller is, for budgets: an IPv4 address, or the /64 network of an IPv6 address. One IPv6
host usually holds a whole /64, so keying rate limits and audit sampling by the full address
would let a single caller mint fresh budgets by rotating addresses. Pure: callers pass ``now``.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict


def source_key(remote: str | None) -> str:
    if not remote:
        return "unknown"
    try:
        addr = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class RateLimiter:
    """Token bucket per caller key, with a bounded number of keys (oldest forgotten first)."""

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self.rate, self.burst, self.max_keys = rate, float(burst), max_keys
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket if it holds that many; else take none and
        say False. A cost over the burst is never paid."""
        tokens, last = self.buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        ok = tokens >= cost
        self._put(key, tokens - cost if ok else tokens, now)
        return ok

    def empty(self, key: str, now: float) -> None:
        """Take every token ``key``'s bucket holds: it refills from nothing."""
        self.buckets.pop(key, None)
        self._put(key, 0.0, now)

    def _put(self, key: str, tokens: float, now: float) -> None:
        """Store ``key``'s bucket as the newest, forgetting the oldest beyond ``max_keys``."""
        self.buckets[key] = (tokens, now)
        while len(self.buckets) > self.max_keys:
            self.buckets.popitem(last=False)


class Sampler:
    """Counts per key, remembering a bounded number of keys (oldest forgotten first).

    Unauthenticated rejections are audited only on the 1st, 2nd, 4th, 8th... of a key
    (:func:`sampled`), so anonymous traffic cannot grow the permanent, witnessed log one entry per
    request (PROTOCOL.md 12.1)."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self.counts: OrderedDict[str, int] = OrderedDict()
        self.max_keys = max_keys

    def count(self, key: str) -> int:
        n = self.counts.pop(key, 0) + 1
        self.counts[key] = n
        while len(self.counts) > self.max_keys:
            self.counts.popitem(last=False)
        return n


def sampled(n: int) -> bool:
    """True for the 1st, 2nd, 4th, 8th... occurrence."""
    return n & (n - 1) == 0
