"""Admin routes for the CLI's operations (node/operations.py): ``POST /v1/ops/{name}``, a JSON
request in, a JSON result out.

Mounted on the admin app, whose error middleware answers a BorderlinkError as
``{"error", "message", "hint", "exit_code"}`` so the CLI raises the same error with the same exit
code as when it runs the operation itself. Translates HTTP only; the operation does the rest.
"""

from __future__ import annotations

from aiohttp import web

from node.directory_ops import DIRECTORY_OPERATIONS
from node.operations import OPERATIONS, OperationDeps
from protocol.errors import NodeError
from protocol.text import shown

OPS_PATH = "/v1/ops/{name}"


def add_operation_routes(app: web.Application, deps: OperationDeps) -> None:
    async def operation(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        op = OPERATIONS.get(name) or DIRECTORY_OPERATIONS.get(name)
        if op is None:
            raise NodeError(
                f"this node does not know the operation {shown(name)}",
                hint="the node may run an older borderlink than the CLI: restart it",
            )
        answer = await op.answer(deps, await request.read())
        return web.Response(body=answer, content_type="application/json")

    app.router.add_post(OPS_PATH, operation)
