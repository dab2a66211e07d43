"""A small synchronous client for the node's admin API over its Unix socket.

One request per connection, HTTP/1.1 with ``Connection: close``, written and read here over a
plain AF_UNIX socket: the admin socket is local and has no TLS, and ``http.client`` would bring in
``ssl`` and the ``email`` parser, a third of the start-up time of ``borderlink status`` (issue 12).
An error the node reports comes back as the same BorderlinkError subclass and exit code.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from protocol import errors
from protocol.errors import BorderlinkError, NodeUnreachable

if TYPE_CHECKING:
    import msgspec

    from node.operations import Operation

    Req = TypeVar("Req", bound=msgspec.Struct)
    Res = TypeVar("Res", bound=msgspec.Struct)

OPS_PATH = "/v1/ops/"  # node/http/operations.py
OPS_TIMEOUT = 120.0  # verifying or exporting a long log is O(n) in the node
MAX_LINE = 65536  # a status or header line longer than this is not the node's
MAX_HEADERS = 100


class NodeNotRunning(NodeUnreachable):
    """Nothing listens on the admin socket: the CLI may do the work itself (node/local.py)."""


class _BadAnswer(Exception):
    """The bytes on the socket are not an HTTP answer (said in NodeUnreachable's words)."""


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise _BadAnswer("the node's answer has a line too long for HTTP")
    if not line.endswith(b"\n"):
        raise _BadAnswer("the node closed the connection in the middle of its answer")
    return line.rstrip(b"\r\n")


def _exact(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if len(data) < size:
        raise _BadAnswer("the node closed the connection in the middle of its answer")
    return data


def _chunked(reader: BinaryIO) -> bytes:
    body = bytearray()
    while True:
        size_text = _line(reader).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadAnswer("the node's answer is not HTTP (a bad chunk size)") from None
        if size == 0:
            while _line(reader):  # trailer fields, if any, up to the empty line
                pass
            return bytes(body)
        body += _exact(reader, size)
        if _exact(reader, 2) != b"\r\n":
            raise _BadAnswer("the node's answer is not HTTP (a chunk does not end its line)")


def _answer(reader: BinaryIO, method: str) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.x answer (RFC 9112 6.3: how long its body is)."""
    first = reader.readline(MAX_LINE + 1)
    if not first:
        raise _BadAnswer("the node closed the connection without answering")
    version, _, rest = first.rstrip(b"\r\n").partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise _BadAnswer("the node's answer is not HTTP")
    status = int(code)
    headers: dict[bytes, bytes] = {}
    for _ in range(MAX_HEADERS + 1):
        line = _line(reader)
        if not line:
            break
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    else:
        raise _BadAnswer("the node's answer has too many header fields")
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, b""
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        return status, _chunked(reader)
    length = headers.get(b"content-length")
    if length is None:
        return status, reader.read()  # delimited by the close
    if not length.isdigit():
        raise _BadAnswer("the node's answer is not HTTP (a bad Content-Length)")
    return status, _exact(reader, int(length))


def exchange(
    socket_path: Path, method: str, path: str, payload: bytes | None, timeout: float
) -> tuple[int, bytes]:
    """One request on a new connection to the admin socket: the answer's status and body.

    NodeNotRunning if nothing listens there, NodeUnreachable if the exchange fails."""
    body = payload or b""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(str(socket_path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NodeNotRunning(f"the node in {socket_path.parent} is not running") from exc
        sock.sendall(head.encode("ascii") + body)
        with sock.makefile("rb") as reader:
            return _answer(reader, method)
    except (OSError, _BadAnswer) as exc:
        raise NodeUnreachable(f"cannot talk to the node in {socket_path.parent}: {exc}") from exc
    finally:
        sock.close()


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
    status, data = exchange(socket_path, method, path, payload, timeout)
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
    status, data = exchange(socket_path, "POST", OPS_PATH + op.name, payload, timeout)
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
