"""``borderlink keys``: show this node's public identity and export its card or public key."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import click
import msgspec

from cli.context import Ctx
from cli.files import force_option, write_output
from cli.options import Group, OneOf, PathArg
from cli.output import emit, json_option, note
from cli.passphrase import passphrase_options
from protocol.identity import fingerprint_of

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
        "seq": body.seq,
        "history": [
            {
                "seq": link.seq,
                "replaced": fingerprint_of(link.old_key),
                "by": fingerprint_of(link.new_key),
                "at": link.at,
                "old_key_accepted_until": link.overlap_until,
            }
            for link in body.rotations
        ],
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
            f"valid:       {_day(d['valid_from'])} to {_day(d['valid_until'])}{_left(d)}",
            f"key seq:     {d['seq']}",
        ]
        + (
            ["key history:"]
            + [
                f"  seq {h['seq']} {_day(h['at'])}: {h['replaced']} -> {h['by']} "
                f"(old key accepted until {_day(h['old_key_accepted_until'])})"
                for h in d["history"]
            ]
            if d["history"]
            else ["key history: no rotation yet"]
        )
    )


def _day(ts: int) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _left(d: dict[str, Any]) -> str:
    import time

    left = d["valid_until"] - time.time()
    if left <= 0:
        return "  EXPIRED: run 'borderlink keys renew'"
    if left < 30 * 86400:
        return f"  (expires in {int(left // 86400)} days: run 'borderlink keys renew')"
    return ""


@keys_group.command("show")
@json_option
@click.pass_obj
def show_cmd(ctx: Ctx, as_json: bool) -> None:
    """Show node id, name, fingerprint, public keys, expiry and the key history."""
    from node.local import own_card

    emit(card_summary(own_card(ctx.home, None)), as_json, _human)


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


def _changed_line(d: dict[str, Any]) -> str:
    lines = []
    if d["kind"] == "rotated":
        lines.append(
            f"rotated keys of {d['name']} to key seq {d['seq']}: new fingerprint "
            f"{d['fingerprint']} (was {d['previous_fingerprint']})"
        )
        lines.append(f"old keys accepted until {_day(d['overlap_until'])}")
    elif d["kind"] == "renewed":
        lines.append(
            f"renewed the card of {d['name']} (key seq {d['seq']}): valid until "
            f"{_day(d['valid_until'])}"
        )
    else:
        lines.append(f"revoked key {d['fingerprint']} of {d['name']} ({d['reason']})")
        if d["held"]:
            lines.append(f"{d['held']} undelivered message(s) held")
    lines.append(f"queued for {d['peers_notified']} trusted peer(s); see 'borderlink status'")
    if d.get("revocation_certificate"):
        lines.append(f"new revocation certificate: {d['revocation_certificate']}")
        lines.append("print it or store it away from the node")
        if d["kind"] == "rotated":
            lines.append(
                "destroy the old certificate: its 'compromised' revocation can still revoke "
                "this whole node"
            )
    return "\n".join(lines)


@keys_group.command("rotate")
@click.option(
    "--overlap-days",
    type=click.IntRange(0, 90),
    default=None,
    help="Days envelopes sealed under the old keys still open (default: [keys] overlap_days "
    "in the home's config.toml, 7 if unset).",
)
@passphrase_options
@json_option
@click.pass_obj
def rotate_cmd(
    ctx: Ctx,
    overlap_days: int | None,
    passphrase_fd: int | None,
    passphrase_file: str | None,
    as_json: bool,
) -> None:
    """New signing, encryption and TLS keys; every trusted peer is told (signed by both keys)."""
    from cli.passphrase import get_passphrase
    from node.operations import ROTATE_KEYS, RotateKeys

    ctx.home.require()
    if overlap_days is None:
        # Read here, with this shell's BORDERLINK_KEYS_OVERLAP_DAYS: the running node's own
        # environment is not the custodian's.
        from node.config import load_config

        overlap_days = load_config(ctx.home.config).keys.overlap_days
    phrase = get_passphrase(fd=passphrase_fd, file=passphrase_file, confirm=False)
    done = ctx.run(
        ROTATE_KEYS, RotateKeys(passphrase=phrase, overlap_days=overlap_days, actor=ctx.actor())
    )
    emit(msgspec.to_builtins(done), as_json, _changed_line)


@keys_group.command("renew")
@click.option(
    "--valid-days",
    type=click.IntRange(1, 3650),
    default=365,
    show_default=True,
    help="Days the renewed card is valid from now.",
)
@passphrase_options
@json_option
@click.pass_obj
def renew_cmd(
    ctx: Ctx,
    valid_days: int,
    passphrase_fd: int | None,
    passphrase_file: str | None,
    as_json: bool,
) -> None:
    """The same keys, a card with a later expiry; every trusted peer gets it."""
    from cli.passphrase import get_passphrase
    from node.operations import RENEW_CARD, RenewCard

    ctx.home.require()
    phrase = get_passphrase(fd=passphrase_fd, file=passphrase_file, confirm=False)
    done = ctx.run(
        RENEW_CARD, RenewCard(passphrase=phrase, valid_days=valid_days, actor=ctx.actor())
    )
    emit(msgspec.to_builtins(done), as_json, _changed_line)


@keys_group.command("revoke")
@click.option(
    "--reason",
    type=OneOf(["superseded", "compromised", "retired"]),
    required=True,
    help="Why: superseded, compromised or retired.",
)
@click.option(
    "--certificate",
    type=PathArg(dir_okay=False),
    help="Revoke with the revocation certificate written at init (no keystore needed).",
)
@click.option(
    "--since",
    type=int,
    help="compromised: Unix time from which the key is suspect (default: the card's start).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@passphrase_options
@json_option
@click.pass_obj
def revoke_cmd(
    ctx: Ctx,
    reason: str,
    certificate: str | None,
    since: int | None,
    yes: bool,
    passphrase_fd: int | None,
    passphrase_file: str | None,
    as_json: bool,
) -> None:
    """Revoke this node's key for good and tell every trusted peer."""
    import sys

    from cli.files import read_text
    from cli.passphrase import get_passphrase
    from node.operations import REVOKE_KEY, RevokeKey
    from protocol.errors import UsageError

    if certificate is None:
        ctx.home.require()
    else:
        ctx.home.require_card()
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("revoking this node's key is permanent: confirm with --yes")
        answer = click.prompt(
            "Revoke this node's key for good? Peers will accept nothing signed with it [y/N]",
            default="n",
            show_default=False,
            err=True,
        )
        if answer.strip().lower() not in ("y", "yes"):
            note("not revoked")
            return
    if certificate is not None:
        request = RevokeKey(
            reason=reason, certificate=read_text(certificate), since=since, actor=ctx.actor()
        )
        shown_done = _revoke_without_keystore(ctx, request)
    else:
        phrase = get_passphrase(fd=passphrase_fd, file=passphrase_file, confirm=False)
        done = ctx.run(
            REVOKE_KEY, RevokeKey(reason=reason, passphrase=phrase, since=since, actor=ctx.actor())
        )
        shown_done = dict(msgspec.to_builtins(done))
    emit(shown_done, as_json, _changed_line)


