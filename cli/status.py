"""``borderlink status``: the running node's health, peers with link state, queues, audit log and
any misbehaviour it caught; when it is not running it says so in one line (exit 3)."""

from __future__ import annotations

import time
from typing import Any

import click

from cli.context import Ctx
from cli.options import Command
from cli.output import emit, json_option


def _human(d: dict[str, Any]) -> str:
    from cli.delivery_words import peer_line, span, summary

    now = time.time()
    lines = [
        f"node {d['node']} up {span(d['uptime'])}, listening on {d['listen']}",
        f"outbox: {summary(d['outbox'], d.get('next_retry'), now)}; inbox: "
        f"{d['inbox']['total']} ({d['inbox']['unread']} unread)",
    ]
    if d["oldest_undelivered_age"] is not None:
        lines.append(f"oldest undelivered: queued {span(d['oldest_undelivered_age'])} ago")
    lines += [
        f"  from {s['name']:<16} {s['messages']} messages ({s['unread']} unread, "
        f"{s['bytes']} bytes)"
        for s in d["inbox"].get("senders", [])
    ]
    lines += [peer_line(p, now) for p in d["peers"]]
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
    c = d.get("crypto")
    if c and c["failing"]:
        lines.append(
            "  WARNING: crypto worker processes kept dying, so all cryptography runs on one thread"
            " (one core); see the node's log for why, then restart the node to try them again"
        )
    k = d.get("keys")
    if k:
        lines.append(f"keys: seq {k['seq']}, card valid until {_day(k['valid_until'])}")
        lines += [f"  WARNING: {w}" for w in k["warnings"]]
        lines += [
            f"  key statement(s) not yet delivered to {name}: {n}"
            for name, n in k["undelivered_statements"].items()
        ]
        lines += [
            f"  {_day(e['at'])} {e['peer']}: {e['kind']} {e['outcome']}: {e['detail']}"
            for e in k["events"][:5]
        ]
    return "\n".join(lines)


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


@click.command("status", cls=Command)
@json_option
@click.pass_obj
def status_cmd(ctx: Ctx, as_json: bool) -> None:
    """Node up, peers with link state, queue depths, oldest undelivered message."""
    emit(ctx.admin("GET", "/v1/status"), as_json, _human)
