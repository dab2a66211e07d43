"""Key backups (PROTOCOL.md 13.4): the keyring and card sealed under a passphrase of their own,
for the day the node's disk or keystore passphrase is lost.

The CLI asks for the passphrases and calls these; writing and restoring are audited through the
node (``key.backup_written``, ``key.restored``: node/operations.py) wherever the home has a log.
Restoring is checked whole before anything is written: a backup of another node, or one older
than the home's card (its keys were replaced since), changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from keys.card import Card, parse_card
from keys.keyring import Keyring, decode_keyring, encode_keyring
from keys.keystore import (
    BACKUP_FORMAT,
    open_keystore,
    profile_of,
    read_keystore_file,
    seal_keystore,
    write_keystore_file,
)
from node.home import Home
from node.initialise import write_card
from protocol.errors import BorderlinkError, UsageError


class Backup(msgspec.Struct, frozen=True):
    """A backup opened and checked: its keys match its card."""

    ring: Keyring
    card: Card


def write_backup(home: Home, passphrase: bytes, backup_passphrase: bytes, output: Path) -> Card:
    """Seal the keyring (with the card, so a restore needs nothing else) under
    ``backup_passphrase`` at the keystore's own Argon2id cost; the file is 0600 and never
    replaces an existing one. Returns the card backed up."""
    data = read_keystore_file(home.keystore)
    ring = decode_keyring(open_keystore(data, passphrase))
    card_text = home.card.read_text(encoding="ascii")
    ring = msgspec.structs.replace(ring, card=card_text)
    sealed = seal_keystore(
        encode_keyring(ring), backup_passphrase, profile=profile_of(data), format=BACKUP_FORMAT
    )
    write_keystore_file(output, sealed)
    return parse_card(card_text, now=None)


def open_backup(path: Path, backup_passphrase: bytes) -> Backup:
    ring = decode_keyring(
        open_keystore(read_keystore_file(path), backup_passphrase, format=BACKUP_FORMAT)
    )
    if ring.card is None:
        raise BorderlinkError("the backup holds no card; it was not written by 'keys backup'")
    card = parse_card(ring.card, now=None)
    if ring.identity().public != card.identity:
        raise BorderlinkError("the backup's keys and card belong to different identities")
    return Backup(ring, card)


def restore_target(home: Home, backup: Backup) -> bool:
    """May ``backup`` go into ``home``? A new home, or one of the same node whose card is not
    newer. Returns whether a keystore is replaced; raises, changing nothing, if it may not."""
    if not home.card.exists():
        home.check_new()
        return False
    home.check_private()
    here = parse_card(home.card.read_text(encoding="ascii"), now=None)
    card = backup.card
    if here.node_id != card.node_id:
        raise UsageError(f"{home.root} holds another node ({here.name}); restore into a new --home")
    if here.seq > card.seq:
        raise UsageError(
            f"the backup is older (key seq {card.seq}) than this home's card (seq "
            f"{here.seq}); its keys were replaced since"
        )
    return True


def install_backup(
    home: Home, backup: Backup, passphrase: bytes, *, kdf_profile: str, overwrite: bool
) -> None:
    """The keystore sealed under the new ``passphrase`` first, then the card (13.4)."""
    if not overwrite:
        home.create()
    write_keystore_file(
        home.keystore,
        seal_keystore(encode_keyring(backup.ring), passphrase, profile=kdf_profile),
        overwrite=overwrite,
    )
    write_card(home, backup.card)