def _revoke_without_keystore(ctx: Ctx, request: Any) -> dict[str, Any]:
    """Through the node if it runs; else here, then delivered to every peer from here (the
    keystore may be gone: statements need no client certificate)."""
    from cli.admin_client import NodeNotRunning, operation
    from node.local import deliver_notices, run
    from node.operations import REVOKE_KEY

    try:
        return dict(msgspec.to_builtins(operation(ctx.home.admin_socket, REVOKE_KEY, request)))
    except (NodeNotRunning, FileNotFoundError):
        pass
    done = dict(msgspec.to_builtins(run(ctx.home, REVOKE_KEY, request, keystore=False)))
    sent = deliver_notices(ctx.home)
    for line in sent:
        note(line)
    return done


BACKUP_ENV = "BORDERLINK_BACKUP_PASSPHRASE"


def _backup_passphrase(*, confirm: bool) -> bytes:
    """The backup's own passphrase: $BORDERLINK_BACKUP_PASSPHRASE, else asked at the terminal
    (twice when writing). Never the keystore's: a backup must survive a forgotten one."""
    import os

    from cli.passphrase import get_passphrase
    from protocol.errors import UsageError

    value = os.environ.pop(BACKUP_ENV, None)
    if value is not None:
        if not value:
            raise UsageError(f"{BACKUP_ENV} is empty")
        return value.encode()
    return get_passphrase(fd=None, file=None, confirm=confirm, env={}, purpose="key backup")


