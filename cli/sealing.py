"""``borderlink seal`` / ``open``: signed, encrypted files for removable media (no node needed)."""

from __future__ import annotations

from typing import Any

import click

from cli.context import Ctx
from cli.options import Command, Duration, OneOf, PathArg, split_names
from cli.output import emit, json_option, note
from cli.passphrase import passphrase_options
from cli.peers import input_name, read_bytes, read_text
from protocol.errors import BorderlinkError, Malformed, os_reason
from protocol.text import json_for_terminal, shown

MESSAGE_KIND = "MESSAGE"
TYPES = ["seizure-alert", "risk-profile", "feedback", "retraction"]


def resolve_recipients(ctx: Ctx, names: list[str]) -> list[Any]:
    """Names -> trusted public identities; unknown or revoked names are refused (exit 4)."""
    from keys.card import parse_card
    from protocol.errors import PeerRevoked, UnknownPeer

    store = ctx.store()
    out = []
    for name in names:
        peer = store.peer_by_name(name)
        if peer is None:
            raise UnknownPeer(f"no peer named {shown(name)}")
        if peer.status != "trusted":
            raise PeerRevoked(f"peer '{name}' is revoked")
        out.append(parse_card(peer.card, now=None).identity)
    return out


@click.command("seal", cls=Command)
@click.option("--to", "to", required=True, help="Recipient peer names, comma separated.")
@click.option("--type", "type_name", required=True, type=OneOf(TYPES))
@click.option(
    "--ttl", type=Duration(), default="3d", show_default=True, help="Lifetime, e.g. 12h, 3d."
)
@click.option(
    "-o", "--output", type=PathArg(dir_okay=False), help="File to write (default stdout)."
)
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
    from protocol.armor import armor
    from protocol.envelope import seal
    from protocol.schemas import decode_body, encode_body

    body = encode_body(decode_body(type_name, read_bytes(file), what=input_name(file)))
    recipients = resolve_recipients(ctx, split_names(to))
    identity = ctx.unlock(passphrase_fd, passphrase_file)
    env = seal(identity, recipients, type_name, body, now=ctx.now(), ttl=ttl)  # type: ignore[arg-type]
    text = armor(MESSAGE_KIND, [env.encode()])
    if output in (None, "-"):
        click.echo(text, nl=False)
    else:
        try:
            with open(output, "w") as fh:
                fh.write(text)
        except OSError as exc:
            raise BorderlinkError(f"cannot write {output}: {os_reason(exc)}") from exc
    note(f"sealed {type_name} {env.id.hex()} for {to}")


def opened_view(opened: Any, sender: Any) -> dict[str, Any]:
    import msgspec

    return {
        "id": opened.id.hex(),
        "type": opened.type,
        "sender": sender.name,
        "sender_node_id": opened.sender.hex(),
        "sender_fingerprint": sender.fingerprint,
        "verified_by": sender.verified_by,
        "recipients": [r.hex() for r in opened.recipients],
        "created": opened.created,
        "expires": opened.expires,
        "message": msgspec.to_builtins(opened.message),
    }


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
    from keys.card import parse_card
    from protocol.identity import PublicIdentity
    from keys.trust import require_trusted
    from node.audit_store import cli_actor, event
    from protocol.armor import dearmor
    from protocol.envelope import open_envelope
    from protocol.errors import Rejected, TrustError
    from protocol.labels import MAX_ENVELOPE_BYTES

    blocks = dearmor(MESSAGE_KIND, read_text(file), max_bytes=MAX_ENVELOPE_BYTES)
    if len(blocks) != 1:
        raise Malformed("sealed file must hold exactly one envelope")
    store = ctx.store()
    identity = ctx.unlock(passphrase_fd, passphrase_file)
    senders: dict[bytes, Any] = {}

    def sender_of(node_id: bytes) -> PublicIdentity:
        record = require_trusted(store.peer_by_id(node_id), node_id)
        senders[node_id] = record
        return parse_card(record.card, now=None).identity

    source = f"file:{file}"
    try:
        opened = open_envelope(
            blocks[0], identity, sender_of=sender_of, now=ctx.now(), seen=store.seen
        )
    except (Rejected, TrustError) as exc:
        reason = getattr(exc, "reason", "unknown_sender")
        store.audit(
            event(
                "message.rejected",
                cli_actor(),
                outcome=reason,
                detail=exc.message[:200],
                source=source,
            )
        )
        raise
    with store.transaction() as db:
        store.mark_seen(db, opened.sender, opened.id, opened.expires)
        store.audit_append(
            db,
            event(
                "message.opened",
                cli_actor(),
                message_id=opened.id.hex(),
                peer=senders[opened.sender].name,
                peer_id=opened.sender.hex(),
                outcome=opened.type,
                source=source,
                hashes={"content": opened.content_hash.hex()},
            ),
        )
    emit(opened_view(opened, senders[opened.sender]), as_json, _human)
