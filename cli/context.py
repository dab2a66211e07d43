"""What every command gets: the home, the clock, the store, and the unlocked identity on demand."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from node.home import Home, default_home
from protocol.errors import BorderlinkError, os_reason

if TYPE_CHECKING:
    from keys.card import Card
    from protocol.identity import Identity
    from node.store import Store


@dataclass
class Ctx:
    home: Home
    _store: Store | None = field(default=None, repr=False)

    @classmethod
    def from_option(cls, home: str | None) -> Ctx:
        return cls(Home(Path(home) if home else default_home()))

    def now(self) -> int:
        return int(time.time())

    def store(self) -> Store:
        from node.store import Store

        if self._store is None:
            self.home.require()
            self._store = Store(self.home.database)
        return self._store

    def card(self) -> Card:
        from keys.card import parse_card

        self.home.require()
        try:
            text = self.home.card.read_text()
        except OSError as exc:
            raise BorderlinkError(
                f"cannot read this node's card {self.home.card}: {os_reason(exc)}"
            ) from exc
        return parse_card(text, now=self.now())

    def unlock(self, fd: int | None, file: str | None) -> Identity:
        """Ask for the passphrase (fd, file, env, prompt) and decrypt the keystore."""
        from cli.passphrase import get_passphrase
        from protocol.identity import Identity
        from keys.keystore import open_keystore, read_keystore_file

        self.home.require()
        data = read_keystore_file(self.home.keystore)
        secret = open_keystore(data, get_passphrase(fd=fd, file=file, confirm=False))
        identity = Identity.from_secret_bytes(secret)
        if identity.public != self.card().identity:
            raise BorderlinkError(
                f"keystore and card in {self.home.root} belong to different identities"
            )
        return identity
