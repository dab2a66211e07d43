"""The home directory: where one node keeps its keystore, card, database and config.

One class knows every path, so the CLI, the daemon and the tests agree on the layout:

    HOME/keystore.json   secret keys, Argon2id + XChaCha20-Poly1305 (mode 0600)
    HOME/card.txt        this node's signed contact card (public)
    HOME/node.db         SQLite: peers, seen ids, outbox, inbox, receipts, audit log
    HOME/config.toml     optional settings (listen address, retry policy, ...)
    HOME/admin.sock      the admin API's Unix socket while the node runs (mode 0600)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import BorderlinkError, KeystoreError


def default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "borderlink"


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def keystore(self) -> Path:
        return self.root / "keystore.json"

    @property
    def card(self) -> Path:
        return self.root / "card.txt"

    @property
    def database(self) -> Path:
        return self.root / "node.db"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def admin_socket(self) -> Path:
        return self.root / "admin.sock"

    def exists(self) -> bool:
        return self.keystore.exists()

    def require(self) -> None:
        if not self.keystore.exists():
            raise KeystoreError(
                f"no borderlink identity in {self.root}",
                hint="run 'borderlink init --name NAME ...' or pass the right --home",
            )

    def create(self) -> None:
        """Create the directory private to the user (0700); refuse to reuse an initialised home."""
        if self.keystore.exists():
            raise BorderlinkError(
                f"{self.root} already holds an identity",
                hint="use another --home, or rotate keys instead of re-initialising",
            )
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise BorderlinkError(f"cannot create home {self.root}: {exc.strerror}") from exc
