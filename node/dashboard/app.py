"""The dashboard's HTTP app: the page, its JSON and live events, and /metrics, on a local listener.

Routes translate HTTP only; the view is node/flow_view.py's, the metrics node/dashboard/metrics.py.
Served on ``[dashboard] listen`` (127.0.0.1 by default), never on the peer port. A request whose
Host is not the address the listener is bound to is refused (a web page elsewhere cannot reach it
by DNS rebinding). Every answer, aiohttp's own errors included, forbids framing, sniffing,
referrers, caching and any script or style not served from here: the headers are set as each
answer is prepared, since a raised answer skips whatever a middleware does after the handler.

Who gets in (node/dashboard/sessions.py says why there is no cookie): the page and its static
files are public and hold nothing; the page trades the login link's one-time token (POST
/api/login) for a session key, and every /api route wants that key as ``Authorization: Bearer``.
Nothing the browser sends by itself (a cookie, HTTP auth) is ever a credential here, so another
site or another local server cannot act as the operator, and sign-out needs no CSRF token.
/metrics takes the metrics bearer token, or a session key.

Live: GET /api/events is a server-sent event stream. It sends ``flow`` for each event stored
after the one the page last saw (``Last-Event-ID`` or ``?after=``), checked ten times a second,
and ``view`` (the whole view, filtered as asked) every second, so a page never reloads. The page
reads it with fetch() and parses the events itself rather than with EventSource: EventSource
cannot send an Authorization header, and the alternative, the key in the stream's query string,
would put the credential in a URL (access logs, the browser's network history, error reports).
With fetch the page also sends ``Last-Event-ID`` itself when it resumes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from aiohttp import web

from node.dashboard.metrics import CONTENT_TYPE, render
from node.dashboard.sessions import Sessions, bearer, same
from node.flow_view import HOUR, Filters, FlowView
from node.runtime import Run
from node.storage import Store

STATIC = Path(__file__).parent / "static"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
POLL = 0.1  # seconds between checks for new events
MAX_STREAMS = 16  # live dashboards at once; each costs ten small reads a second
STREAMS_PER_SESSION = 4  # of those, one session key's (a page holds one; a reload briefly two)
WRITE_TIMEOUT = 10.0  # seconds a stream's write may wait for a reader that stopped reading
VIEW_EVERY = 10  # polls between full views (a view reads the last hour: once a second)
WINDOWS = {"1m": 60.0, "10m": 600.0, "1h": HOUR, "24h": 24 * HOUR}
_STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",  # a page that opened this one gets no handle
    "Cross-Origin-Resource-Policy": "same-origin",  # nor may another origin embed an answer
}
_ENC = msgspec.json.Encoder()
MAX_LOGIN_BODY = 1024


@dataclass(frozen=True, kw_only=True)
class DashboardDeps:
    view: FlowView
    sessions: Sessions
    metrics_token: str
    store: Store
    run_db: Run
    ingested: Callable[[], int]
    stopping: Callable[[], bool]
    hosts: Callable[[], set[str]]  # the Host values that name this listener
    # Connections serving a signed-in live stream: the listener never closes them to make room
    # for a new connection (any local process could otherwise keep the operator's page
    # disconnected by opening connections: second attack review).
    streaming: set[object] = field(default_factory=set)


def filters_of(query: Mapping[str, str]) -> Filters:
    """The page's filters from a query string; unknown values are ignored, not errors."""

    def text(name: str) -> str:
        value = query.get(name, "") or ""
        return value[:64] if value.isprintable() else ""

    return Filters(
        country=text("country"),
        unit=text("unit"),
        type=text("type"),
        priority=text("priority") if text("priority") in ("routine", "urgent", "flash") else "",
        window=WINDOWS.get(text("window"), HOUR),
    )


class LoginBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    token: str


_LOGIN = msgspec.json.Decoder(LoginBody)


