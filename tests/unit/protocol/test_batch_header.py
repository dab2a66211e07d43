"""A batch's MessagePack array header is read before anything is decoded (PROTOCOL.md 11.2): two
million tiny items are refused from the first five bytes, not after building two million objects."""

from __future__ import annotations

import msgspec
import pytest

from protocol.batch import array_length, decode_batch, encode_batch
from protocol.errors import Malformed


@pytest.mark.parametrize("n", [0, 1, 15, 16, 255, 65535, 65536, 2_000_000])
def test_the_declared_length_is_read_from_every_array_header_form(n: int) -> None:
    if n <= 16:
        data = msgspec.msgpack.encode([b""] * n)
    else:  # build only the header: the items are not needed to read it
        data = (b"\xdc" + n.to_bytes(2, "big")) if n < 65536 else (b"\xdd" + n.to_bytes(4, "big"))
    assert array_length(data) == n


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xdc\x01", b"\xdd\x00\x00", b"\xc4\x01x"])
def test_no_array_header_means_no_length(data: bytes) -> None:
    assert array_length(data) is None


def test_a_header_declaring_two_million_items_is_refused_before_decoding() -> None:
    """Only the 5-byte header is sent: a decoder would say the body is cut short; the header
    check says what is wrong."""
    with pytest.raises(Malformed) as caught:
        decode_batch(b"\xdd" + (2_000_000).to_bytes(4, "big"), max_items=256)
    assert caught.value.message == "batch holds more than 256 envelopes"


def test_a_batch_within_the_limit_still_decodes() -> None:
    assert decode_batch(encode_batch([b"a", b"b"]), max_items=256) == [b"a", b"b"]