@keys_group.command("backup")
@click.option("-o", "--output", type=PathArg(dir_okay=False), required=True, help="File to write.")
@passphrase_options
@click.pass_obj
def backup_cmd(
    ctx: Ctx, output: str, passphrase_fd: int | None, passphrase_file: str | None
) -> None:
    """Write the secret keys and the card, encrypted under a separate backup passphrase (asked
    twice, or $BORDERLINK_BACKUP_PASSPHRASE), for safekeeping away from the node."""
    from pathlib import Path

    from cli.passphrase import get_passphrase
    from node.keybackup import write_backup
    from node.operations import NOTE_KEY_BACKUP, NoteKeyBackup

    ctx.home.require()
    phrase = get_passphrase(fd=passphrase_fd, file=passphrase_file, confirm=False)
    target = Path(output).absolute()
    card = write_backup(ctx.home, phrase, _backup_passphrase(confirm=True), target)
    ctx.run(
        NOTE_KEY_BACKUP,
        NoteKeyBackup(restored=False, where=str(target), seq=card.seq, actor=ctx.actor()),
    )
    note(f"wrote the key backup of {card.name} to {output} (mode 0600)")
    note("keep it, and its passphrase, apart from the node; restore with 'borderlink keys restore'")


@keys_group.command("restore")
@click.argument("backup_file", metavar="FILE", type=PathArg(dir_okay=False))
@click.option(
    "--kdf-profile",
    type=OneOf(["moderate", "interactive"]),
    default="moderate",
    show_default=True,
    help="Argon2id cost of the new keystore.",
)
@json_option
@click.pass_obj
def restore_cmd(ctx: Ctx, backup_file: str, kdf_profile: str, as_json: bool) -> None:
    """Restore a key backup into --home: a new home, or one of the same node whose keystore
    was lost. The new keystore passphrase is asked twice (or $BORDERLINK_NEW_PASSPHRASE)."""
    import os
    from pathlib import Path

    from cli.passphrase import get_passphrase
    from node.keybackup import install_backup, open_backup, restore_target
    from node.operations import NOTE_KEY_BACKUP, NoteKeyBackup

    source = Path(backup_file).absolute()
    backup = open_backup(source, _backup_passphrase(confirm=False))
    home = ctx.home
    overwrite = restore_target(home, backup)
    new_env = os.environ.pop("BORDERLINK_NEW_PASSPHRASE", None)
    if new_env:
        phrase = new_env.encode()
    else:
        phrase = get_passphrase(fd=None, file=None, confirm=True, env={}, purpose="new keystore")
    install_backup(home, backup, phrase, kdf_profile=kdf_profile, overwrite=overwrite)
    card = backup.card
    ctx.run(
        NOTE_KEY_BACKUP,
        NoteKeyBackup(restored=True, where=str(source), seq=card.seq, actor=ctx.actor()),
    )
    info = {
        "name": card.name,
        "node_id": card.node_id.hex(),
        "fingerprint": card.identity.fingerprint,
        "seq": card.seq,
        "home": str(home.root),
    }
    emit(info, as_json, lambda d: f"restored {d['name']} ({d['fingerprint']}) into {d['home']}")
