"""Operator commands that act on the running node through its admin API: send, outbox, inbox,
status. When the node is not running each says so in one line (exit 3)."""

from __future__ import annotations

import time
from typing import Any

import click

from cli.admin_client import call
from cli.context import Ctx
from cli.options import Command, Duration, Group, OneOf, split_names
from cli.output import emit, json_option, note
from cli.peers import input_name, read_bytes
from protocol.errors import PartialDelivery
from protocol.text import json_for_terminal

TYPES = ["seizure-alert", "risk-profile", "feedback", "retraction"]
ACTIONS = ["controlled", "seized", "nothing-found", "not-applicable"]


def _admin(ctx: Ctx, method: str, path: str, body: Any = None) -> Any:
    ctx.home.require()
    return call(ctx.home.admin_socket, method, path, body)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@click.command("send", cls=Command)
@click.option("--to", "to", required=True, help="Recipient peer names, comma separated.")
@click.option("--type", "type_name", required=True, type=OneOf(TYPES))
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
    res = _admin(
        ctx,
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
        rows = _admin(ctx, "GET", f"/v1/outbox?id={msg_id}")
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


@click.command("outbox", cls=Command)
@json_option
@click.pass_obj
def outbox_cmd(ctx: Ctx, as_json: bool) -> None:
    """Per message and recipient: status, attempts, last error, next retry."""
    rows = _admin(ctx, "GET", "/v1/outbox")

    def human(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return "outbox is empty"
        lines = []
        for r in rows:
            line = f"{r['id']}  {r['type']:<13} -> {r['peer']:<16} {r['status']:<10} tries {r['attempts']}"
            if r["status"] == "delivered":
                line += f"  at {_when(r['delivered_at'])}"
            elif r["next_attempt"]:
                line += f"  next {_when(r['next_attempt'])}"
            if r["last_error"] and r["status"] != "delivered":
                line += f"\n      last error: {r['last_error']}"
            lines.append(line)
        return "\n".join(lines)

    emit(rows, as_json, human)


@click.group("inbox", cls=Group, invoke_without_command=True)
@click.option("--unread", is_flag=True, help="Only messages not yet shown.")
@json_option
@click.pass_context
def inbox_group(click_ctx: click.Context, unread: bool, as_json: bool) -> None:
    """List received messages; 'inbox show ID' reads one, 'inbox ack ID' acknowledges it."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Ctx = click_ctx.obj
    rows = _admin(ctx, "GET", "/v1/inbox" + ("?unread=1" if unread else ""))

    def human(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return "inbox is empty"
        out = []
        for r in rows:
            flags = ("new " if not r["read"] else "") + (
                f"acked:{r['acked']} " if r["acked"] else ""
            )
            if r["withdrawn_by"]:
                flags += "WITHDRAWN "
            out.append(
                f"{r['id']}  {r['type']:<13} from {r['from']:<16} {_when(r['received_at'])}  {flags}"
            )
        return "\n".join(out)

    emit(rows, as_json, human)


FROM_HELP = "Sender name, when two senders used the same message id."


def _inbox_path(msg_id: str, sender: str | None, suffix: str = "") -> str:
    from urllib.parse import quote

    return f"/v1/inbox/{quote(msg_id, safe='')}{suffix}" + (
        f"?from={quote(sender, safe='')}" if sender else ""
    )


@inbox_group.command("show")
@click.argument("msg_id", metavar="ID")
@click.option("--from", "sender", metavar="NAME", help=FROM_HELP)
@json_option
@click.pass_obj
def inbox_show_cmd(ctx: Ctx, msg_id: str, sender: str | None, as_json: bool) -> None:
    """Decrypt and show one message (marks it read)."""
    view = _admin(ctx, "GET", _inbox_path(msg_id, sender))

    def human(d: dict[str, Any]) -> str:
        head = (
            f"from:    {d['from']} (signature verified)\ntype:    {d['type']}\nid:      {d['id']}\n"
        )
        if d["withdrawn_by"]:
            head += f"WITHDRAWN by {d['withdrawn_by']}\n"
        return head + json_for_terminal(d["message"])

    emit(view, as_json, human)


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
    res = _admin(
        ctx, "POST", _inbox_path(msg_id, sender, "/ack"), {"action": action, "details": details}
    )
    emit(
        res,
        as_json,
        lambda d: (
            f"acknowledged {d['id']} ({d['action']}); feedback {d['feedback_id']} queued to {d['to']}"
        ),
    )


@click.command("status", cls=Command)
@json_option
@click.pass_obj
def status_cmd(ctx: Ctx, as_json: bool) -> None:
    """Node up, peers with link state, queue depths, oldest undelivered message."""
    st = _admin(ctx, "GET", "/v1/status")

    def human(d: dict[str, Any]) -> str:
        lines = [
            f"node {d['node']} up {d['uptime']:.0f} s, listening on {d['listen']}",
            f"outbox: {d['outbox'] or 'empty'}; inbox: {d['inbox']['total']} "
            f"({d['inbox']['unread']} unread)",
        ]
        if d["oldest_undelivered_age"] is not None:
            lines.append(f"oldest undelivered: {d['oldest_undelivered_age']:.0f} s")
        lines += [
            f"  peer {p['name']:<16} link {p['link']:<8} queued {p['queued']}" for p in d["peers"]
        ]
        a = d.get("audit")
        if a:
            lines.append(
                f"audit log: {a['size']} entries, checkpoint at {a['checkpoint_size']}, "
                f"{a['cosignatures']} cosignature(s)"
            )
            lines += [f"  witnessing {n}: {outcome}" for n, outcome in a["witnessing"].items()]
        lines += [
            f"  MISBEHAVIOUR by {m['peer']}: {m['kind']}: {m['detail']}"
            for m in d.get("misbehaviour", [])
        ]
        return "\n".join(lines)

    emit(st, as_json, human)
