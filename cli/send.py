"""``borderlink send`` / ``outbox``: queue a message with the running node, follow its delivery
(a page at a time: ``--limit``, ``--after CURSOR``) and queue a failed one again (``outbox retry``).
Only the node can seal with its queue and deliver: when it is not running each says so in one line
(exit 3)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import click

from cli.context import Ctx
from cli.files import input_name, read_bytes
from cli.inbox import listing_query
from cli.options import TYPE_NAMES, Command, Duration, Group, OneOf, split_names
from cli.output import after_option, emit, emit_page, json_option, limit_option, local_time, note
from protocol.errors import PartialDelivery


@click.command("send", cls=Command)
@click.option("--to", "to", required=True, help="Recipient peer names, comma separated.")
@click.option("--type", "type_name", required=True, type=OneOf(TYPE_NAMES))
@click.option(
    "--priority", type=OneOf(["routine", "urgent", "flash"]), help="Override meta.priority."
)
@click.option(
    "--ttl", type=Duration(), default="3d", show_default=True, help="Lifetime, e.g. 12h, 3d."
)
@click.option(
    "--wait",
    "wait",
    is_flag=False,
    flag_value="60",
    default=None,
    metavar="[SECS]",
    help="Wait for every recipient's receipt (default 60 s); exit 6 if only some arrive.",
)
@click.argument("file", metavar="FILE")
@json_option
@click.pass_obj
def send_cmd(
    ctx: Ctx,
    to: str,
    type_name: str,
    priority: str | None,
    ttl: int,
    wait: str | None,
    file: str,
    as_json: bool,
) -> None:
    """Queue a message (JSON FILE, see 'template') for delivery; prints its id once it is durable."""
    if wait is not None:
        try:
            if float(wait) <= 0:
                raise ValueError
        except ValueError:
            raise click.UsageError(
                f"--wait takes seconds, not '{wait}'; write --wait=SECS or put --wait after FILE"
            ) from None
    from protocol.decoding import decode_json

    body = decode_json(read_bytes(file), what=input_name(file))
    res = ctx.admin(
        "POST",
        "/v1/send",
        {"to": split_names(to), "type": type_name, "body": body, "ttl": ttl, "priority": priority},
    )
    msg_id = res["id"]
    if wait is None:
        emit(res, as_json, lambda d: d["id"])
        return
    note(f"queued {msg_id}; waiting for receipts")
    deadline = time.monotonic() + float(wait)
    rows: list[dict[str, Any]] = []
    while True:
        rows = ctx.admin("GET", f"/v1/outbox?id={msg_id}&limit=1000")["items"]
        if all(r["status"] == "delivered" for r in rows) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    res["recipients"] = {r["peer"]: r["status"] for r in rows}
    emit(
        res,
        as_json,
        lambda d: d["id"] + "\n" + "\n".join(f"  {p}: {s}" for p, s in d["recipients"].items()),
    )
    missing = [r["peer"] for r in rows if r["status"] != "delivered"]
    if missing:
        raise PartialDelivery(
            f"not delivered within {wait} s to: {', '.join(missing)}",
            hint="'borderlink outbox' shows the last error and the next retry",
        )


def _outbox_human(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "outbox is empty"
    lines = []
    for r in rows:
        line = (
            f"{r['id']}  {r['type']:<13} -> {r['peer']:<16} {r['status']:<10} tries {r['attempts']}"
        )
        if r["status"] == "delivered":
            line += f"  at {local_time(r['delivered_at'])}"
        elif r["next_attempt"]:
            line += f"  next {local_time(r['next_attempt'])}"
        if r["last_error"] and r["status"] != "delivered":
            line += f"\n      last error: {r['last_error']}"
        lines.append(line)
    return "\n".join(lines)


@click.group("outbox", cls=Group, invoke_without_command=True)
@limit_option(50)
@after_option
@json_option
@click.pass_context
def outbox_cmd(click_ctx: click.Context, limit: int, after: str | None, as_json: bool) -> None:
    """Per message and recipient: status, attempts, last error, next retry, newest first;
    'outbox retry ID' queues a failed or rejected delivery again."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Ctx = click_ctx.obj
    page = ctx.admin("GET", "/v1/outbox" + listing_query(limit, after))
    emit_page(page, as_json, _outbox_human, ["outbox", "--limit", str(limit)])


@outbox_cmd.command("retry")
@click.argument("msg_id", metavar="ID")
@click.option("--to", "to", metavar="NAME", help="Only the delivery to this peer.")
@json_option
@click.pass_obj
def outbox_retry_cmd(ctx: Ctx, msg_id: str, to: str | None, as_json: bool) -> None:
    """Queue a message's failed or rejected deliveries again, to be tried now (exit 1 if there
    is no such message or nothing to retry)."""
    res = ctx.admin("POST", f"/v1/outbox/{quote(msg_id, safe='')}/retry", {"to": to})
    emit(res, as_json, lambda d: f"queued {d['id']} again for {', '.join(d['to'])}")
