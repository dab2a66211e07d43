"""The home directory: where one node keeps its keystore, card, database and config.

One class knows every path, so the CLI, the daemon and the tests agree on the layout (the
directory itself is private: 0700 and owned by the user; ``require`` refuses one that is not):

    HOME/keystore.json   secret keys, Argon2id + XChaCha20-Poly1305 (mode 0600)
    HOME/card.txt        this node's signed contact card (public; pins its TLS certificate, whose
                         key is derived from the keystore's signing seed: no TLS file on disk)
    HOME/revocation.txt  revocation certificate: revokes the key without the keystore (keep a copy
                         away from the node)
    HOME/node.db         SQLite: peers, seen ids, outbox, inbox, receipts, audit log
    HOME/config.toml     optional settings (listen address, retry policy, ...)
    HOME/admin.sock      the admin API's Unix socket while the node runs (mode 0600)
    HOME/node.lock       flock'ed by the running node, holds its pid (node/process.py)
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import BorderlinkError, KeystoreError, os_reason


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
    def revocation(self) -> Path:
        """The revocation certificate written at init and at each rotation (PROTOCOL.md 13.3)."""
        return self.root / "revocation.txt"

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
        self.check_private()

    def require_card(self) -> None:
        """For what works with the keystore gone (revoking by certificate): a home with a card."""
        if not self.card.exists():
            raise BorderlinkError(
                f"no borderlink node in {self.root} (no card.txt)",
                hint="pass the --home of the node whose key you revoke",
            )
        self.check_private()

    def check_private(self) -> None:
        """Refuse a home that group or others can enter or list (like ssh with ~/.ssh): its
        database and sockets are only as private as the directory holding them."""
        try:
            mode = stat.S_IMODE(self.root.stat().st_mode)
        except OSError as exc:
            raise BorderlinkError(f"cannot read home {self.root}: {os_reason(exc)}") from exc
        if mode & 0o077:
            raise BorderlinkError(
                f"home {self.root} is accessible by group or others (mode {mode:04o}); "
                f"run: chmod 700 {self.root}"
            )

    def check_new(self) -> None:
        """Refuse a directory ``init`` must not make a home of: one that already holds an
        identity, is not the user's, or holds anything else (a shared 1777 directory, a project:
        making it 0700 would lock everyone else out of it). Missing or empty and ours is fine."""
        if self.keystore.exists():
            raise BorderlinkError(
                f"{self.root} already holds an identity",
                hint="use another --home, or change this node's keys with 'borderlink keys rotate'",
            )
        try:
            st = self.root.stat()
            if not stat.S_ISDIR(st.st_mode):
                raise BorderlinkError(f"home {self.root} is not a directory")
            if st.st_uid != os.getuid():
                raise BorderlinkError(f"home {self.root} belongs to another user")
            with os.scandir(self.root) as entries:
                empty = next(entries, None) is None
        except FileNotFoundError:
            return
        except OSError as exc:
            raise BorderlinkError(f"cannot use home {self.root}: {os_reason(exc)}") from exc
        if not empty:
            raise BorderlinkError(
                f"{self.root} is not empty and holds no borderlink identity",
                hint="choose an empty or new directory for --home",
            )

    def create(self) -> None:
        """Create the directory private to the user (0700), or make an existing empty one of the
        user's private; refuse anything else (``check_new``)."""
        self.check_new()
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkdir's mode applies only to a directory it creates: an existing one keeps its own.
            # check_new found it empty and ours (or absent); look again right before the chmod.
            if self.root.stat().st_uid != os.getuid():
                raise BorderlinkError(f"home {self.root} belongs to another user")
            self.root.chmod(0o700)
        except OSError as exc:
            raise BorderlinkError(f"cannot create home {self.root}: {os_reason(exc)}") from exc


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (ASCII) at once and durably, readable by this account
    only: a reader sees the old file or the new, never half of one; a symlink at the temporary
    name is not followed. Raises OSError."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
