"""``borderlink inbox``: list, show and acknowledge received messages, through the running node (it
holds the key that opens them); when it is not running each says so in one line (exit 3).

The listing is most urgent first (flash, urgent, routine), newest first within a priority, a page
at a time (``--limit``, ``--after CURSOR``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import click

from cli.context import Ctx
from cli.message_view import message_human, tlp_mark
from cli.options import TYPE_NAMES, Group, OneOf
from cli.output import after_option, emit, emit_page, json_option, limit_option, local_time

ACTIONS = ["controlled", "seized", "nothing-found", "not-applicable"]
FROM_HELP = "Sender name, when two senders used the same message id."


def _inbox_human(rows: list[dict[str, Any]], empty: str = "inbox is empty") -> str:
    if not rows:
        return empty
    out = []
    for r in rows:
        flags = ("new " if not r["read"] else "") + (f"acked:{r['acked']} " if r["acked"] else "")
        if r["withdrawn_by"]:
            flags += "WITHDRAWN "
        if r.get("suspect"):
            flags += "SUSPECT "
        line = (
            f"{r['id']}  {r['priority'].upper():<7}  {tlp_mark(r.get('tlp')):<16}  "
            f"{r['type']:<13}  from {r['from']:<16} {local_time(r['received_at'])}  {flags}"
        )
        out.append(line.rstrip())
    return "\n".join(out)


def listing_query(
    limit: int | None, after: str | None, *pairs: tuple[str, str], **extra: str
) -> str:
    """The query string of a paged listing on the admin API (``pairs`` may repeat a name)."""
    query = [*pairs, *extra.items(), *([("limit", str(limit))] if limit is not None else [])]
    if after is not None:
        query.append(("after", after))
    return "?" + urlencode(query) if query else ""


@click.group("inbox", cls=Group, invoke_without_command=True)
@click.option("--unread", is_flag=True, help="Only messages not yet shown.")
@click.option(
    "--type",
    "types",
    multiple=True,
    type=OneOf(TYPE_NAMES),
    help="Only messages of this type; repeat it for several (--type feedback --type retraction).",
)
@click.option("--from", "sender", metavar="NAME", help="Only messages from this peer.")
@click.option(
    "--priority",
    "priorities",
    multiple=True,
    type=OneOf(["flash", "urgent", "routine"]),
    help="Only messages of this priority; repeat it for several (--priority flash "
    "--priority urgent).",
)
@limit_option(50)
@after_option
@json_option
@click.pass_context
def inbox_group(
    click_ctx: click.Context,
    unread: bool,
    types: tuple[str, ...],
    sender: str | None,
    priorities: tuple[str, ...],
    limit: int,
    after: str | None,
    as_json: bool,
) -> None:
    """List received messages, most urgent first (flash, urgent, routine), newest first within
    a priority, with each one's TLP; the filters combine (a message must match all of them).
    'inbox show ID' reads one, 'inbox ack ID' acknowledges it; ID may be the first 4 or more hex
    digits of a message id, if no other starts with them."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Ctx = click_ctx.obj
    filters = [
        *(("type", t) for t in types),
        *([("from", sender)] if sender is not None else []),
        *(("priority", p) for p in priorities),
    ]
    query = listing_query(limit, after, *filters, **({"unread": "1"} if unread else {}))
    more = ["inbox", *(["--unread"] if unread else [])]
    more += [f"--{name}={value}" for name, value in filters]
    more += ["--limit", str(limit)]
    empty = "no messages match" if filters or unread or after else "inbox is empty"
    page = ctx.admin("GET", "/v1/inbox" + query)
    emit_page(page, as_json, lambda rows: _inbox_human(rows, empty), more)


def _inbox_path(msg_id: str, sender: str | None, suffix: str = "") -> str:
    return f"/v1/inbox/{quote(msg_id, safe='')}{suffix}" + (
        f"?from={quote(sender, safe='')}" if sender else ""
    )


@inbox_group.command("show")
@click.argument("msg_id", metavar="ID")
@click.option("--from", "sender", metavar="NAME", help=FROM_HELP)
@json_option
@click.pass_obj
def inbox_show_cmd(ctx: Ctx, msg_id: str, sender: str | None, as_json: bool) -> None:
    """Decrypt and show one message for a person (marks it read): TLP and handling first, then
    what, where, when and how much, the conveyance and route, personal data apart, and whether
    it was acknowledged or withdrawn. --json prints the body exactly as received. ID may be the
    first 4 or more hex digits of the id, if no other message starts with them."""
    emit(ctx.admin("GET", _inbox_path(msg_id, sender)), as_json, message_human)


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
    """Acknowledge a message: sends Feedback with the action taken to its sender. ID may be
    abbreviated as for 'inbox show'."""
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
