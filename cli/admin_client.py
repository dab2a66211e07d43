"""A small synchronous client for the node's admin API over its Unix socket.

The standard library's http.client is enough for a handful of local JSON calls and costs no import
time; an error the node reports comes back as the same BorderlinkError subclass and exit code.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

from protocol import errors
from protocol.errors import BorderlinkError, NodeUnreachable


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


def call(
    socket_path: Path,
    method: str,
    path: str,
    body: Any = None,
    *,
    timeout: float = 30.0,
    text: bool = False,
) -> Any:
    """One admin request. The answer is JSON, or with ``text`` the body as text; errors are
    always JSON and come back as the node's BorderlinkError."""
    conn = _UnixConnection(socket_path, timeout)
    payload = None if body is None else json.dumps(body).encode()
    try:
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise NodeUnreachable(f"the node in {socket_path.parent} is not running") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise NodeUnreachable(f"cannot talk to the node in {socket_path.parent}: {exc}") from exc
    finally:
        conn.close()
    if text and resp.status < 400:
        return data.decode()
    try:
        result = json.loads(data) if data else None
    except ValueError as exc:
        raise BorderlinkError("the node sent an answer that is not JSON") from exc
    if resp.status >= 400:
        raise _rebuild(result if isinstance(result, dict) else {})
    return result


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
    return exc
