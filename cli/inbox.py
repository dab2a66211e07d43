"""``borderlink inbox``: list, show and acknowledge received messages, through the running node (it
holds the key that opens them); when it is not running each says so in one line (exit 3).

The listing is most urgent first (flash, urgent, routine), newest first within a priority, a page
at a time (``--limit``, ``--after CURSOR``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import click

from cli.context import Ctx
from cli.options import Group, OneOf
from cli.output import after_option, emit, emit_page, json_option, limit_option, local_time
from protocol.text import json_for_terminal

ACTIONS = ["controlled", "seized", "nothing-found", "not-applicable"]
FROM_HELP = "Sender name, when two senders used the same message id."
PRIORITY_MARK = {"flash": "FLASH ", "urgent": "URGENT "}


def _inbox_human(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "inbox is empty"
    out = []
    for r in rows:
        flags = PRIORITY_MARK.get(r["priority"], "")
        flags += ("new " if not r["read"] else "") + (f"acked:{r['acked']} " if r["acked"] else "")
        if r["withdrawn_by"]:
            flags += "WITHDRAWN "
        if r.get("suspect"):
            flags += "SUSPECT "
        out.append(
            f"{r['id']}  {r['type']:<13} from {r['from']:<16} {local_time(r['received_at'])}  {flags}"
        )
    return "\n".join(out)


def listing_query(limit: int | None, after: str | None, **extra: str) -> str:
    """The query string of a paged listing on the admin API."""
    query = {**extra, **({"limit": str(limit)} if limit is not None else {})}
    if after is not None:
        query["after"] = after
    return "?" + urlencode(query) if query else ""


@click.group("inbox", cls=Group, invoke_without_command=True)
@click.option("--unread", is_flag=True, help="Only messages not yet shown.")
@limit_option(50)
@after_option
@json_option
@click.pass_context
def inbox_group(
    click_ctx: click.Context, unread: bool, limit: int, after: str | None, as_json: bool
) -> None:
    """List received messages, most urgent first; 'inbox show ID' reads one, 'inbox ack ID'
    acknowledges it."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Ctx = click_ctx.obj
    query = listing_query(limit, after, **({"unread": "1"} if unread else {}))
    more = ["inbox", *(["--unread"] if unread else []), "--limit", str(limit)]
    emit_page(ctx.admin("GET", "/v1/inbox" + query), as_json, _inbox_human, more)


def _inbox_path(msg_id: str, sender: str | None, suffix: str = "") -> str:
    return f"/v1/inbox/{quote(msg_id, safe='')}{suffix}" + (
        f"?from={quote(sender, safe='')}" if sender else ""
    )


def _message_human(d: dict[str, Any]) -> str:
    head = (
        f"from:    {d['from']} (signature verified)\ntype:    {d['type']}\n"
        f"priority: {d['priority']}\nid:      {d['id']}\n"
    )
    if d["withdrawn_by"]:
        head += f"WITHDRAWN by {d['withdrawn_by']}\n"
    if d.get("suspect"):
        head += f"SUSPECT: {d['suspect']}\n"
    return head + json_for_terminal(d["message"])


@inbox_group.command("show")
@click.argument("msg_id", metavar="ID")
@click.option("--from", "sender", metavar="NAME", help=FROM_HELP)
@json_option
@click.pass_obj
def inbox_show_cmd(ctx: Ctx, msg_id: str, sender: str | None, as_json: bool) -> None:
    """Decrypt and show one message (marks it read)."""
    emit(ctx.admin("GET", _inbox_path(msg_id, sender)), as_json, _message_human)


@inbox_group.command("ack")
@click.argument("msg_id", metavar="ID")
@click.option("--action", type=OneOf(ACTIONS), default="controlled", show_default=True)
@click.option("--details", help="Free text for the sender.")
@click.option("--from", "sender", metavar="NAME", help=FROM_HELP)
@json_option
@click.pass_obj
def inbox_ack_cmd(
    ctx: Ctx, msg_id: str, action: str, details: str | None, sender: str | None, as_json: bool
) -> None:
    """Acknowledge a message: sends Feedback with the action taken to its sender."""
    res = ctx.admin(
        "POST", _inbox_path(msg_id, sender, "/ack"), {"action": action, "details": details}
    )
    emit(
        res,
        as_json,
        lambda d: (
            f"acknowledged {d['id']} ({d['action']}); feedback {d['feedback_id']} queued to {d['to']}"
        ),
    )
