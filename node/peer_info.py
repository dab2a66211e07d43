"""What delivery and witnessing need to know of a trusted peer, read from its stored card.

Cards are parsed (and their signature checked) once per card text; trust is not cached: callers
read the peer's record, and so its status, every time.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from keys.card import Card, parse_card
from keys.statements import retired_signers, utc
from keys.trust import PeerRecord
from protocol.errors import KeyRetired, Rejected
from protocol.identity import PublicIdentity

if TYPE_CHECKING:
    from node.storage.rows import RevokedKey


@dataclass(frozen=True)
class PeerInfo:
    name: str
    node_id: bytes
    identity: PublicIdentity
    endpoint: str | None
    tls_cert: bytes | None = None  # the DER certificate its card pins (version 2 cards)

    @classmethod
    def of(cls, rec: PeerRecord) -> PeerInfo:
        card = parsed_card(rec.card)
        return cls(
            rec.name,
            rec.node_id,
            card.identity,
            card.body.endpoints[0] if card.body.endpoints else None,
            card.body.tls_cert,
        )


@functools.lru_cache(maxsize=1024)
def parsed_card(text: str) -> Card:
    """A stored peer card, parsed and its signature checked once per card text, not per message.

    Trust is not cached: callers read the peer's record (and so its status) every time."""
    return parse_card(text, now=None)


def older_signers(
    rec: PeerRecord, revoked: Mapping[bytes, RevokedKey], now: int, *, limit: int | None = None
) -> list[tuple[bytes, Rejected | None]]:
    """The peer's replaced signing keys (PROTOCOL.md 13.2), newest first, each with None while
    it may still sign (its overlap) or the KeyRetired to raise if it signed: revoked, or its
    overlap over. The receiver and ``open`` of a sealed file apply the same rule; the receiver
    tries only the newest ``limit`` (a bound on what junk costs it)."""
    out: list[tuple[bytes, Rejected | None]] = []
    for old in retired_signers(parsed_card(rec.card))[:limit]:
        why: Rejected | None = None
        if old.key in revoked:
            why = KeyRetired(
                f"signed with a key of '{rec.name}' that was revoked ({revoked[old.key].reason})"
            )
        elif now >= old.until:
            why = KeyRetired(
                f"signed with a key '{rec.name}' replaced on {utc(old.replaced_at)}; "
                f"its overlap ended {utc(old.until)}"
            )
        out.append((old.key, why))
    return out
