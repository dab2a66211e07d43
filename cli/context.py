"""What every command gets: the home, the clock, the operator's name for the audit log, the unlocked
identity on demand, and the node's operations (through the running node, or here if it is down)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from node.home import Home, default_home
from protocol.errors import BorderlinkError

if TYPE_CHECKING:
    import msgspec

    from keys.card import Card
    from node.operations import Operation
    from protocol.identity import Identity

    Req = TypeVar("Req", bound=msgspec.Struct)
    Res = TypeVar("Res", bound=msgspec.Struct)


def cli_actor() -> str:
    """Who acted, as audit entries name a person at the CLI: ``cli:<login>``."""
    import getpass  # here: status, inbox and send never ask

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@dataclass
class Ctx:
    home: Home

    @classmethod
    def from_option(cls, home: str | None) -> Ctx:
        return cls(Home(Path(home) if home else default_home()))

    def now(self) -> int:
        return int(time.time())

    def actor(self) -> str:
        return cli_actor()

    def run(
        self, op: Operation[Req, Res], request: Req, *, identity: Identity | None = None
    ) -> Res:
        """Run one of the node's operations: in the node if it runs (its admin socket answers),
        else here on its store (``identity``, if unlocked, serves for what needs the keys)."""
        from cli.admin_client import NodeNotRunning, operation

        self.home.require()
        try:
            return operation(self.home.admin_socket, op, request)
        except NodeNotRunning:
            pass
        from node.local import run

        return run(self.home, op, request, identity=identity)

    def admin(self, method: str, path: str, body: object = None) -> Any:
        """A request only the running node can answer (send, inbox, status): exit 3 if it is down."""
        from cli.admin_client import call

        self.home.require()
        return call(self.home.admin_socket, method, path, body)

    def card(self) -> Card:
        from node.local import own_card

        return own_card(self.home, self.now())

    def unlock(self, fd: int | None, file: str | None) -> Identity:
        """Ask for the passphrase (fd, file, env, prompt) and decrypt the keystore."""
        from cli.passphrase import get_passphrase
        from keys.keyring import decode_keyring
        from keys.keystore import open_keystore, read_keystore_file

        self.home.require()
        data = read_keystore_file(self.home.keystore)
        ring = decode_keyring(open_keystore(data, get_passphrase(fd=fd, file=file, confirm=False)))
        identity = ring.identity()
        if ring.card is not None and ring.card != self.home.card.read_text():
            # A crash after a rotation sealed the keystore and before it wrote the card: the
            # keystore names its card, so the home is made whole again.
            from keys.card import parse_card
            from node.initialise import write_card

            write_card(self.home, parse_card(ring.card, now=None))
        if identity.public != self.card().identity:
            raise BorderlinkError(
                f"keystore and card in {self.home.root} belong to different identities"
            )
        return identity
