"""``borderlink serve``: run the node (peer API, admin socket, delivery workers) until stopped."""

from __future__ import annotations

import click

from cli.context import Ctx
from cli.options import Command
from cli.passphrase import passphrase_options


@click.command("serve", cls=Command)
@click.option(
    "--listen", metavar="HOST:PORT", help="Peer API address [default from config: 127.0.0.1:7443]."
)
@passphrase_options
@click.pass_obj
def serve_cmd(
    ctx: Ctx, listen: str | None, passphrase_fd: int | None, passphrase_file: str | None
) -> None:
    """Run this node in the foreground; SIGTERM or Ctrl-C stops it cleanly."""
    import asyncio

    import msgspec

    from node.config import load_config, parse_listen
    from node.daemon import Node
    from node.logs import configure
    from node.process import harden, hold_home_lock

    if listen:
        try:
            parse_listen(listen)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--listen") from exc
    harden()  # before the keystore is unlocked: no core dump may ever hold its keys
    ctx.home.require()
    # One node per home, decided before anything in it is opened: a second node would take
    # over the admin socket, and delete it when it stops (see node/process.py).
    with hold_home_lock(ctx.home):
        config = load_config(ctx.home.config)
        if listen:
            config = msgspec.structs.replace(config, listen=listen)
        configure(config.log_format, level=config.log_level)
        identity = ctx.unlock(passphrase_fd, passphrase_file)
        asyncio.run(Node(ctx.home, config, identity).serve_forever())
