"""The dashboard's HTTP app: the page, its JSON and live events, and /metrics, on a local listener.

Routes translate HTTP only; the view is node/flow_view.py's, the metrics node/dashboard/metrics.py.
Served on ``[dashboard] listen`` (127.0.0.1 by default), never on the peer port. Every route but
/login and the static files needs a session (node/dashboard/sessions.py); /metrics takes the
metrics bearer token instead. A request whose Host is not the address the listener is bound to is
refused (a web page elsewhere cannot reach it by DNS rebinding), and every answer forbids framing,
sniffing, referrers and any script or style not served from here.

Live: GET /api/events is a server-sent event stream. It sends ``flow`` for each event stored
after the one the page last saw (``Last-Event-ID`` or ``?after=``), checked ten times a second,
and ``view`` (the whole view, filtered as asked) every second, so a page never reloads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec
from aiohttp import web

from node.dashboard.metrics import CONTENT_TYPE, render
from node.dashboard.sessions import COOKIE, SESSION_TTL, Sessions, same
from node.flow_view import HOUR, Filters, FlowView
from node.runtime import Run
from node.storage import Store

STATIC = Path(__file__).parent / "static"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
POLL = 0.1  # seconds between checks for new events
MAX_STREAMS = 16  # live dashboards at once; each costs ten small reads a second
VIEW_EVERY = 10  # polls between full views (a view reads the last hour: once a second)
WINDOWS = {"1m": 60.0, "10m": 600.0, "1h": HOUR, "24h": 24 * HOUR}
_STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_ENC = msgspec.json.Encoder()


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


def make_dashboard_app(deps: DashboardDeps) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.host not in deps.hosts():
            return web.Response(status=421, text="this dashboard answers on its own address only")
        response = await handler(request)
        for k, v in HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)

    def signed_in(request: web.Request) -> bool:
        return deps.sessions.valid(request.cookies.get(COOKIE))

    def refused() -> web.Response:
        return web.Response(
            status=401,
            text="Not signed in. Run 'borderlink dashboard' on the node's host and open the "
            "link it prints (each link works once).\n",
            content_type="text/plain",
        )

    async def login(request: web.Request) -> web.Response:
        session = deps.sessions.log_in(request.query.get("token", ""))
        if session is None:
            return web.Response(
                status=403,
                text="This login link was used already or has expired. Run 'borderlink "
                "dashboard' again for a new one.\n",
                content_type="text/plain",
            )
        response = web.HTTPSeeOther("/")
        response.set_cookie(
            COOKIE,
            session,
            max_age=int(SESSION_TTL),
            httponly=True,
            samesite="Strict",
            path="/",
        )
        raise response

    async def logout(request: web.Request) -> web.Response:
        deps.sessions.log_out(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def page(request: web.Request) -> web.StreamResponse:
        if not signed_in(request):
            return refused()
        return _static("index.html")

    async def static(request: web.Request) -> web.StreamResponse:
        return _static(request.match_info["name"])

    async def api_view(request: web.Request) -> web.Response:
        if not signed_in(request):
            return refused()
        view = await deps.view.view(filters_of(request.query))
        return web.Response(body=_ENC.encode(view), content_type="application/json")

    streams = 0

    async def api_events(request: web.Request) -> web.StreamResponse:
        nonlocal streams
        if not signed_in(request):
            return refused()
        if streams >= MAX_STREAMS:
            return web.Response(
                status=503,
                text=f"{MAX_STREAMS} dashboards are open on this node already; close one\n",
                headers={"Retry-After": "10"},
            )
        streams += 1
        try:
            return await _stream(request)
        finally:
            streams -= 1

    async def _stream(request: web.Request) -> web.StreamResponse:
        f = filters_of(request.query)
        start = request.headers.get("Last-Event-ID") or request.query.get("after", "")
        stream = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no", **HEADERS}
        )
        await stream.prepare(request)
        view = await deps.view.view(f)
        after = int(start) if start.isascii() and start.isdigit() else view.last_rid
        await stream.write(b"event: view\ndata: " + _ENC.encode(view) + b"\n\n")
        polls = 0
        while not deps.stopping():
            await asyncio.sleep(POLL)
            polls += 1
            events, after = await deps.view.events_after(after, f)
            for e in events:
                data = _ENC.encode(e)
                await stream.write(b"id: %d\nevent: flow\ndata: %s\n\n" % (e.rid, data))
            if polls % VIEW_EVERY == 0:
                view = await deps.view.view(f)
                await stream.write(b"event: view\ndata: " + _ENC.encode(view) + b"\n\n")
        return stream

    async def metrics(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        if not (same(token, deps.metrics_token) or signed_in(request)):
            return web.Response(
                status=401,
                text="/metrics needs 'Authorization: Bearer' with the token in HOME/metrics.token\n",
                headers={"WWW-Authenticate": 'Bearer realm="borderlink"'},
            )
        snap = await deps.run_db(deps.view.snapshot)
        body = await deps.run_db(render, deps.store, snap, deps.ingested())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/", page)
    app.router.add_get("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/view", api_view)
    app.router.add_get("/api/events", api_events)
    app.router.add_get("/metrics", metrics)
    return app


def _static(name: str) -> web.StreamResponse:
    path = STATIC / name
    kind = _STATIC_TYPES.get(path.suffix)
    if kind is None or path.parent != STATIC or not path.is_file():
        return web.Response(status=404, text="not found\n")
    return web.Response(body=path.read_bytes(), content_type=kind, charset="utf-8")
