"""``borderlink send`` / ``outbox``: queue a message with the running node, or a batch of them
(several FILEs, or JSON lines on stdin: checked here first, cli/batch_input.py, then queued in one
call, all or none), follow their delivery, list the outbox (a page at a time: ``--limit``,
``--after CURSOR``) and queue a failed one again (``outbox retry``). Only the node can seal with
its queue and deliver: when it is not running each says so in one line (exit 3)."""

from __future__ import annotations

import time
from typing import Any, cast
from urllib.parse import quote

import click

from cli.context import Ctx
from cli.files import input_name, read_bytes
from cli.inbox import listing_query
from cli.options import TYPE_NAMES, Command, Duration, Group, OneOf, split_names
from cli.output import after_option, emit, emit_page, json_option, limit_option, note
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
@click.argument("files", metavar="FILE...", nargs=-1, required=True)
@json_option
@click.pass_obj
def send_cmd(
    ctx: Ctx,
    to: str,
    type_name: str,
    priority: str | None,
    ttl: int,
    wait: str | None,
    files: tuple[str, ...],
    as_json: bool,
) -> None:
    """Queue messages (a JSON FILE each, see 'template'; '-' reads JSON lines from stdin, one
    body per line) for delivery; prints their ids, one a line in input order, once all are durable.
    Several bodies are queued all together or, if one is bad, none."""
    if wait is not None:
        try:
            if float(wait) <= 0:
                raise ValueError
        except ValueError:
            raise click.UsageError(
                f"--wait takes seconds, not '{wait}'; write --wait=SECS or put --wait after FILE"
            ) from None
    request = {"to": split_names(to), "type": type_name, "ttl": ttl, "priority": priority}
    if len(files) == 1 and files[0] != "-":
        _send_one(ctx, request, files[0], wait, as_json)
    else:
        _send_batch(ctx, request, files, wait, as_json)


def _send_one(
    ctx: Ctx, request: dict[str, Any], file: str, wait: str | None, as_json: bool
) -> None:
    from protocol.decoding import decode_json

    body = decode_json(read_bytes(file), what=input_name(file))
    res = ctx.admin("POST", "/v1/send", {**request, "body": body})
    msg_id = res["id"]
    if wait is None:
        emit(res, as_json, lambda d: d["id"])
        return
    rows = _waited(ctx, [msg_id], float(wait), f"queued {msg_id}")[msg_id]
    res["recipients"] = {r["peer"]: r["status"] for r in rows}
    emit(res, as_json, lambda d: "\n".join([d["id"], *_recipient_lines(rows)]))
    missing = [r["peer"] for r in rows if r["status"] != "delivered"]
    if missing:
        raise PartialDelivery(
            f"not delivered within {wait} s to: {', '.join(missing)}",
            hint="'borderlink outbox' shows the last error and the next retry",
        )


BATCH_TIMEOUT = 600.0  # s: sealing 10,000 messages on a loaded machine


def _send_batch(
    ctx: Ctx, request: dict[str, Any], files: tuple[str, ...], wait: str | None, as_json: bool
) -> None:
    """Every body checked here first (cli/batch_input.py), then one call: all queued or none."""
    import msgspec

    from cli.admin_client import call
    from cli.batch_input import checked, pieces

    bodies = checked(request["type"], pieces(files))
    payload = msgspec.json.encode({**request, "bodies": [msgspec.Raw(b) for b in bodies]})
    ctx.home.require()
    res = call(
        ctx.home.admin_socket, "POST", "/v1/send/batch", encoded=payload, timeout=BATCH_TIMEOUT
    )
    ids: list[str] = res["ids"]
    if wait is None:
        emit(res, as_json, lambda d: "\n".join(d["ids"]))
        return
    rows = _waited(ctx, ids, float(wait), f"queued {len(ids)} messages")
    res["recipients"] = {i: {r["peer"]: r["status"] for r in rows[i]} for i in ids}
    emit(
        res,
        as_json,
        lambda d: "\n".join(line for i in d["ids"] for line in [i, *_recipient_lines(rows[i])]),
    )
    late = {i: [r["peer"] for r in rows[i] if r["status"] != "delivered"] for i in ids}
    late = {i: peers for i, peers in late.items() if peers}
    if late:
        peers = sorted({p for ps in late.values() for p in ps})
        raise PartialDelivery(
            f"not delivered within {wait} s: {len(late)} of {len(ids)} messages, to: "
            f"{', '.join(peers)}",
            hint="'borderlink outbox' shows the last error and the next retry",
        )


