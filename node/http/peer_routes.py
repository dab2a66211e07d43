"""The peer API's routes (PROTOCOL.md 11): envelopes in, receipts out; this node's card; health;
the audit log's checkpoint, consistency proofs and cosignatures for witnesses (12.3).

Who calls is what the TLS channel proves (node/admission.py), never a header. Anonymous callers
get the card and the health checks; everything else answers them 401 ``unauthenticated`` before
reading the body, and costs no decoding, no cryptography and no storage write (their refusals are
logged, sampled, and never audited: the audit log records what peers did). For a peer, cheap
refusals still come first: over its rate or with too many requests in progress, 429 before its
body is read; a declared or actual body over the limit, 413 while reading; a body that trickles in
slower than ``body_timeout``, 408. Only then is MessagePack decoded (off the event loop, after its
array header) and cryptography run. Errors are JSON ``{"error": reason, "message": text}``.
Routes translate HTTP only: the services behind :class:`PeerDeps` hold the logic.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web

from keys.statements import MAX_STATEMENT_BYTES
from node.admission import Admission, Caller
from node.config import Limits
from node.cosigning import MAX_COSIGNATURE_BODY, Cosigning, Refused
from node.flow_ingest import FlowIngest
from node.http.bodies import read_limited
from node.http.directory_routes import add_directory_route
from node.http.responses import peer_error
from node.peer_client import FLOW_PATH, KEYS_PATH
from node.ratelimit import Sampler, sampled
from node.receiver import Receiver
from node.rejections import Rejections
from node.runtime import Run
from node.tls import presented_certificate
from protocol.batch import (
    BATCH_CONTENT_TYPE,
    BATCH_PATH,
    array_length,
    decode_batch,
    encode_response,
)
from protocol.errors import Rejected, StatementRefused
from protocol.labels import MAX_FLOW_REPORT_BYTES
from protocol.text import escaped

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_FLOW_BODY = MAX_FLOW_REPORT_BYTES + 128  # a sealed report's outer array and ids
CALLER = web.RequestKey("caller", Caller)  # set by who_calls on every request
# A tree size in a query, spelled as in a checkpoint (AUDIT-FORMATS.md 3): ASCII digits, no
# leading zero, at most as many as 2^63 - 1 has. Not int(): it also takes signs, spaces,
# underscores and other scripts' digits, none of them an integer to the document
# (docs/peer-api.openapi.json) that other implementations follow.
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")


def size_param(request: web.Request, name: str) -> int | None:
    """The query parameter ``name`` as a size, or None if it is missing, repeated or not one."""
    values = request.query.getall(name, [])
    if len(values) != 1 or not _SIZE.fullmatch(values[0]):
        return None
    return int(values[0])


@dataclass(frozen=True, kw_only=True)
class PeerDeps:
    limits: Limits
    card_text: Callable[[], str]  # this node's card now (it changes when the keys rotate)
    home_root: Path  # where a coordinator keeps the directory it publishes
    key_statement: Callable[[str, str], Awaitable[tuple[str, bytes]]]  # text, source -> answer
    receiver: Receiver
    rejections: Rejections
    admission: Admission
    cosigning: Cosigning
    flow: FlowIngest  # flow reports from units, on a coordinator (PROTOCOL.md 14.3)
    run_cpu: Run  # decoding a batch, off the event loop
    checkpoint: Callable[[], Awaitable[str]]  # the latest note with cosignatures, signing if none
    stopping: Callable[[], bool]
    ready: Callable[[], bool]
    log: structlog.typing.FilteringBoundLogger


def make_peer_app(deps: PeerDeps) -> web.Application:
    limits = deps.limits
    rate_limited = 0  # batches refused over their rate, since start
    anonymous = Sampler()  # refusals of anonymous callers, per address: logged on 1, 2, 4...

    def caller_of(request: web.Request) -> Caller:
        return request[CALLER]

    async def audit(reason: str, detail: str, request: web.Request) -> None:
        """Refusals of a peer before decoding: every one logged, the audit log sampled per peer
        and reason (PROTOCOL.md 12.1)."""
        caller = caller_of(request)
        deps.log.warning(
            "message.rejected", reason=reason, detail=detail, peer=caller.who, source=request.remote
        )
        await deps.rejections.refused(
            reason,
            detail,
            source=request.remote,
            claimed=caller.peer.hex() if caller.peer else None,
        )

    @web.middleware
    async def who_calls(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Attach the caller the TLS channel proves; refuse anonymous callers everything but the
        card and health, and every caller over its budget, before any route runs."""
        try:
            for value in request.headers.values():
                value.encode("utf-8")
        except UnicodeError:
            return peer_error("malformed", "a header value is not UTF-8 text")
        caller = await deps.admission.caller(
            presented_certificate(request.transport), request.remote
        )
        request[CALLER] = caller
        if request.path in ("/livez", "/readyz"):
            return await handler(request)
        if not deps.admission.allow(caller):
            return await over_rate(request)
        if request.path in ("/v1/card", KEYS_PATH):
            # A key statement carries its own signatures (PROTOCOL.md 13.5): a node whose
            # certificate just changed, or its custodian on another machine, sends it unnamed.
            return await handler(request)
        if caller.peer is None:
            n = anonymous.count(caller.source)  # per address: varying the path logs nothing more
            if sampled(n):
                deps.log.warning(
                    "request.unauthenticated",
                    path=escaped(request.path, limit=80),
                    source=caller.source,
                    count=n,
                )
            return peer_error(
                "unauthenticated",
                "this needs the TLS client certificate of a peer this node trusts",
            )
        if not deps.admission.enter(caller):
            return await over_rate(request, f"more than {limits.peer_concurrency} in progress")
        try:
            return await handler(request)
        finally:
            deps.admission.leave(caller)

    async def over_rate(request: web.Request, why: str = "") -> web.Response:
        nonlocal rate_limited
        rate_limited += 1
        caller = caller_of(request)
        if caller.peer is not None and sampled(rate_limited):  # a flood is no log flood
            await audit("rate_limited", why or f"{rate_limited} requests refused so far", request)
        return peer_error("rate_limited", "too many requests; retry later")

    async def body_or_refusal(
        request: web.Request, read: Callable[[], Awaitable[bytes | None]], limit: int
    ) -> bytes | web.Response:
        """The body, or the answer refusing it: too slow (408) or, read so far, too big (413)."""
        try:
            async with asyncio.timeout(limits.body_timeout):
                raw = await read()
        except TimeoutError:
            await audit(
                "body_timeout", f"body not received within {limits.body_timeout} s", request
            )
            return peer_error(
                "body_timeout", f"body not received within {limits.body_timeout:.0f} s"
            )
        except web.HTTPRequestEntityTooLarge:  # request.read() over client_max_size
            raw = None
        if raw is None:
            await audit("oversize", f"body over {limit} bytes", request)
            return peer_error("oversize", f"body over {limit} bytes")
        return raw

    async def post_envelopes(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > limits.max_body:
            await audit("oversize", f"declared {request.content_length} bytes", request)
            return peer_error("oversize", f"body over {limits.max_body} bytes")
        if deps.stopping():
            return peer_error("unavailable", "node is shutting down")
        body = await body_or_refusal(request, request.read, limits.max_body)
        if isinstance(body, web.Response):
            return body
        declared = array_length(body)  # the budget counts envelopes: charged before any work
        if (
            declared is not None
            and declared <= limits.max_batch
            and not deps.admission.charge(caller_of(request), declared)
        ):
            return await over_rate(request, f"a batch of {declared} envelopes over the budget")
        try:
            items = await deps.run_cpu(decode_batch, body, max_items=limits.max_batch)
        except Rejected as exc:
            await audit(exc.reason, exc.message, request)
            return peer_error(exc.reason, exc.message)
        peer = caller_of(request).peer
        assert peer is not None  # who_calls let only peers through
        resp = await deps.receiver.receive(items, source=str(request.remote), peer=peer)
        if len(resp.results) == 1 and resp.results[0].outcome == "rejected":
            return peer_error(resp.results[0].reason or "rejected")
        return web.Response(body=encode_response(resp), content_type=BATCH_CONTENT_TYPE)

    async def card(_request: web.Request) -> web.Response:
        return web.Response(text=deps.card_text(), content_type="text/plain")

    async def post_key_statement(request: web.Request) -> web.Response:
        declared = request.content_length
        if declared is not None and declared > MAX_STATEMENT_BYTES:
            return peer_error("oversize", f"body over {MAX_STATEMENT_BYTES} bytes")
        raw = await body_or_refusal(
            request,
            lambda: read_limited(request.content, None, MAX_STATEMENT_BYTES),
            MAX_STATEMENT_BYTES,
        )
        if isinstance(raw, web.Response):
            return raw
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            return peer_error("malformed", "a key statement is ASCII armored text")
        try:
            outcome, receipt = await deps.key_statement(text, str(request.remote))
        except StatementRefused as exc:
            return peer_error(exc.reason, exc.message)
        return web.json_response(
            {"outcome": outcome, "receipt": base64.b64encode(receipt).decode()}
        )

    async def post_flow_report(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_FLOW_BODY:
            await audit("oversize", f"declared {request.content_length} bytes", request)
            return peer_error("oversize", f"body over {MAX_FLOW_BODY} bytes")
        if not deps.admission.charge(caller_of(request), 1):
            return await over_rate(request, "a flow report over the budget")
        body = await body_or_refusal(
            request,
            lambda: read_limited(request.content, None, MAX_FLOW_BODY),
            MAX_FLOW_BODY,
        )
        if isinstance(body, web.Response):
            return body
        peer = caller_of(request).peer
        assert peer is not None  # who_calls let only peers through
        try:
            through = await deps.flow.take(body, peer)
        except Rejected as exc:
            await audit(exc.reason, exc.message, request)
            return peer_error(exc.reason, exc.message)
        return web.json_response({"through": through})

    async def livez(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        if deps.stopping() or not deps.ready():
            return web.json_response({"status": "unavailable"}, status=503)
        return web.json_response({"status": "ready"})

    async def audit_checkpoint(_request: web.Request) -> web.Response:
        return web.Response(text=await deps.checkpoint(), content_type="text/plain")

    async def audit_consistency(request: web.Request) -> web.Response:
        old, new = size_param(request, "old"), size_param(request, "new")
        if old is None or new is None:
            return peer_error("malformed", "give old=SIZE&new=SIZE, each once, in decimal digits")
        proof = await deps.cosigning.consistency(old, new)
        if isinstance(proof, Refused):
            return peer_error(proof.reason, proof.message)
        return web.json_response(
            {"old": old, "new": new, "proof": [base64.b64encode(h).decode() for h in proof]}
        )

    async def audit_cosignature(request: web.Request) -> web.Response:
        declared = request.content_length
        if declared is not None and declared > MAX_COSIGNATURE_BODY:
            await audit("oversize", f"declared {declared} bytes", request)
            return peer_error("oversize", f"body over {MAX_COSIGNATURE_BODY} bytes")
        raw = await body_or_refusal(
            request,
            lambda: read_limited(request.content, None, MAX_COSIGNATURE_BODY),
            MAX_COSIGNATURE_BODY,
        )
        if isinstance(raw, web.Response):
            return raw
        refusal = await deps.cosigning.accept(raw, peer=caller_of(request).peer)
        if refusal is not None:
            return peer_error(refusal.reason, refusal.message)
        return web.json_response({"status": "stored"})

    async def no_version(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = "borderlink"  # not aiohttp's and Python's versions

    app = web.Application(client_max_size=limits.max_body, middlewares=[who_calls])
    app.on_response_prepare.append(no_version)
    app.router.add_get("/v1/audit/checkpoint", audit_checkpoint)
    app.router.add_get("/v1/audit/consistency", audit_consistency)
    app.router.add_post("/v1/audit/cosignature", audit_cosignature)
    app.router.add_post(BATCH_PATH, post_envelopes)
    app.router.add_get("/v1/card", card)
    app.router.add_post(KEYS_PATH, post_key_statement)
    app.router.add_post(FLOW_PATH, post_flow_report)
    add_directory_route(app, deps.home_root)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    return app
