"""``borderlink dashboard`` and ``borderlink monitor``: the region's message flow (PROTOCOL.md 14).

``dashboard`` asks the running node for a login link (a one-time token, in the link's fragment so
no server sees it) and prints it with the metrics URL. ``monitor`` polls the node's admin socket
and redraws a table of units and a feed of events in place (rich's Live, usable over SSH), or
with ``--json`` streams every event as one JSON line for scripts, exactly as stored. Everything a peer supplied is escaped before a terminal sees
it. The CLI asks; the node's flow view (node/flow_view.py) computes.
"""

from __future__ import annotations

import time
from typing import Any

import click
import msgspec

from cli.context import Ctx
from cli.options import Command
from cli.output import emit, json_option, local_time
from protocol.text import for_terminal, json_text_for_terminal

POLL = 0.5
WINDOWS = ("1m", "10m", "1h", "24h")


@click.command("dashboard", cls=Command)
@json_option
@click.pass_obj
def dashboard_cmd(ctx: Ctx, as_json: bool) -> None:
    """Print the dashboard's one-time login link and the metrics URL."""

    def human(d: dict[str, Any]) -> str:
        return "\n".join(
            [
                f"dashboard: {d['url']}",
                "  (the link works once, for 5 minutes; run this again for another)",
                f"metrics:   {d['metrics_url']}",
                f"  (Authorization: Bearer, the token in {d['metrics_token_file']})",
            ]
        )

    data = ctx.admin("POST", "/v1/dashboard", {})
    if as_json:
        click.echo(msgspec.json.encode({"url": data["url"], "metrics_url": data["metrics_url"]}))
        return
    emit(data, False, human)


def _query(
    country: str | None, unit: str | None, kind: str | None, priority: str | None, window: str
) -> str:
    from urllib.parse import urlencode

    params = {"country": country, "unit": unit, "type": kind, "priority": priority}
    return urlencode({k: v for k, v in {**params, "window": window}.items() if v})


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s // 3600} h"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def event_line(e: dict[str, Any]) -> str:
    """One feed event in words; ``e`` is escaped already."""
    what = e["type"] or "withheld type"
    who = e["peer"] or (
        "withheld" if "recipients" in e["withheld"] or "peer" in e["withheld"] else "-"
    )
    tlp = f"TLP:{e['tlp']}" if e["tlp"] else "TLP:?"
    arrow = {
        "queued": f"queued {what} for {', '.join(e['recipients'] or []) or 'withheld'}",
        "delivered": f"delivered {what} to {who} in {_ms(e['latency_ms'])}",
        "failed": f"could not deliver {what} to {who}: {e['reason'] or 'no reason given'}",
        "expired": f"gave up on {what} to {who}: it expired",
        "rejected": f"{who} refused {what}: {e['reason'] or 'no reason given'}",
        "received": f"received {what} from {who}",
        "acknowledged": f"acknowledged {what} from {who}: {e['action']}",
    }.get(e["event"], e["event"])
    hidden = {"id", "recipients"} & set(e["withheld"])
    ident = (e["id"] or "")[:12] or ("(id withheld)" if hidden else "(no id)")
    prio = (e["priority"] or "").upper() if e["priority"] in ("urgent", "flash") else ""
    return (
        f"{local_time(e['at'])}  {e['unit']}: {arrow}  [{tlp}{' ' + prio if prio else ''}] {ident}"
    )