def _recipient_lines(rows: list[dict[str, Any]]) -> list[str]:
    """A message's recipients, one line each: ``  PEER   how its delivery stands, in words``."""
    from cli.delivery_words import entry
    from protocol.text import for_terminal

    now = time.time()
    shown = cast(list[dict[str, Any]], for_terminal(rows))  # a peer's error text, escaped
    return [f"  {r['peer']:<16} {entry(r, now)}" for r in shown]


def _waited(
    ctx: Ctx, ids: list[str], seconds: float, queued: str
) -> dict[str, list[dict[str, Any]]]:
    """:func:`_follow` after saying what was ``queued``, and Ctrl-C said in words: the messages
    stay queued (exit 130). A Ctrl-C that meets the first line itself (a person answering it, a
    script that waited for it) is answered the same way."""
    try:
        note(f"{queued}; waiting for receipts (Ctrl-C stops waiting, not the delivery)")
        return _follow(ctx, ids, seconds)
    except KeyboardInterrupt:
        if len(ids) == 1:
            stays = f"message {ids[0]} stays queued and is delivered as its recipients answer"
            follows = "it"
        else:
            stays = (
                f"the {len(ids)} messages stay queued and are delivered as their recipients answer"
            )
            follows = "them"
        note(f"borderlink: stopped waiting; {stays} ('borderlink outbox' follows {follows})")
        raise click.exceptions.Exit(130) from None


# Outbox states that can still change without anyone acting (a held or refused entry waits for
# a custodian or an operator, an expired one never changes).
_MOVING = frozenset({"queued", "delivering", "failed"})


def _follow(ctx: Ctx, ids: list[str], seconds: float) -> dict[str, list[dict[str, Any]]]:
    """Poll the messages' outbox entries until every recipient's is settled or ``seconds``
    have passed. For one message, a progress line (stderr) for each recipient whose delivery
    moved; for several, one each time the count of settled messages changes."""
    from cli.delivery_words import entry

    deadline = time.monotonic() + seconds
    seen: dict[str, tuple[str, int]] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    moving = list(ids)
    settled = 0
    while True:
        rows.update(_entries(ctx, moving))
        now = time.time()
        if len(ids) == 1:
            for r in rows[ids[0]]:
                state = (r["status"], int(r["attempts"]))
                if seen.get(r["peer"], ("queued", 0)) != state:
                    note(f"  {r['peer']}: {entry(r, now)}")
                seen[r["peer"]] = state
        moving = [i for i in moving if any(r["status"] in _MOVING for r in rows[i])]
        if len(ids) > 1 and len(ids) - len(moving) != settled:
            settled = len(ids) - len(moving)
            note(f"  {settled} of {len(ids)} messages settled")
        if not moving or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


BY_ID = 8  # messages looked up one by one; more are found in pages of the whole outbox


def _entries(ctx: Ctx, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The outbox entries of each of ``ids``: one request each for a few; for more, pages of
    the outbox (newest first, where a batch just queued stands), read until every one of them
    was seen and a page ends on another message's entries, or the outbox ends."""
    if len(ids) <= BY_ID:
        return {i: ctx.admin("GET", f"/v1/outbox?id={i}&limit=1000")["items"] for i in ids}
    found: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    after = None
    while True:
        page = ctx.admin("GET", "/v1/outbox" + listing_query(1000, after))
        for r in page["items"]:
            if r["id"] in found:
                found[r["id"]].append(r)
        after = page["next"]
        ended_elsewhere = not page["items"] or page["items"][-1]["id"] not in found
        if after is None or (ended_elsewhere and all(found.values())):
            return found


def _outbox_human(rows: list[dict[str, Any]]) -> str:
    from cli.delivery_words import outbox_lines

    return "\n".join(outbox_lines(rows, time.time())) if rows else "outbox is empty"


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
