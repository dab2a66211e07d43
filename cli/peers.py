"""``borderlink peers``: add a counterpart's card after checking its fingerprint; list; remove."""

from __future__ import annotations

from typing import Any

import click
import msgspec

from cli.context import Ctx
from cli.files import read_text
from cli.options import Group
from cli.output import emit, json_option, note


@click.group("peers", cls=Group)
def peers_group() -> None:
    """Add, list and remove trusted peers (contact cards)."""


@peers_group.command("add")
@click.argument("card_file", metavar="CARD")
@click.option("--fingerprint", help="The card owner's fingerprint, compared out of band.")
@click.option(
    "--trust-on-first-use",
    is_flag=True,
    help="Trust the card without a fingerprint check (recorded as such).",
)
@json_option
@click.pass_obj
def add_cmd(
    ctx: Ctx, card_file: str, fingerprint: str | None, trust_on_first_use: bool, as_json: bool
) -> None:
    """Add a peer from its contact card file (CARD, or - for stdin)."""
    from keys.card import parse_card
    from node.operations import ADD_PEER, AddPeer

    text = read_text(card_file)
    card = parse_card(text, now=ctx.now())  # a card that is no card is refused before anything
    added = ctx.run(
        ADD_PEER,
        AddPeer(
            card=card.armored(),
            fingerprint=fingerprint,
            trust_on_first_use=trust_on_first_use,
            actor=ctx.actor(),
        ),
    )
    if added.verified_by == "tofu":
        note(f"warning: '{added.name}' trusted on first use, fingerprint NOT verified")
    if added.tls_pin is None:
        note(
            f"note: the card of '{added.name}' is version 1 and pins no TLS certificate: "
            "this node can neither reach it nor accept its messages until you import its "
            "current card"
        )
    emit(
        msgspec.to_builtins(added),
        as_json,
        lambda d: f"{d['outcome']} peer {d['name']} ({d['verified_by']}): {d['fingerprint']}",
    )


def _trust(r: dict[str, Any]) -> str:
    """How the peer is trusted, in the words ``peers list`` uses."""
    if r["status"] == "revoked":
        return f"revoked ({r['revoke_reason']})" if r.get("revoke_reason") else "revoked"
    if r["status"] == "blocked":
        return "BLOCKED: key changed"
    if r["verified_by"] == "introduced":
        return f"introduced by {r.get('introduced_by') or '?'}"
    words = {"fingerprint": "verified", "tofu": "TOFU"}
    return words.get(str(r["verified_by"]), str(r["verified_by"]))


def _expiry(r: dict[str, Any]) -> str:
    import time

    until = r.get("valid_until")
    if until is None:
        return "-"
    left = until - time.time()
    day = time.strftime("%Y-%m-%d", time.gmtime(until))
    if left <= 0:
        return f"EXPIRED {day}"
    return f"{day} (in {int(left // 86400)} d)" if left < 30 * 86400 else day


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no peers yet; add one with 'borderlink peers add CARD --fingerprint FP'"
    head = f"{'NAME':<20} {'TYPE':<11} {'LOCODE':<6} {'TRUST':<28} {'EXPIRES':<20} FINGERPRINT"
    return "\n".join(
        [head]
        + [
            f"{r['name']:<20} {r['unit_type'] or '':<11} {r['location'] or '':<6} "
            f"{_trust(r):<28} {_expiry(r):<20} {r['fingerprint']}"
            for r in rows
        ]
    )


@peers_group.command("list")
@json_option
@click.pass_obj
def list_cmd(ctx: Ctx, as_json: bool) -> None:
    """List known peers with status and fingerprint."""
    from node.operations import LIST_PEERS, ListPeers

    emit(msgspec.to_builtins(ctx.run(LIST_PEERS, ListPeers()).peers), as_json, _table)


@peers_group.command("remove")
@click.argument("name")
@click.pass_obj
def remove_cmd(ctx: Ctx, name: str) -> None:
    """Forget a peer: its messages will be refused until it is added again (not if revoked)."""
    from node.operations import REMOVE_PEER, RemovePeer

    ctx.run(REMOVE_PEER, RemovePeer(name=name, actor=ctx.actor()))
    note(f"removed peer {name}")


@peers_group.command("verify")
@click.argument("name")
@click.option("--fingerprint", required=True, help="The peer's fingerprint, compared out of band.")
@json_option
@click.pass_obj
def verify_cmd(ctx: Ctx, name: str, fingerprint: str, as_json: bool) -> None:
    """Mark a peer verified after comparing its fingerprint out of band: unblocks a peer whose
    key changed, or upgrades one trusted on first use or introduced by a coordinator."""
    from node.operations import VERIFY_PEER, VerifyPeer

    done = ctx.run(VERIFY_PEER, VerifyPeer(name=name, fingerprint=fingerprint, actor=ctx.actor()))
    emit(
        msgspec.to_builtins(done),
        as_json,
        lambda d: (
            f"peer {d['name']} is already verified: {d['fingerprint']}"
            if d["outcome"] == "unchanged"
            else f"verified peer {d['name']} (was {d['was']}): {d['fingerprint']}"
        ),
    )


@peers_group.command("revoke")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.pass_obj
def revoke_cmd(ctx: Ctx, name: str, yes: bool) -> None:
    """Revoke a peer's key for good: its messages are refused, what is queued for it is held,
    and it cannot be re-added. Asks for confirmation on a terminal."""
    import sys

    from node.operations import REVOKE_PEER, RevokePeer
    from protocol.errors import UsageError

    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"revoking '{name}' is permanent: confirm with --yes when not on a terminal"
            )
        answer = click.prompt(
            f"Revoke peer '{name}' for good? Its key can never be trusted again [y/N]",
            default="n",
            show_default=False,
            err=True,
        )
        if answer.strip().lower() not in ("y", "yes"):
            note("not revoked")
            return
    if ctx.run(REVOKE_PEER, RevokePeer(name=name, actor=ctx.actor())).already:
        note(f"peer {name} was already revoked")
        return
    note(f"revoked peer {name}; messages from it will be refused")


def _directory_commands() -> None:
    from cli.directory import import_directory_cmd, publish_directory_cmd

    peers_group.add_command(import_directory_cmd)
    peers_group.add_command(publish_directory_cmd)


_directory_commands()