def error(
    status: int, reason: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The project's one-line error: ``{"error": reason, "message": text}``."""
    return web.Response(
        status=status,
        body=_ENC.encode({"error": reason, "message": message}),
        content_type="application/json",
        headers=headers,
    )


def _from_aiohttp(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusal (no route, wrong method, body too large) in our words and shape."""
    reason, message = {
        404: ("not_found", "no such page on this dashboard"),
        405: ("method_not_allowed", f"{request.method} is not allowed here"),
        413: ("oversize", "the request body is too large"),
    }.get(exc.status, ("refused", exc.reason))
    kept = {k: exc.headers[k] for k in ("Allow", "Retry-After") if k in exc.headers}
    return error(exc.status, reason, message, kept)


def make_dashboard_app(deps: DashboardDeps) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.host not in deps.hosts():
            return error(421, "misdirected", "this dashboard answers on its own address only")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _from_aiohttp(request, exc)

    async def secure(_request: web.Request, response: web.StreamResponse) -> None:
        for k, v in HEADERS.items():
            response.headers[k] = v
        response.headers["Server"] = "borderlink"  # not aiohttp's and Python's versions

    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app.on_response_prepare.append(secure)

    def signed_in(request: web.Request) -> bool:
        return deps.sessions.valid(bearer(request.headers))

    def refused() -> web.Response:
        return error(
            401,
            "unauthenticated",
            "Not signed in. Run 'borderlink dashboard' on the node's host and open the link it "
            "prints (each link works once).",
            {"WWW-Authenticate": 'Bearer realm="borderlink dashboard"'},
        )

    async def login(request: web.Request) -> web.Response:
        declared = request.content_length
        if declared is not None and declared > MAX_LOGIN_BODY:
            return error(413, "oversize", f"a login is under {MAX_LOGIN_BODY} bytes")
        try:
            body = _LOGIN.decode(await request.read())
        except msgspec.DecodeError:
            return error(400, "malformed", 'a login is the JSON {"token": "..."}')
        session = deps.sessions.log_in(body.token)
        if session is None:
            return error(
                403,
                "login_refused",
                "This login link was used already or has expired. Run 'borderlink dashboard' "
                "again for a new one.",
            )
        return web.Response(body=_ENC.encode({"session": session}), content_type="application/json")

    async def logout(request: web.Request) -> web.Response:
        if not deps.sessions.log_out(bearer(request.headers)):
            return refused()
        return web.Response(
            body=_ENC.encode({"status": "signed out"}), content_type="application/json"
        )

    async def page(_request: web.Request) -> web.StreamResponse:
        return _static("index.html")

    async def static(request: web.Request) -> web.StreamResponse:
        return _static(request.match_info["name"])

    async def api_view(request: web.Request) -> web.Response:
        if not signed_in(request):
            return refused()
        view = await deps.view.view(filters_of(request.query))
        return web.Response(body=_ENC.encode(view), content_type="application/json")

    streams = 0
    per_key: Counter[str] = Counter()  # live streams per session key

    async def api_events(request: web.Request) -> web.StreamResponse:
        nonlocal streams
        if not signed_in(request):
            return refused()
        key = bearer(request.headers) or ""
        if per_key[key] >= STREAMS_PER_SESSION:  # one key cannot take every place
            return error(
                429,
                "rate_limited",
                f"this session has {STREAMS_PER_SESSION} live streams open already; close one",
                {"Retry-After": "10"},
            )
        if streams >= MAX_STREAMS:
            return error(
                503,
                "unavailable",
                f"{MAX_STREAMS} dashboards are open on this node already; close one",
                {"Retry-After": "10"},
            )
        streams += 1
        per_key[key] += 1
        try:
            return await _stream(request, key)
        finally:
            streams -= 1
            per_key[key] -= 1
            if not per_key[key]:
                del per_key[key]

    async def _stream(request: web.Request, key: str) -> web.StreamResponse:
        f = filters_of(request.query)
        start = request.headers.get("Last-Event-ID") or request.query.get("after", "")
        stream = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await stream.prepare(request)
        held = request.transport
        if held is not None:
            deps.streaming.add(held)
        try:
            return await _serve(request, stream, f, start, key)
        finally:
            deps.streaming.discard(held)

    async def _serve(
        request: web.Request, stream: web.StreamResponse, f: Filters, start: str, key: str
    ) -> web.StreamResponse:
        async def send(data: bytes) -> bool:
            """Write, or end a stream whose reader stopped reading (its buffers full): it would
            hold its place for ever."""
            try:
                async with asyncio.timeout(WRITE_TIMEOUT):
                    await stream.write(data)
            except TimeoutError:
                if request.transport is not None:
                    request.transport.abort()
                return False
            except ConnectionError:  # the page went away between two writes: no traceback
                return False
            return True

        view = await deps.view.view(f)
        # An event id is a rowid: at most 18 digits (a longer one overflowed SQLite's integer
        # and ended the stream with a traceback: attack review); anything else starts from now.
        fits = start.isascii() and start.isdigit() and len(start) <= 18
        after = int(start) if fits else view.last_rid
        if not await send(b"event: view\ndata: " + _ENC.encode(view) + b"\n\n"):
            return stream
        polls = 0
        while not deps.stopping() and deps.sessions.valid(key):  # sign-out ends its streams
            await asyncio.sleep(POLL)
            polls += 1
            events, after = await deps.view.events_after(after, f)
            for e in events:
                data = _ENC.encode(e)
                if not await send(b"id: %d\nevent: flow\ndata: %s\n\n" % (e.rid, data)):
                    return stream
            if polls % VIEW_EVERY == 0:
                view = await deps.view.view(f)
                if not await send(b"event: view\ndata: " + _ENC.encode(view) + b"\n\n"):
                    return stream
        return stream

    async def metrics(request: web.Request) -> web.Response:
        token = bearer(request.headers)
        if not (same(token, deps.metrics_token) or deps.sessions.valid(token)):
            return error(
                401,
                "unauthenticated",
                "/metrics needs 'Authorization: Bearer' with the token in HOME/metrics.token",
                {"WWW-Authenticate": 'Bearer realm="borderlink"'},
            )
        snap = await deps.run_db(deps.view.snapshot)
        body = await deps.run_db(render, deps.store, snap, deps.ingested())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/view", api_view)
    app.router.add_get("/api/events", api_events)
    app.router.add_get("/metrics", metrics)
    return app


def _static(name: str) -> web.StreamResponse:
    path = STATIC / name
    kind = _STATIC_TYPES.get(path.suffix)
    if kind is None or path.parent != STATIC or not path.is_file():
        return error(404, "not_found", "no such page on this dashboard")
    return web.Response(body=path.read_bytes(), content_type=kind, charset="utf-8")
