"""Reading an HTTP body (request or answer) without ever holding more than a limit."""

from __future__ import annotations

import aiohttp


async def read_limited(
    stream: aiohttp.StreamReader, declared: int | None, limit: int
) -> bytes | None:
    """A whole HTTP body, or None if it declares or turns out to be over ``limit`` bytes.

    Never holds more than ``limit + 1`` bytes, whatever the other side sends.
    """
    if declared is not None and declared > limit:
        return None
    buf = bytearray()
    while len(buf) <= limit:
        chunk = await stream.read(limit + 1 - len(buf))
        if not chunk:
            return bytes(buf)
        buf += chunk
    return None
