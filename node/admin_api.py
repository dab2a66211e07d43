"""The local admin API: JSON over a Unix socket (mode 0600) in the home; the CLI's way in.

It is never bound to a network address, so only the account that owns the home can use it.
Errors are ``{"error": class, "message": text, "hint": text, "exit_code": n}`` so the CLI can
print the same one line and exit with the same code as if the error had happened locally.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import structlog
from aiohttp import web

from keys.card import parse_card
from protocol.decoding import Decoder
from protocol.envelope import open_envelope
from protocol.errors import BorderlinkError, UnknownPeer, UsageError, ValidationError
from protocol.identity import PublicIdentity
from protocol.schemas import SCHEMA_VERSION, Feedback, Meta, encode_body
from protocol.text import shown

if TYPE_CHECKING:
    from node.daemon import Node

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


class SendRequest(msgspec.Struct, forbid_unknown_fields=True):
    to: list[str]
    type: str
    body: msgspec.Raw
    ttl: int = 3 * 86400
    priority: str | None = None


class AckRequest(msgspec.Struct, forbid_unknown_fields=True):
    action: str = "controlled"
    details: str | None = None


_SEND = Decoder[SendRequest](SendRequest, what="admin request")
_ACK = Decoder[AckRequest](AckRequest, what="admin request")


def _request(decoder: Decoder[T], data: bytes) -> T:
    """The CLI sent something this node does not understand: a usage error, said in our words."""
    try:
        return decoder.decode(data)
    except ValidationError as exc:
        raise UsageError(f"bad admin request: {exc.message}") from exc


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data), status=status, content_type="application/json"
    )


def _hex_id(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raise UsageError(f"{shown(text)} is not a message id (32 hex digits)")
    return raw


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BorderlinkError as exc:
        return _json(
            {
                "error": type(exc).__name__,
                "message": exc.message,
                "hint": exc.hint,
                "exit_code": exc.exit_code,
            },
            status=400,
        )
    except web.HTTPException:
        raise
    except Exception as exc:  # a bug: log it whole, tell the CLI in one line
        structlog.get_logger("borderlink.admin").exception("admin.error", path=request.path)
        return _json(
            {
                "error": "NodeError",
                "message": f"internal error in the node: {exc}",
                "hint": "see the node's log",
                "exit_code": 3,
            },
            status=500,
        )


def make_admin_app(node: Node) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=4 * 1024 * 1024)
    db = node.run_db
    store = node.store

    async def names() -> dict[bytes, str]:
        return {p.node_id: p.name for p in await db(store.peers)}

    async def status(_r: web.Request) -> web.Response:
        out = await db(store.outbox_stats)
        inbox = await db(store.inbox_stats)
        peer_names = await names()
        peers = [
            {
                "name": name,
                "node_id": nid.hex(),
                "link": node.workers[nid].link if nid in node.workers else "idle",
                "in_flight": len(node.workers[nid].inflight) if nid in node.workers else 0,
                "queued": out["per_peer"].get(nid, 0),
            }
            for nid, name in peer_names.items()
        ]
        oldest = out["oldest_undelivered"]
        latest = await db(store.latest_checkpoint)
        evidence = await db(store.evidence)
        return _json(
            {
                "node": node.card.name,
                "node_id": node.identity.node_id.hex(),
                "up": True,
                "listen": f"{node.config.host_port[0]}:{node.listen_port}",
                "uptime": round(time.time() - node.started, 1),
                "peers": peers,
                "outbox": out["by_status"],
                "audit": {
                    "size": await db(store.audit_size),
                    "checkpoint_size": latest[0] if latest else 0,
                    "cosignatures": len(await db(store.cosignatures, latest[0])) if latest else 0,
                    "witnessing": node.witness.last,
                },
                "misbehaviour": [
                    {
                        "peer": peer_names.get(e["node"], e["node"].hex()),
                        "kind": e["kind"],
                        "detail": e["detail"],
                        "at": e["at"],
                    }
                    for e in evidence
                ],
                "inbox": inbox,
                "oldest_undelivered_age": round(time.time() - oldest, 1) if oldest else None,
            }
        )

    async def send(r: web.Request) -> web.Response:
        req = _request(_SEND, await r.read())
        msg_id = await node.send(req.to, req.type, bytes(req.body), req.ttl, req.priority)
        return _json({"id": msg_id.hex(), "to": req.to, "status": "queued"})

    async def outbox(r: web.Request) -> web.Response:
        msg_id = _hex_id(r.query["id"]) if "id" in r.query else None
        peer_names = await names()
        rows = await db(store.outbox_rows, msg_id)
        for row in rows:
            row["id"] = row["id"].hex()
            row["peer"] = peer_names.get(row["peer"], row["peer"].hex())
            if row["status"] in ("delivered", "expired", "rejected"):
                row["next_attempt"] = None
        return _json(rows)

    async def inbox(r: web.Request) -> web.Response:
        rows = await db(store.inbox_rows, unread=r.query.get("unread") == "1")
        peer_names = await names()
        return _json([_inbox_view(row, peer_names) for row in rows])

    async def opened_message(r: web.Request, msg_id: bytes) -> tuple[dict[str, Any], Any]:
        sender_id = None
        if "from" in r.query:
            peer = await db(store.peer_by_name, r.query["from"])
            if peer is None:
                raise UnknownPeer(f"no peer named '{r.query['from']}'")
            sender_id = peer.node_id
        found = await db(store.inbox_get, msg_id, sender_id)
        if not found:
            raise BorderlinkError(
                f"no message {msg_id.hex()} in the inbox",
                hint="list messages with 'borderlink inbox'",
            )
        if len(found) > 1:
            peer_names = await names()
            who = ", ".join(peer_names.get(row["sender"], row["sender"].hex()) for row, _ in found)
            raise UsageError(
                f"message id {msg_id.hex()} was used by several senders ({who})",
                hint="say which with --from NAME",
            )
        row, envelope = found[0]
        rec = await db(store.peer_by_id, row["sender"])
        if rec is None:
            raise UnknownPeer("the sender of that message is no longer a known peer")

        def sender_of(_nid: bytes) -> PublicIdentity:
            return parse_card(rec.card, now=None).identity

        # Stored envelopes were verified on arrival; re-opening at their creation time checks
        # the signature again without failing on expiry.
        opened = await node.run_cpu(
            lambda: open_envelope(envelope, node.identity, sender_of=sender_of, now=row["created"])
        )
        return row, opened

    async def inbox_show(r: web.Request) -> web.Response:
        msg_id = _hex_id(r.match_info["id"])
        row, opened = await opened_message(r, msg_id)
        await db(store.inbox_mark_read, row["sender"], msg_id, time.time(), "operator")
        view = _inbox_view(row, await names())
        view["message"] = msgspec.to_builtins(opened.message)
        return _json(view)

    async def inbox_ack(r: web.Request) -> web.Response:
        msg_id = _hex_id(r.match_info["id"])
        req = _request(_ACK, await r.read() or b"{}")
        row, opened = await opened_message(r, msg_id)
        sender = (await names())[row["sender"]]
        meta = opened.message.meta
        fb = Feedback(
            meta=Meta(
                schema_version=SCHEMA_VERSION,
                priority="routine",
                tlp=meta.tlp,
                handling=meta.handling,
                source_reliability="A",
                info_accuracy=1,
                in_reply_to=msg_id.hex(),
            ),
            refers_to=msg_id.hex(),
            action=req.action,
            details=req.details,
        )  # type: ignore[arg-type]
        try:
            body = encode_body(fb)
        except ValidationError as exc:
            raise UsageError(f"cannot acknowledge: {exc.message}") from exc
        fb_id = await node.send([sender], "feedback", body, 3 * 86400)
        await db(store.inbox_mark_acked, row["sender"], msg_id, req.action, time.time(), fb_id)
        return _json(
            {"id": msg_id.hex(), "feedback_id": fb_id.hex(), "to": sender, "action": req.action}
        )

    async def audit_checkpoint(_r: web.Request) -> web.Response:
        await node.checkpoint(force=True)
        return web.Response(text=await db(store.cosigned_note), content_type="text/plain")

    async def witness_now(_r: web.Request) -> web.Response:
        await node.witness.round()
        return _json(node.witness.last)

    app.router.add_post("/v1/audit/checkpoint", audit_checkpoint)
    app.router.add_post("/v1/audit/witness", witness_now)
    app.router.add_get("/v1/status", status)
    app.router.add_post("/v1/send", send)
    app.router.add_get("/v1/outbox", outbox)
    app.router.add_get("/v1/inbox", inbox)
    app.router.add_get("/v1/inbox/{id}", inbox_show)
    app.router.add_post("/v1/inbox/{id}/ack", inbox_ack)
    return app


def _inbox_view(row: dict[str, Any], peer_names: dict[bytes, str]) -> dict[str, Any]:
    return {
        "id": row["id"].hex(),
        "from": peer_names.get(row["sender"], row["sender"].hex()),
        "type": row["type"],
        "created": row["created"],
        "expires": row["expires"],
        "received_at": row["received_at"],
        "refers_to": row["refers_to"].hex() if row["refers_to"] else None,
        "read": row["read_at"] is not None,
        "acked": row["ack_action"],
        "withdrawn_by": row["withdrawn_by"].hex() if row["withdrawn_by"] else None,
    }
