"""The local admin API's routes: JSON over a Unix socket (mode 0600) in the home; the CLI's way in.

It is never bound to a network address, so only the account that owns the home can use it.
Listings (inbox, outbox) take ``limit`` and ``after`` (a cursor) and answer ``{"items", "next"}``;
the inbox also ``type``, ``from`` and ``priority`` (each repeatable but ``from``). A message id in
a path or ``id`` may be a unique prefix of at least 4 hex digits (node/message_ids.py).
``POST /v1/send`` queues one message, ``{"to", "type", "body", "ttl", "priority"}`` answered by
``{"id", "to", "status"}``; ``POST /v1/send/batch`` takes ``"bodies": [...]`` in place of
``"body"`` (at most 10,000 and 32 MiB of them: node/batches.py) and queues all of them in one
transaction or none, answered by ``{"ids": [...], "to", "status"}``, the ids in the order of the
bodies; a bad body refuses the whole batch, naming it by index: ``bodies[3].meta.tlp: ...``.
Errors are ``{"error": class, "message": text, "hint": text, "exit_code": n}``
(node/http/responses.py). Routes translate HTTP only; :class:`AdminDeps` holds the services, and
the CLI's operations (node/operations.py) are mounted from node/http/operations.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import msgspec
from aiohttp import web

from node.batches import MAX_BATCH_REQUEST_BYTES
from node.http.flow_routes import FlowDeps, add_flow_routes
from node.http.operations import add_operation_routes
from node.http.responses import admin_errors, json_response
from node.inbox import Inbox, Wanted
from node.operations import OperationDeps
from node.sending import Sender
from node.status import Status
from protocol.decoding import Decoder
from protocol.errors import UsageError, ValidationError
from protocol.text import shown

T = TypeVar("T")


class SendRequest(msgspec.Struct, forbid_unknown_fields=True):
    to: list[str]
    type: str
    body: msgspec.Raw
    ttl: int = 3 * 86400
    priority: str | None = None


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    to: list[str]
    type: str
    bodies: list[msgspec.Raw]
    ttl: int = 3 * 86400
    priority: str | None = None


class AckRequest(msgspec.Struct, forbid_unknown_fields=True):
    action: str = "controlled"
    details: str | None = None


class RetryRequest(msgspec.Struct, forbid_unknown_fields=True):
    to: str | None = None  # only the delivery to this peer


class Queued(msgspec.Struct, frozen=True):
    id: str
    to: list[str]
    status: str = "queued"


class QueuedBatch(msgspec.Struct, frozen=True):
    ids: list[str]  # in the order of the request's bodies
    to: list[str]
    status: str = "queued"


_SEND = Decoder[SendRequest](SendRequest, what="admin request")
_BATCH = Decoder[BatchRequest](BatchRequest, what="admin request")
_ACK = Decoder[AckRequest](AckRequest, what="admin request")
_RETRY = Decoder[RetryRequest](RetryRequest, what="admin request")
DEFAULT_LIMIT = 50


@dataclass(frozen=True, kw_only=True)
class AdminDeps:
    status: Status
    sender: Sender
    inbox: Inbox
    checkpoint: Callable[[], Awaitable[str]]  # sign now (forced); the note with cosignatures
    witness_round: Callable[[], Awaitable[dict[str, str]]]
    operations: OperationDeps
    flow: FlowDeps


def _request(decoder: Decoder[T], data: bytes) -> T:
    """The CLI sent something this node does not understand: a usage error, said in our words."""
    try:
        return decoder.decode(data)
    except ValidationError as exc:
        raise UsageError(f"bad admin request: {exc.message}") from exc


def _limit(query: Mapping[str, str]) -> int:
    text = query.get("limit", str(DEFAULT_LIMIT))
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f"limit must be a whole number, not {shown(text)}")
    return int(text)


async def _bounded(r: web.Request, limit: int) -> bytes:
    """The request's body, refused past ``limit`` bytes: a batch may be larger than the app's
    bound for every other request, and is read against its own."""
    if r.content_length is not None and r.content_length > limit:
        raise UsageError(f"the request is {r.content_length:,} bytes; at most {limit:,} are read")
    data = bytearray()
    async for part in r.content.iter_chunked(1 << 16):
        data += part
        if len(data) > limit:
            raise UsageError(f"the request is over {limit:,} bytes; at most {limit:,} are read")
    return bytes(data)


def make_admin_app(deps: AdminDeps) -> web.Application:
    app = web.Application(middlewares=[admin_errors], client_max_size=4 * 1024 * 1024)

    async def status(_r: web.Request) -> web.Response:
        return json_response(await deps.status.report())

    async def send(r: web.Request) -> web.Response:
        req = _request(_SEND, await r.read())
        msg_id = await deps.sender.send(req.to, req.type, bytes(req.body), req.ttl, req.priority)
        return json_response(Queued(msg_id.hex(), req.to))

    async def send_batch(r: web.Request) -> web.Response:
        req = _request(_BATCH, await _bounded(r, MAX_BATCH_REQUEST_BYTES))
        bodies = [bytes(b) for b in req.bodies]
        ids = await deps.sender.send_batch(req.to, req.type, bodies, req.ttl, req.priority)
        return json_response(QueuedBatch([i.hex() for i in ids], req.to))

    async def outbox(r: web.Request) -> web.Response:
        msg_id = await deps.sender.resolve(r.query["id"]) if "id" in r.query else None
        page = await deps.sender.outbox(msg_id, limit=_limit(r.query), after=r.query.get("after"))
        return json_response(page)

    async def outbox_retry(r: web.Request) -> web.Response:
        msg_id = await deps.sender.resolve(r.match_info["id"])
        req = _request(_RETRY, await r.read() or b"{}")
        return json_response(await deps.sender.retry(msg_id, req.to))

    async def inbox(r: web.Request) -> web.Response:
        wanted = Wanted(
            types=tuple(r.query.getall("type", ())),
            sender=r.query.get("from"),
            priorities=tuple(r.query.getall("priority", ())),
        )
        page = await deps.inbox.listing(
            unread=r.query.get("unread") == "1",
            limit=_limit(r.query),
            after=r.query.get("after"),
            wanted=wanted,
        )
        return json_response(page)

    async def inbox_show(r: web.Request) -> web.Response:
        msg_id = await deps.inbox.resolve(r.match_info["id"])
        return json_response(await deps.inbox.show(msg_id, r.query.get("from")))

    async def inbox_ack(r: web.Request) -> web.Response:
        msg_id = await deps.inbox.resolve(r.match_info["id"])
        req = _request(_ACK, await r.read() or b"{}")
        return json_response(
            await deps.inbox.acknowledge(msg_id, r.query.get("from"), req.action, req.details)
        )

    async def audit_checkpoint(_r: web.Request) -> web.Response:
        return web.Response(text=await deps.checkpoint(), content_type="text/plain")

    async def witness_now(_r: web.Request) -> web.Response:
        return json_response(await deps.witness_round())

    app.router.add_post("/v1/audit/checkpoint", audit_checkpoint)
    app.router.add_post("/v1/audit/witness", witness_now)
    app.router.add_get("/v1/status", status)
    app.router.add_post("/v1/send", send)
    app.router.add_post("/v1/send/batch", send_batch)
    app.router.add_get("/v1/outbox", outbox)
    app.router.add_post("/v1/outbox/{id}/retry", outbox_retry)
    app.router.add_get("/v1/inbox", inbox)
    app.router.add_get("/v1/inbox/{id}", inbox_show)
    app.router.add_post("/v1/inbox/{id}/ack", inbox_ack)
    add_operation_routes(app, deps.operations)
    add_flow_routes(app, deps.flow)
    return app
