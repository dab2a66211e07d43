"""Who a caller is, for budgets: an IPv4 address, or the /64 network of an IPv6 address.

One IPv6 host usually holds a whole /64, so keying rate limits and audit sampling by the full
address would let a single caller mint fresh budgets by rotating addresses.
"""

from __future__ import annotations

import ipaddress


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
