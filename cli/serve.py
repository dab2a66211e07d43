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

    config = load_config(ctx.home.config)
    if listen:
        try:
            parse_listen(listen)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--listen") from exc
        config = msgspec.structs.replace(config, listen=listen)
    configure(config.log_format)
    identity = ctx.unlock(passphrase_fd, passphrase_file)
    asyncio.run(Node(ctx.home, config, identity).serve_forever())
