"""A node's identity on disk and the audit entries of its life: creation (``node.initialised``,
``key.created``), handing out its card (``card.exported``), a new passphrase
(``key.passphrase_changed``).

The first two entries are the log's first: whoever audits the log later sees which unit created the
identity, with which KDF profile, before anything else happened. Writes the home's keystore and card
files and audit entries through units; no HTTP, no clock (``now`` is passed in).
"""

from __future__ import annotations

from collections.abc import Sequence

from keys.card import Card, make_card
from keys.keystore import seal_keystore, write_keystore_file
from node.auditing import record
from node.home import Home
from node.storage import Store
from protocol.identity import Identity

DAY = 86400


def new_card(
    identity: Identity,
    *,
    name: str,
    unit_type: str,
    country: str,
    location: str,
    endpoints: Sequence[str],
    valid_days: int,
    now: int,
) -> Card:
    """This node's signed card, valid from ``now`` for ``valid_days``; codes are upper-cased."""
    return make_card(
        identity,
        name=name,
        unit_type=unit_type,
        country=country.upper(),
        location=location.upper(),
        endpoints=list(endpoints),
        valid_from=now,
        valid_until=now + valid_days * DAY,
    )


def write_home(
    home: Home, identity: Identity, card: Card, passphrase: bytes, kdf_profile: str
) -> None:
    """Create the private home with the encrypted keystore and the card; refuses a home that
    already holds an identity."""
    home.create()
    write_keystore_file(
        home.keystore, seal_keystore(identity.secret_bytes(), passphrase, profile=kdf_profile)
    )
    home.card.write_text(card.armored())


def initialised(store: Store, card: Card, *, kdf_profile: str, actor: str, now: float) -> None:
    body, identity = card.body, card.identity
    peer, peer_id = body.name, identity.node_id.hex()
    with store.unit(now) as u:
        record(
            u,
            "node.initialised",
            actor,
            outcome=body.unit_type,
            detail=f"{body.location} {body.country}",
            peer=peer,
            peer_id=peer_id,
        )
        record(
            u,
            "key.created",
            actor,
            outcome=f"kdf {kdf_profile}",
            detail=identity.fingerprint,
            peer=peer,
            peer_id=peer_id,
        )


def card_exported(store: Store, *, destination: str, actor: str, now: float) -> None:
    with store.unit(now) as u:
        record(u, "card.exported", actor, detail=destination)


def passphrase_changed(store: Store, *, actor: str, now: float) -> None:
    with store.unit(now) as u:
        record(u, "key.passphrase_changed", actor)
