"""A small synchronous client for the node's admin API over its Unix socket.

The standard library's http.client is enough for a handful of local JSON calls and costs no import
time; an error the node reports comes back as the same BorderlinkError subclass and exit code.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from protocol import errors
from protocol.errors import BorderlinkError, NodeUnreachable

if TYPE_CHECKING:
    import msgspec

    from node.operations import Operation

    Req = TypeVar("Req", bound=msgspec.Struct)
    Res = TypeVar("Res", bound=msgspec.Struct)

OPS_PATH = "/v1/ops/"  # node/http/operations.py
OPS_TIMEOUT = 120.0  # verifying or exporting a long log is O(n) in the node


class NodeNotRunning(NodeUnreachable):
    """Nothing listens on the admin socket: the CLI may do the work itself (node/local.py)."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


def _exchange(
    socket_path: Path, method: str, path: str, payload: bytes | None, timeout: float
) -> tuple[int, bytes]:
    conn = _UnixConnection(socket_path, timeout)
    try:
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise NodeNotRunning(f"the node in {socket_path.parent} is not running") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise NodeUnreachable(f"cannot talk to the node in {socket_path.parent}: {exc}") from exc
    finally:
        conn.close()


def _error(data: bytes) -> BorderlinkError:
    try:
        result = json.loads(data) if data else None
    except ValueError:
        return BorderlinkError("the node sent an answer that is not JSON")
    return _rebuild(result if isinstance(result, dict) else {})


def call(
    socket_path: Path,
    method: str,
    path: str,
    body: Any = None,
    *,
    timeout: float = 30.0,
    text: bool = False,
    encoded: bytes | None = None,
) -> Any:
    """One admin request. The answer is JSON, or with ``text`` the body as text; errors are
    always JSON and come back as the node's BorderlinkError. ``encoded`` is a request body
    already encoded as JSON (a batch of bodies read as bytes), sent instead of ``body``."""
    payload = (
        encoded if encoded is not None else None if body is None else json.dumps(body).encode()
    )
    status, data = _exchange(socket_path, method, path, payload, timeout)
    if status >= 400:
        raise _error(data)
    if text:
        return data.decode()
    try:
        return json.loads(data) if data else None
    except ValueError as exc:
        raise BorderlinkError("the node sent an answer that is not JSON") from exc


def operation(
    socket_path: Path, op: Operation[Req, Res], request: Req, *, timeout: float = OPS_TIMEOUT
) -> Res:
    """Run ``op`` in the node (node/operations.py); NodeNotRunning if no node listens."""
    import msgspec

    if not socket_path.exists():  # also a path too long for a socket: no node could bind it
        raise NodeNotRunning(f"the node in {socket_path.parent} is not running")
    payload = msgspec.json.encode(request)
    status, data = _exchange(socket_path, "POST", OPS_PATH + op.name, payload, timeout)
    if status >= 400:
        raise _error(data)
    return op.decode_result(data)


def _rebuild(err: dict[str, Any]) -> BorderlinkError:
    cls = getattr(errors, str(err.get("error", "")), None)
    message = str(err.get("message") or "the node refused the request")
    hint = err.get("hint")
    exc = BorderlinkError(message, hint=hint)
    if isinstance(cls, type) and issubclass(cls, BorderlinkError):
        exc = BorderlinkError.__new__(cls)
        BorderlinkError.__init__(exc, message, hint=hint)
    if "exit_code" in err and type(exc).exit_code != err["exit_code"]:
        exc.exit_code = int(err["exit_code"])
    if isinstance(err.get("reason"), str) and isinstance(exc, errors.Rejected):
        exc.reason = err["reason"]
    return exc
