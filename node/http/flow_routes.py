"""The admin API's flow routes: what ``borderlink dashboard`` and ``borderlink monitor`` ask.

POST /v1/dashboard answers the dashboard's login URL (a fresh one-time token) and its metrics URL;
GET /v1/flow/view the view (filtered by the same query as the page's); GET /v1/flow/events the
events stored after ``after`` (the monitor polls it). Routes translate HTTP only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from aiohttp import web

from node.dashboard.app import filters_of
from node.dashboard.sessions import Sessions
from node.flow_view import FeedEvent, FlowView
from node.http.responses import json_response
from protocol.errors import NodeError, UsageError
from protocol.text import shown


class DashboardLinks(msgspec.Struct, frozen=True):
    url: str  # the page, its one-time token in the fragment (never sent: dashboard/sessions.py)
    metrics_url: str
    metrics_token_file: str


class Events(msgspec.Struct, frozen=True):
    events: list[FeedEvent]
    next: int  # the rid to ask after next time


@dataclass(frozen=True, kw_only=True)
class FlowDeps:
    view: FlowView
    sessions: Sessions
    base_url: Callable[[], str | None]  # http://HOST:PORT of the dashboard, None if off
    metrics_token_file: str


def add_flow_routes(app: web.Application, deps: FlowDeps) -> None:
    async def dashboard(_r: web.Request) -> web.Response:
        base = deps.base_url()
        if base is None:
            raise NodeError(
                'the dashboard is off on this node ([dashboard] listen = "off")',
                hint='set [dashboard] listen = "127.0.0.1:0" in config.toml and restart',
            )
        token = deps.sessions.login_token()
        return json_response(
            DashboardLinks(
                url=f"{base}/#login={token}",
                metrics_url=f"{base}/metrics",
                metrics_token_file=deps.metrics_token_file,
            )
        )

    async def view(r: web.Request) -> web.Response:
        return json_response(await deps.view.view(filters_of(r.query)))

    async def events(r: web.Request) -> web.Response:
        text = r.query.get("after", "0")
        if not (text.isascii() and text.isdigit()):
            raise UsageError(f"after must be a whole number, not {shown(text)}")
        items, nxt = await deps.view.events_after(int(text), filters_of(r.query))
        return json_response(Events(items, nxt))

    app.router.add_post("/v1/dashboard", dashboard)
    app.router.add_get("/v1/flow/view", view)
    app.router.add_get("/v1/flow/events", events)
