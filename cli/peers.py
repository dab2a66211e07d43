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


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no peers yet; add one with 'borderlink peers add CARD --fingerprint FP'"
    return "\n".join(
        f"{r['name']:<20} {r['unit_type'] or '':<11} {r['location'] or '':<6} {r['status']:<8} "
        f"{r['verified_by']:<11} {r['fingerprint']}"
        for r in rows
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


@peers_group.command("revoke")
@click.argument("name")
@click.pass_obj
def revoke_cmd(ctx: Ctx, name: str) -> None:
    """Revoke a peer's key for good: its messages are refused and it cannot be re-added."""
    from node.operations import REVOKE_PEER, RevokePeer

    if ctx.run(REVOKE_PEER, RevokePeer(name=name, actor=ctx.actor())).already:
        note(f"peer {name} was already revoked")
        return
    note(f"revoked peer {name}; messages from it will be refused")
