"""``borderlink seal`` / ``open``: signed, encrypted files for removable media (no node needed)."""

from __future__ import annotations

from typing import Any

import click
import msgspec

from cli.context import Ctx
from cli.files import (
    force_option,
    input_name,
    read_bytes,
    read_text,
    refuse_existing_output,
    write_output,
)
from cli.options import TYPE_NAMES, Command, Duration, OneOf, PathArg, split_names
from cli.output import emit, json_option, note
from cli.passphrase import passphrase_options
from protocol.errors import Malformed
from protocol.text import json_for_terminal

MESSAGE_KIND = "MESSAGE"


@click.command("seal", cls=Command)
@click.option("--to", "to", required=True, help="Recipient peer names, comma separated.")
@click.option("--type", "type_name", required=True, type=OneOf(TYPE_NAMES))
@click.option(
    "--ttl", type=Duration(), default="3d", show_default=True, help="Lifetime, e.g. 12h, 3d."
)
@click.option(
    "-o", "--output", type=PathArg(dir_okay=False), help="File to write (default stdout)."
)
@force_option
@click.argument("file", metavar="FILE")
@passphrase_options
@click.pass_obj
def seal_cmd(
    ctx: Ctx,
    to: str,
    type_name: str,
    ttl: int,
    output: str | None,
    file: str,
    passphrase_fd: int | None,
    passphrase_file: str | None,
) -> None:
    """Sign and encrypt a message file (JSON, see 'template') for the listed recipients."""
    from node.operations import FIND_RECIPIENTS, FindRecipients
    from protocol.armor import armor
    from protocol.envelope import seal
    from protocol.schemas import decode_body, encode_body

    body = encode_body(decode_body(type_name, read_bytes(file), what=input_name(file)))
    found = ctx.run(FIND_RECIPIENTS, FindRecipients(names=split_names(to)))
    recipients = [r.identity for r in found.recipients]
    refuse_existing_output(output)  # before the passphrase is asked for nothing
    identity = ctx.unlock(passphrase_fd, passphrase_file)
    env = seal(identity, recipients, type_name, body, now=ctx.now(), ttl=ttl)  # type: ignore[arg-type]
    write_output(armor(MESSAGE_KIND, [env.encode()]), output)
    note(f"sealed {type_name} {env.id.hex()} for {to}")


def _human(d: dict[str, Any]) -> str:
    return (
        f"from:        {d['sender']} (verified signature, fingerprint {d['sender_fingerprint']})\n"
        f"type:        {d['type']}\n"
        f"id:          {d['id']}\n"
        f"created:     {d['created']}  expires: {d['expires']}\n"
        f"{json_for_terminal(d['message'])}"
    )


@click.command("open", cls=Command)
@click.argument("file", metavar="FILE")
@passphrase_options
@json_option
@click.pass_obj
def open_cmd(
    ctx: Ctx, file: str, passphrase_fd: int | None, passphrase_file: str | None, as_json: bool
) -> None:
    """Verify and decrypt a sealed file addressed to this node."""
    from node.operations import OPEN_SEALED, OpenSealed
    from protocol.armor import dearmor
    from protocol.labels import MAX_ENVELOPE_BYTES

    blocks = dearmor(MESSAGE_KIND, read_text(file), max_bytes=MAX_ENVELOPE_BYTES)
    if len(blocks) != 1:
        raise Malformed("sealed file must hold exactly one envelope")
    # Opening a file is a custodian's act, node running or not: the passphrase is asked either way
    # (a running node opens it with the same identity; otherwise this one does).
    identity = ctx.unlock(passphrase_fd, passphrase_file)
    opened = ctx.run(
        OPEN_SEALED,
        OpenSealed(envelope=blocks[0], source=f"file:{file}", actor=ctx.actor()),
        identity=identity,
    )
    emit(msgspec.to_builtins(opened), as_json, _human)