def _table(view: dict[str, Any]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{view['me']}: units", expand=True, title_justify="left")
    table.add_column("unit", no_wrap=True)
    for col in ("link", "key", "queue", "oldest", "p50/p95", "out 1m/1h", "in 1m/1h"):
        table.add_column(col, no_wrap=True)
    table.add_column("failing", overflow="fold")
    for u in view["units"]:
        failing = "-"
        if u["failing"]:
            since = "" if u["failing_since"] is None else f" since {local_time(u['failing_since'])}"
            failing = f"{u['failing']}{since}"
        cells = [
            f"{u['name']} ({u['country']})" + (" *" if u["me"] else ""),
            u["link"],
            u["key_status"],
            str(u["outbox_depth"]),
            _age(u["oldest_undelivered"]),
            f"{_ms(u['p50_ms'])}/{_ms(u['p95_ms'])}".replace(" ms/", "/"),
            f"{u['out_1m']}/{u['out_1h']}",
            f"{u['in_1m']}/{u['in_1h']}",
            failing,
        ]
        style = "" if u["link"] == "up" else "bold red"
        table.add_row(*(Text(c) for c in cells), style=style)  # Text: never parsed as markup
    table.caption = "* this node; queue: entries still to deliver; p50/p95: delivery latency"
    return table


def _screen(view: dict[str, Any], feed: list[str]) -> Any:
    from rich.console import Group
    from rich.text import Text

    parts: list[Any] = [_table(view)]
    for alarm in view["alarms"]:
        parts.append(Text(f"ALARM: {alarm}", style="bold red"))
    for d in view["disagreements"][:5]:
        parts.append(
            Text(
                f"DISAGREEMENT: {d['sender']} delivered {d['id'][:12]} to {d['recipient']}, "
                "which never reported it received",
                style="bold yellow",
            )
        )
    parts.append(Text("events (newest last):", style="bold"))
    parts.extend(Text(line) for line in feed[-15:])
    return Group(*parts)


@click.command("monitor", cls=Command)
@click.option("--country", help="Only units of this country (ISO 3166 alpha-2).")
@click.option("--unit", help="Only this unit's traffic (either side).")
@click.option("--type", "kind", help="Only this message type.")
@click.option("--priority", type=click.Choice(["routine", "urgent", "flash"]))
@click.option(
    "--window",
    type=click.Choice(WINDOWS),
    default="1h",
    show_default=True,
    help="How far back counts and the feed go.",
)
@click.option("--once", is_flag=True, help="Print the table and recent events once and exit.")
@json_option
@click.pass_obj
def monitor_cmd(
    ctx: Ctx,
    country: str | None,
    unit: str | None,
    kind: str | None,
    priority: str | None,
    window: str,
    once: bool,
    as_json: bool,
) -> None:
    """Watch the region's message flow live: units, links, events (Ctrl-C to stop).

    With --json, every event is printed as one JSON line as it is stored (from the node's
    start of history with --once, else from now); scripts read them with any JSON parser."""
    query = _query(country, unit, kind, priority, window)
    try:
        if as_json:
            _stream_json(ctx, query, once)
        else:
            _live(ctx, query, once)
    except KeyboardInterrupt:
        return


def _stream_json(ctx: Ctx, query: str, once: bool) -> None:
    after = 0 if once else ctx.admin("GET", "/v1/flow/view?window=1m")["last_rid"]
    while True:
        page = ctx.admin("GET", f"/v1/flow/events?after={after}&{query}")
        for e in page["events"]:
            click.echo(json_text_for_terminal(msgspec.json.encode(e).decode()))
        after = page["next"]
        if once and not page["events"]:
            return
        if not page["events"]:
            time.sleep(POLL)


def _live(ctx: Ctx, query: str, once: bool) -> None:
    from rich.console import Console
    from rich.live import Live

    view = ctx.admin("GET", f"/v1/flow/view?{query}")
    feed = [event_line(e) for e in _safe(list(reversed(view["feed"])))]
    import sys

    # A terminal's own width; piped output (a log, a test) gets room for every column.
    console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 150)
    if once:
        console.print(_screen(_safe(view), feed))
        return
    after = view["last_rid"]
    with Live(_screen(_safe(view), feed), console=console, refresh_per_second=4) as live:
        while True:
            time.sleep(POLL)
            page = ctx.admin("GET", f"/v1/flow/events?after={after}&{query}")
            after = page["next"]
            feed = (feed + [event_line(e) for e in _safe(page["events"])])[-50:]
            view = ctx.admin("GET", f"/v1/flow/view?{query}")
            live.update(_screen(_safe(view), feed))


def _safe(value: Any) -> Any:
    """What a peer or a unit supplied, escaped for the terminal (rich markup is not parsed:
    every line is a Text, never markup)."""
    return for_terminal(value)


__all__ = ["dashboard_cmd", "event_line", "monitor_cmd"]
