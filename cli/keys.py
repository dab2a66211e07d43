"""``borderlink keys``: show this node's public identity and export its card or public key."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import click

from cli.context import Ctx
from cli.files import force_option, write_output
from cli.options import Group, OneOf, PathArg
from cli.output import emit, json_option, note
from cli.passphrase import passphrase_options

if TYPE_CHECKING:
    from keys.card import Card


@click.group("keys", cls=Group)
def keys_group() -> None:
    """Show and export this node's keys and contact card."""


def card_summary(card: Card) -> dict[str, Any]:
    body = card.body
    return {
        "name": body.name,
        "node_id": card.identity.node_id.hex(),
        "fingerprint": card.identity.fingerprint,
        "unit_type": body.unit_type,
        "country": body.country,
        "location": body.location,
        "endpoints": list(body.endpoints),
        "sign_key": base64.b64encode(body.sign_key).decode(),
        "enc_key": base64.b64encode(body.enc_key).decode(),
        "valid_from": body.valid_from,
        "valid_until": body.valid_until,
        "card_version": body.version,
        "tls_pin": card.tls_pin,
    }


def _human(d: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"name:        {d['name']} ({d['unit_type']}, {d['location']}, {d['country']})",
            f"node id:     {d['node_id']}",
            f"fingerprint: {d['fingerprint']}",
            f"sign key:    ed25519 {d['sign_key']}",
            f"enc key:     x25519 {d['enc_key']}",
            f"endpoints:   {', '.join(d['endpoints']) or '-'}",
            f"tls pin:     {d['tls_pin'] or 'none (version 1 card: start the node to add one)'}",
        ]
    )


@keys_group.command("show")
@json_option
@click.pass_obj
def show_cmd(ctx: Ctx, as_json: bool) -> None:
    """Show node id, name, fingerprint and public keys."""
    emit(card_summary(ctx.card()), as_json, _human)


@keys_group.command("export-card")
@click.option(
    "-o", "--output", type=PathArg(dir_okay=False), help="File to write (default stdout)."
)
@force_option
@click.pass_obj
def export_card_cmd(ctx: Ctx, output: str | None) -> None:
    """Write this node's signed contact card (armored text) to hand to peers."""
    from node.operations import NOTE_CARD_EXPORT, NoteCardExport

    write_output(ctx.card().armored(), output)
    ctx.run(NOTE_CARD_EXPORT, NoteCardExport(destination=output or "stdout", actor=ctx.actor()))


@keys_group.command("export-public")
@click.option("--format", "fmt", type=OneOf(["pem"]), default="pem", show_default=True)
@click.option(
    "-o", "--output", type=PathArg(dir_okay=False), help="File to write (default stdout)."
)
@force_option
@click.pass_obj
def export_public_cmd(ctx: Ctx, fmt: str, output: str | None) -> None:
    """Write the Ed25519 signing public key as PEM (SubjectPublicKeyInfo), for openssl."""
    write_output(ctx.card().identity.sign_key_pem(), output)


@keys_group.command("passphrase")
@passphrase_options
@click.pass_obj
def passphrase_cmd(ctx: Ctx, passphrase_fd: int | None, passphrase_file: str | None) -> None:
    """Change the keystore passphrase: the current one from the usual sources, the new one asked
    twice at the terminal (or from BORDERLINK_NEW_PASSPHRASE)."""
    import os

    from cli.passphrase import get_passphrase
    from keys.keystore import change_passphrase, read_keystore_file, write_keystore_file
    from node.operations import NOTE_PASSPHRASE_CHANGE, NotePassphraseChange
    from protocol.errors import UsageError

    old = get_passphrase(fd=passphrase_fd, file=passphrase_file, confirm=False)
    data = read_keystore_file(ctx.home.keystore)
    new_env = os.environ.pop("BORDERLINK_NEW_PASSPHRASE", None)  # no child inherits it
    if new_env is not None:
        if not new_env:
            raise UsageError("BORDERLINK_NEW_PASSPHRASE is empty")
        new = new_env.encode()
    else:
        new = get_passphrase(fd=None, file=None, confirm=True, env={}, purpose="new keystore")
    write_keystore_file(ctx.home.keystore, change_passphrase(data, old, new), overwrite=True)
    ctx.run(NOTE_PASSPHRASE_CHANGE, NotePassphraseChange(actor=ctx.actor()))
    note("keystore passphrase changed")
