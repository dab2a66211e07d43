"""Trust rules: when a card may be added as a peer, and whether a known sender may be believed.

Pure decisions over records the node stores (PROTOCOL.md section 4). A key is trusted only after a
custodian compared its fingerprint out of band, or explicitly chose trust-on-first-use (which is
recorded and audited). A name is bound to one signing key for good: a different key under a known
name is refused, never silently replaced; a known card is replaced only by a newer one.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec

from keys.card import Card, parse_card
from protocol.errors import (
    FingerprintMismatch,
    PeerKeyChanged,
    PeerRevoked,
    TrustError,
    UnknownSender,
    UsageError,
)
from protocol.identity import normalize_fingerprint

Verification = Literal["fingerprint", "tofu", "introduced"]
# blocked: its key changed without a rotation this node could check; nothing goes to it until a
# custodian compares the new fingerprint (``peers verify``), the new card waiting in pending_card.
PeerStatus = Literal["trusted", "revoked", "blocked"]


class PeerRecord(msgspec.Struct, kw_only=True):
    """A known peer as stored by the node: the whole armored card is kept, not just the keys."""

    name: str
    node_id: bytes
    fingerprint: str
    card: str
    verified_by: Verification
    status: PeerStatus = "trusted"
    added_at: int
    revoked_at: int | None = None
    revoke_reason: str | None = None  # custodian | superseded | compromised | retired
    revoke_since: int | None = None  # compromised: what came since is suspect
    pending_card: str | None = None  # blocked: the changed card, until verified
    introduced_by: str | None = None  # the coordinator whose directory introduced it


AddOutcome = Literal["added", "updated", "unchanged", "changed"]


def decide_add(
    card: Card,
    *,
    fingerprint: str | None,
    trust_on_first_use: bool,
    same_name: PeerRecord | None,
    same_key: PeerRecord | None,
    same_pin: PeerRecord | None = None,
    own_pin: str | None = None,
) -> tuple[AddOutcome, Verification]:
    """Decide whether ``card`` may be stored; raise the TrustError that says why not.

    ``same_pin``: a stored peer of another key whose card pins the certificate ``card`` pins;
    ``own_pin``: this node's pin. A pin belongs to one node (PROTOCOL.md 3.5): shared, the TLS
    channel could no longer say which peer calls."""
    if (fingerprint is None) == (not trust_on_first_use):
        raise UsageError(
            "give exactly one of --fingerprint FP (compared out of band) or --trust-on-first-use"
        )
    actual = card.identity.fingerprint
    if fingerprint is not None and normalize_fingerprint(fingerprint) != actual:
        raise FingerprintMismatch(
            f"fingerprint of card '{card.name}' is {actual}, not the one given; card not added"
        )
    method: Verification = "fingerprint" if fingerprint is not None else "tofu"
    node_id = card.identity.node_id
    pin = card.tls_pin
    if pin is not None and pin == own_pin:
        raise TrustError(
            f"card '{card.name}' pins this node's own TLS certificate ({pin}); a pin belongs to "
            "one node; card not added",
            hint="ask the peer for its own card",
        )
    if pin is not None and same_pin is not None and same_pin.node_id != node_id:
        raise TrustError(
            f"card '{card.name}' pins the TLS certificate of peer '{same_pin.name}' ({pin}); a "
            "pin belongs to one peer; card not added",
            hint="ask the peer for its own card",
        )
    if same_key is not None and same_key.name != card.name:
        raise PeerKeyChanged(
            f"this key already belongs to peer '{same_key.name}'; refusing it under a second name"
        )
    if same_name is not None and same_name.node_id != node_id:
        # Another node under a known name, with no rotation linking it: the caller accepts it
        # only on a fingerprint compared out of band, and otherwise blocks the peer.
        if same_name.status == "revoked":
            raise PeerRevoked(f"peer '{card.name}' was revoked; its name cannot be reused")
        return "changed", method
    known = same_name or same_key
    if known is not None and known.status == "revoked":
        raise PeerRevoked(f"peer '{known.name}' was revoked; its key cannot be trusted again")
    if known is None:
        return "added", method
    known_card = parse_card(known.card, now=None)
    if card.seq != known_card.seq or card.body.sign_key != known_card.body.sign_key:
        # A rotation or renewal handed over by hand: the same rules as when the peer sends it.
        from keys.statements import decide_card

        change = decide_card(known_card, card, known_text=known.card, new_text=card.armored())
        if change == "unchanged":
            return "unchanged", known.verified_by
        return "updated", _stronger(method, known.verified_by)
    if known.card == card.armored():
        return "unchanged", known.verified_by
    # Same key, same name, another card: only a newer one replaces it (PROTOCOL.md 4), else a stale
    # card, still validly signed, could point deliveries back at an old endpoint.
    known_from = known_card.body.valid_from
    if card.body.valid_from <= known_from:
        raise TrustError(
            f"card for '{card.name}' is not newer than the one already trusted "
            f"(valid from {_utc(known_from)}); not updated",
            hint="ask the peer for its current card",
        )
    # The newer card is signed by the same, already verified key: keep the stronger verification.
    return "updated", _stronger(method, known.verified_by)


def _stronger(method: Verification, known: Verification) -> Verification:
    if "fingerprint" in (method, known):
        return "fingerprint"
    return "introduced" if known == "introduced" else method


def _utc(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def require_trusted(record: PeerRecord | None, node_id: bytes) -> PeerRecord:
    """The sender check of PROTOCOL.md 6.2 step 5: known, trusted, not revoked."""
    if record is None:
        raise UnknownSender(f"sender {node_id.hex()[:16]} is not a trusted peer")
    if record.status == "revoked":
        raise PeerRevoked(f"sender '{record.name}' has been revoked")
    if record.status == "blocked":
        raise PeerRevoked(f"sender '{record.name}' is blocked: its key changed")
    return record
