"""How both APIs answer: JSON bodies, the peer API's error answers with their HTTP status per
wire reason (PROTOCOL.md 11.5, declared in docs/peer-api.openapi.yaml), and the admin API's error
middleware that lets the CLI print the same line and exit code as if the error happened locally.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
import structlog
from aiohttp import web

from protocol.errors import BorderlinkError, UsageError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTTP_STATUS = {
    "malformed": 400,
    "too_many_recipients": 400,
    "clock_skew": 422,
    "not_recipient": 403,
    "unknown_sender": 403,
    "oversize": 413,
    "expired": 422,
    "decryption_failed": 422,
    "bad_signature": 422,
    "replay": 409,
    "rate_limited": 429,
    "body_timeout": 408,
    "unavailable": 503,
    "unauthenticated": 401,  # no client certificate of a trusted peer on the TLS channel
    "channel_mismatch": 403,  # an envelope signed by another peer than the channel proves
    "quota_exceeded": 507,  # the sender's share of this node's inbox storage is used up
    "foreign_reference": 403,  # feedback about a message that was not sent to its sender
    # key statements (PROTOCOL.md 13.6)
    "retired_key": 403,  # signed with a replaced key after its overlap, or a revoked one
    "sequence_skipped": 409,
    "sequence_reused": 409,
    "sequence_older": 409,
    "not_a_rotation": 409,
    "not_later": 409,
    "unknown_node": 404,
    "unknown_key": 404,
    "revoked": 410,
    "not_found": 404,  # GET /v1/directory on a node that publishes none
    "not_a_coordinator": 403,  # a flow report to a node that is no coordinator (PROTOCOL.md 14)
}

# Decryption and signature failures are opaque to peers: details go to the local log only.
GENERIC = {
    "decryption_failed": "the envelope could not be decrypted",
    "bad_signature": "the signature could not be verified, or its date is out of bounds",
    "unknown_sender": "the sender is not a trusted peer of this node",
}


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data), status=status, content_type="application/json"
    )


def peer_error(reason: str, message: str = "") -> web.Response:
    """``{"error": reason, "message": text}`` with the status the reason maps to."""
    body = msgspec.json.encode({"error": reason, "message": GENERIC.get(reason, message)})
    return web.Response(
        status=HTTP_STATUS.get(reason, 400), body=body, content_type="application/json"
    )


@web.middleware
async def admin_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``{"error": class, "message", "hint", "exit_code"}``; a bug is logged whole, said in one line."""
    try:
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge as exc:  # read() over the app's client_max_size
            bound = request.client_max_size
            raise UsageError(
                f"the request is over the admin API's bound of {bound:,} bytes",
                hint="send less at once: 'borderlink send' takes several files or JSON lines",
            ) from exc
    except BorderlinkError as exc:
        return json_response(
            {
                "error": type(exc).__name__,
                "message": exc.message,
                "hint": exc.hint,
                "exit_code": exc.exit_code,
                "reason": getattr(exc, "reason", None),
            },
            status=400,
        )
    except web.HTTPException:
        raise
    except Exception as exc:
        structlog.get_logger("borderlink.admin").exception("admin.error", path=request.path)
        return json_response(
            {
                "error": "NodeError",
                "message": f"internal error in the node: {exc}",
                "hint": "see the node's log",
                "exit_code": 3,
            },
            status=500,
        )
