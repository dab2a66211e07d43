"""What delivery and witnessing need to know of a trusted peer, read from its stored card.

Cards are parsed (and their signature checked) once per card text; trust is not cached: callers
read the peer's record, and so its status, every time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from keys.card import Card, parse_card
from keys.trust import PeerRecord
from protocol.identity import PublicIdentity


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
