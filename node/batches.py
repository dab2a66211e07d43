"""The bounds of one batch send (``borderlink send`` with several bodies, ``POST /v1/send/batch``)
and how its work is cut into chunks: pure, imported by the CLI too, so both refuse alike.

A batch is queued in one transaction and sealed before it, so its size bounds what one call
holds in memory (bodies, then envelopes: a few times :data:`MAX_BATCH_BYTES`) and how long the
database thread is busy with one commit. Sealing goes in chunks of :data:`SEAL_CHUNK` so the
crypto runner serves the peers' envelopes between chunks instead of after the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final, TypeVar

from protocol.errors import UsageError

MAX_BATCH: Final = 10_000  # messages in one batch
MAX_BATCH_BYTES: Final = 32 * 1024 * 1024  # their bodies together, as sent
# The JSON around the bodies (recipients, type, commas): what the admin API reads at most.
MAX_BATCH_REQUEST_BYTES: Final = MAX_BATCH_BYTES + 1024 * 1024
# About 40 ms of sealing on one core: the longest a peer's envelope waits behind a batch.
SEAL_CHUNK: Final = 128
IN_FLIGHT: Final = 2  # chunks handed to the crypto runner at once (a pool may run both)

T = TypeVar("T")


def check_batch(count: int, size: int) -> None:
    """Refuse an empty batch, or one past :data:`MAX_BATCH` messages or :data:`MAX_BATCH_BYTES`
    bytes of bodies, before any of it is decoded or sealed."""
    if count == 0:
        raise UsageError("the batch holds no message", hint="give at least one body")
    if count > MAX_BATCH:
        raise UsageError(
            f"a batch holds at most {MAX_BATCH:,} messages, not {count:,}",
            hint="split the input and send each part on its own",
        )
    if size > MAX_BATCH_BYTES:
        raise UsageError(
            f"a batch holds at most {MAX_BATCH_BYTES // (1024 * 1024)} MiB of bodies, not "
            f"{size:,} bytes",
            hint="split the input and send each part on its own",
        )


def chunks(items: Sequence[T], size: int = SEAL_CHUNK) -> Iterator[tuple[int, Sequence[T]]]:
    """``items`` in consecutive slices of at most ``size``, each with the index of its first."""
    for start in range(0, len(items), size):
        yield start, items[start : start + size]
