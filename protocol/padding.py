"""Plaintext padding to power-of-two buckets (PROTOCOL.md 5.3).

An observer of ciphertexts learns only the bucket: every alert under 1 KiB looks the same. The pad
is ISO/IEC 7816-4 (0x80 then zeros), unambiguous to remove and cheap to check.
"""

from __future__ import annotations

from protocol.errors import Malformed, Oversize
from protocol.labels import MAX_PADDED_PLAINTEXT, MIN_PADDED_PLAINTEXT


def bucket_size(length: int) -> int:
    """Smallest power of two >= length + 1 (room for the 0x80 marker), at least the minimum."""
    size = MIN_PADDED_PLAINTEXT
    while size < length + 1:
        size *= 2
    return size


def pad(data: bytes) -> bytes:
    size = bucket_size(len(data))
    if size > MAX_PADDED_PLAINTEXT:
        raise Oversize(
            f"message is {len(data)} bytes; the limit is {MAX_PADDED_PLAINTEXT - 1} bytes"
        )
    return data + b"\x80" + bytes(size - len(data) - 1)


def unpad(padded: bytes) -> bytes:
    size = len(padded)
    if size < MIN_PADDED_PLAINTEXT or size > MAX_PADDED_PLAINTEXT or size & (size - 1):
        raise Malformed("padded plaintext is not a bucket size")
    end = len(padded.rstrip(b"\x00"))
    if end == 0 or padded[end - 1] != 0x80:
        raise Malformed("plaintext padding is malformed")
    if bucket_size(end - 1) != size:
        raise Malformed("plaintext is padded to the wrong bucket")
    return padded[: end - 1]
