"""A node's identity on disk and the audit entries of its life: creation (``node.initialised``,
``key.created``), handing out its card (``card.exported``), a new passphrase
(``key.passphrase_changed``).

The first two entries are the log's first: whoever audits the log later sees which unit created the
identity, with which KDF profile, before anything else happened. Writes the home's keystore and card
files and audit entries through units; no HTTP, no clock (``now`` is passed in).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from keys.card import Card, make_card
from keys.keystore import seal_keystore, write_keystore_file
from keys.tls import make_certificate
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
    """This node's signed card, valid from ``now`` for ``valid_days``; codes are upper-cased.
    It pins the node's TLS certificate (keys/tls.py), made here from the identity."""
    return make_card(
        identity,
        name=name,
        unit_type=unit_type,
        country=country.upper(),
        location=location.upper(),
        endpoints=list(endpoints),
        valid_from=now,
        valid_until=now + valid_days * DAY,
        tls_cert=make_certificate(identity, now=now),
    )


def with_tls(card: Card, identity: Identity, *, now: int) -> Card:
    """A version 1 card re-issued as version 2: the same unit and expiry, a TLS certificate
    pinned, ``http://`` endpoints now ``https://`` (the node serves TLS on the same port), and
    ``valid_from`` now (and later than the old card's, if that was made this second or the
    clock went back), so peers take it as newer than the card they hold."""
    body = card.body
    issued = max(now, body.valid_from + 1)
    return make_card(
        identity,
        name=body.name,
        unit_type=body.unit_type,
        country=body.country,
        location=body.location,
        endpoints=[
            "https://" + url[len("http://") :] if url.startswith("http://") else url
            for url in body.endpoints
        ],
        valid_from=issued,
        valid_until=max(body.valid_until, issued + 1),
        tls_cert=make_certificate(identity, now=now),
    )


def tls_added(store: Store, card: Card, *, now: float) -> None:
    with store.unit(now) as u:
        record(
            u,
            "key.created",
            "node",
            outcome="tls",
            detail=card.tls_pin or "",
            peer=card.name,
            peer_id=card.identity.node_id.hex(),
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
    write_card(home, card)


def write_card(home: Home, card: Card) -> None:
    """Replace the home's card atomically: a crash leaves the old card or the new one."""
    tmp = home.card.with_name(home.card.name + ".tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(card.armored())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, home.card)


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


def backup_noted(
    store: Store, *, restored: bool, where: str, seq: int, actor: str, now: float
) -> None:
    """A key backup written to ``where``, or restored from it (its key sequence)."""
    with store.unit(now) as u:
        kind = "key.restored" if restored else "key.backup_written"
        record(u, kind, actor, outcome=f"key seq {seq}", detail=where[:200])


def passphrase_changed(store: Store, *, actor: str, now: float) -> None:
    with store.unit(now) as u:
        record(u, "key.passphrase_changed", actor)
