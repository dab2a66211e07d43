"""``borderlink peers``: add a counterpart's card after checking its fingerprint; list; remove."""

from __future__ import annotations

import sys
from typing import Any

import click

from cli.context import Ctx
from cli.options import Group
from cli.output import emit, json_option, note
from protocol.errors import BorderlinkError, UnknownPeer, os_reason


@click.group("peers", cls=Group)
def peers_group() -> None:
    """Add, list and remove trusted peers (contact cards)."""


def input_name(path: str) -> str:
    """How errors name a file argument: '-' is standard input."""
    return "standard input" if path == "-" else path


def read_bytes(path: str) -> bytes:
    """A file's bytes, or standard input's for '-': decoding is the parser's job, so a file
    that is not UTF-8 gets the parser's exact error rather than the locale's guess."""
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise BorderlinkError(f"cannot read {path}: {os_reason(exc)}") from exc


def read_text(path: str) -> str:
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BorderlinkError(
            f"cannot read {input_name(path)}: not UTF-8 text (byte {exc.start})"
        ) from exc


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
    from keys.trust import PeerRecord, decide_add
    from node.audit_store import cli_actor, event
    from protocol.errors import PeerKeyChanged, TrustError

    card = parse_card(read_text(card_file), now=ctx.now())
    store = ctx.store()
    identity = card.identity
    if identity.node_id == ctx.card().identity.node_id:
        raise BorderlinkError("that is this node's own card")
    who = {"peer": card.name, "peer_id": identity.node_id.hex()}
    try:
        outcome, method = decide_add(
            card,
            fingerprint=fingerprint,
            trust_on_first_use=trust_on_first_use,
            same_name=store.peer_by_name(card.name),
            same_key=store.peer_by_id(identity.node_id),
        )
    except TrustError as exc:
        kind = "peer.key_changed" if isinstance(exc, PeerKeyChanged) else "peer.added"
        store.audit(event(kind, cli_actor(), outcome="refused", detail=exc.message[:200], **who))
        raise
    if outcome != "unchanged":
        store.put_peer(
            PeerRecord(
                name=card.name,
                node_id=identity.node_id,
                fingerprint=identity.fingerprint,
                card=card.armored(),
                verified_by=method,
                added_at=ctx.now(),
            ),
            audit=event(
                "peer.added" if outcome == "added" else "peer.updated",
                cli_actor(),
                outcome=f"verified by {method}",
                detail=identity.fingerprint,
                **who,
            ),
        )
    if method == "tofu":
        note(f"warning: '{card.name}' trusted on first use, fingerprint NOT verified")
    result = {
        "name": card.name,
        "outcome": outcome,
        "verified_by": method,
        "fingerprint": identity.fingerprint,
        "node_id": identity.node_id.hex(),
    }
    emit(
        result,
        as_json,
        lambda d: f"{d['outcome']} peer {d['name']} ({d['verified_by']}): {d['fingerprint']}",
    )


def peer_rows(ctx: Ctx) -> list[dict[str, Any]]:
    from keys.card import parse_card

    rows = []
    for p in ctx.store().peers():
        body = parse_card(p.card, now=None).body if p.card else None
        rows.append(
            {
                "name": p.name,
                "node_id": p.node_id.hex(),
                "fingerprint": p.fingerprint,
                "status": p.status,
                "verified_by": p.verified_by,
                "unit_type": body.unit_type if body else None,
                "location": body.location if body else None,
                "endpoints": list(body.endpoints) if body else [],
                "valid_until": body.valid_until if body else None,
            }
        )
    return rows


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
    emit(peer_rows(ctx), as_json, _table)


@peers_group.command("remove")
@click.argument("name")
@click.pass_obj
def remove_cmd(ctx: Ctx, name: str) -> None:
    """Forget a peer: its messages will be refused until it is added again (not if revoked)."""
    from node.audit_store import cli_actor, event
    from protocol.errors import PeerRevoked

    store = ctx.store()
    rec = store.peer_by_name(name)
    if rec is not None and rec.status == "revoked":
        # The revoked record is the tombstone that keeps the key from being trusted again
        # (PROTOCOL.md 4); removing it would undo the revocation.
        store.audit(
            event(
                "peer.removed",
                cli_actor(),
                outcome="refused",
                detail="peer is revoked",
                peer=name,
                peer_id=rec.node_id.hex(),
            )
        )
        raise PeerRevoked(
            f"peer '{name}' is revoked and revocation is permanent: its record is kept "
            "so its key is never trusted again"
        )
    if not store.remove_peer(name, audit=event("peer.removed", cli_actor(), peer=name)):
        raise UnknownPeer(f"no peer named '{name}'")
    note(f"removed peer {name}")


@peers_group.command("revoke")
@click.argument("name")
@click.pass_obj
def revoke_cmd(ctx: Ctx, name: str) -> None:
    """Revoke a peer's key for good: its messages are refused and it cannot be re-added."""
    import msgspec

    from node.audit_store import cli_actor, event

    store = ctx.store()
    rec = store.peer_by_name(name)
    if rec is None:
        raise UnknownPeer(f"no peer named '{name}'")
    if rec.status == "revoked":
        note(f"peer {name} was already revoked")
        return
    store.put_peer(
        msgspec.structs.replace(rec, status="revoked", revoked_at=ctx.now()),
        audit=event(
            "peer.revoked",
            cli_actor(),
            peer=name,
            peer_id=rec.node_id.hex(),
            detail=rec.fingerprint,
        ),
    )
    note(f"revoked peer {name}; messages from it will be refused")
