"""The dashboard's listener attacked over plain HTTP (no browser): who gets in, with what, and what
every answer forbids. Two real nodes (so bar-pcu has flow events of its own); the login links come
from `borderlink dashboard`.

The design under test (node/dashboard/sessions.py): no cookie. The link's one-time token is in the
URL fragment, traded once at POST /api/login for a session key that works only as
``Authorization: Bearer``. Anything a browser sends by itself (a cookie above all, which every
server on 127.0.0.1 would get whatever its port) is no credential.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.integration.harness import (
    NodeProc,
    dashboard_session,
    make_network,
    one_line_error,
    stop_all,
)
from tests.integration.waiting import wait_until

Answer = tuple[int, dict[str, str], bytes, list[tuple[str, str]]]


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeProc]]:
    nodes = make_network(tmp_path_factory.mktemp("dash"), ["bar-pcu", "belgrade-accu"])
    try:
        yield nodes
    finally:
        stop_all(nodes)


@pytest.fixture(scope="module")
def node(nodes: dict[str, NodeProc]) -> NodeProc:
    return nodes["bar-pcu"]


def _ask(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
    chunked: bool = False,
) -> Answer:
    """(status, headers by lower-case name, body, every header as sent): one request, its own
    connection, so nothing carries over between requests."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(
            method,
            path,
            body=iter([body]) if chunked and body is not None else body,
            headers=headers or {},
            encode_chunked=chunked,
        )
        r = conn.getresponse()
        raw = r.getheaders()
        return r.status, {k.lower(): v for k, v in raw}, r.read(), raw
    finally:
        conn.close()


def _login(base: str, token: str) -> Answer:
    return _ask(
        base + "/api/login",
        method="POST",
        body=json.dumps({"token": token}).encode(),
        headers={"Content-Type": "application/json"},
    )


def _link(node: NodeProc) -> tuple[str, str]:
    """(base URL, one-time token) from a fresh `borderlink dashboard` link."""
    base, _, token = node.json("dashboard")["url"].partition("/#login=")
    return base, token


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _json_error(answer: Answer, status: int, reason: str) -> None:
    code, headers, body, _ = answer
    assert code == status, (code, body)
    assert headers["content-type"].startswith("application/json")
    assert body.count(b"\n") <= 1 and body.strip().count(b"\n") == 0
    assert json.loads(body)["error"] == reason and json.loads(body)["message"]


def _send(nodes: dict[str, NodeProc], tmp: Path) -> str:
    bar = nodes["bar-pcu"]
    alert = tmp / "alert.json"
    alert.write_text(bar.cli("template", "seizure-alert").stdout)
    sent = bar.cli("send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert))
    return sent.stdout.splitlines()[0].strip()


def _stream(
    base: str, key: str, **headers: str
) -> tuple[http.client.HTTPConnection, Iterator[tuple[str, str, str | None]]]:
    """An open /api/events stream and its events as (event, data, id)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    conn.request("GET", "/api/events", headers={**_bearer(key), **headers})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type", "").startswith("text/event-stream")

    def events() -> Iterator[tuple[str, str, str | None]]:
        event, data, rid = "", "", None
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line == "":
                yield event, data, rid
                event, data, rid = "", "", None
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line.startswith("id: "):
                rid = line[4:]

    return conn, events()


def test_a_login_link_carries_its_token_in_the_fragment_and_works_once(node: NodeProc) -> None:
    links = node.json("dashboard")
    assert set(links) == {"url", "metrics_url"}  # the shape the issue asks for
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/#login=[A-Za-z0-9_-]{43}", links["url"])
    base, _, token = links["url"].partition("/#login=")
    # What a browser asks for with that link: the page, never the fragment.
    status, headers, body, _ = _ask(base + "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"/static/app.js" in body
    first = _login(base, token)
    assert first[0] == 200 and first[1]["content-type"].startswith("application/json")
    key = json.loads(first[2])["session"]
    assert len(key) >= 43 and key != token
    _json_error(_login(base, token), 403, "login_refused")  # a second use of the token
    assert b"used already or has expired" in _login(base, token)[2]
    _json_error(_login(base, "A" * 43), 403, "login_refused")  # a guess
    _json_error(_login(base, key), 403, "login_refused")  # a session key is no login token
    _json_error(_login(base, ""), 403, "login_refused")
    garbage = _ask(base + "/api/login", method="POST", body=b"token=" + token.encode())
    _json_error(garbage, 400, "malformed")
    _json_error(_ask(base + "/api/login", method="POST", body=b"x" * 2000), 413, "oversize")
    # The link of the old design (token in the query string, sent to the server) is gone.
    _json_error(_ask(base + "/login?token=" + _link(node)[1]), 404, "not_found")


def test_without_a_bearer_key_every_api_is_refused(node: NodeProc) -> None:
    base, key = dashboard_session(node)
    for method, path in (("GET", "/api/view"), ("GET", "/api/events"), ("POST", "/api/logout")):
        for headers in (
            {},
            _bearer("A" * 43),
            {"Authorization": "Bearer "},
            {"Authorization": f"Basic {key}"},
            {"Authorization": key},
            # The old session cookie, even carrying a live key: no cookie is a credential.
            {"Cookie": f"borderlink_session={key}"},
            {"Cookie": f"session={key}; borderlink={key}"},
        ):
            answer = _ask(base + path, method=method, headers=headers)
            _json_error(answer, 401, "unauthenticated")
            assert b"borderlink dashboard" in answer[2], (path, headers)
            assert answer[1]["www-authenticate"].startswith("Bearer")
        # Nor in the address, where it would end up in logs and history.
        for query in (f"?session={key}", f"?token={key}", f"?key={key}", f"?access_token={key}"):
            _json_error(_ask(base + path + query, method=method), 401, "unauthenticated")
    status, headers, body, _ = _ask(base + "/api/view", headers=_bearer(key))
    assert status == 200 and json.loads(body)["me"] == "bar-pcu"
    assert _ask(base + "/api/view", headers={"Authorization": f"bearer {key}"})[0] == 200


def test_the_live_stream_takes_the_key_as_a_bearer_and_resumes_after_last_event_id(
    nodes: dict[str, NodeProc], tmp_path: Path
) -> None:
    base, key = dashboard_session(nodes["bar-pcu"])
    msg_id = _send(nodes, tmp_path)
    conn, events = _stream(base, key, **{"Last-Event-ID": "0"})
    try:
        first = next(events)
        assert first[0] == "view" and json.loads(first[1])["me"] == "bar-pcu"
        flow = next(e for e in events if e[0] == "flow" and json.loads(e[1])["id"] == msg_id)
        assert flow[2] is not None and flow[2].isdigit()
    finally:
        conn.close()
    # Resumed after that event: it is not sent again, and later ones are.
    conn, events = _stream(base, key, **{"Last-Event-ID": flow[2]})
    try:
        later = [e for e in (next(events) for _ in range(3)) if e[0] == "flow"]
        assert all(int(e[2] or 0) > int(flow[2]) for e in later)
    finally:
        conn.close()


def test_another_host_name_is_refused(node: NodeProc) -> None:
    """DNS rebinding: a page elsewhere that resolves its own name to 127.0.0.1 sends its Host."""
    base, key = dashboard_session(node)
    answer = _ask(base + "/api/view", headers={**_bearer(key), "Host": "evil.example"})
    _json_error(answer, 421, "misdirected")
    port = urlsplit(base).port
    assert _ask(base + "/", headers={"Host": f"127.0.0.1.evil.example:{port}"})[0] == 421
    assert _ask(base + "/api/view", headers={**_bearer(key), "Host": f"localhost:{port}"})[0] == 200


def test_metrics_need_the_bearer_token_or_a_session_key(node: NodeProc) -> None:
    links = node.json("dashboard")
    token_file = node.home / "metrics.token"
    token = token_file.read_text().strip()
    assert (token_file.stat().st_mode & 0o777) == 0o600
    _json_error(_ask(links["metrics_url"]), 401, "unauthenticated")
    assert _ask(links["metrics_url"], headers=_bearer("x" * 43))[0] == 401
    status, headers, body, _ = _ask(links["metrics_url"], headers=_bearer(token))
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b"borderlink_outbox_depth" in body
    _, key = dashboard_session(node)
    assert _ask(links["metrics_url"], headers=_bearer(key))[0] == 200
    assert _ask(links["metrics_url"], headers={"Cookie": f"borderlink_session={key}"})[0] == 401
    # The metrics token opens /metrics only, not the operator's page.
    assert (
        _ask(links["metrics_url"].replace("/metrics", "/api/view"), headers=_bearer(token))[0]
        == 401
    )


def test_logging_out_kills_the_key_and_ends_its_streams(node: NodeProc) -> None:
    base, key = dashboard_session(node)
    _, other = dashboard_session(node)
    conn, events = _stream(base, key)
    try:
        assert next(events)[0] == "view"
        status, _, body, _ = _ask(base + "/api/logout", method="POST", headers=_bearer(key))
        assert status == 200 and json.loads(body) == {"status": "signed out"}
        for _ in events:  # the stream of the dead key ends by itself
            pass
    finally:
        conn.close()
    _json_error(_ask(base + "/api/view", headers=_bearer(key)), 401, "unauthenticated")
    _json_error(
        _ask(base + "/api/logout", method="POST", headers=_bearer(key)), 401, "unauthenticated"
    )
    assert _ask(base + "/metrics", headers=_bearer(key))[0] == 401
    assert _ask(base + "/api/view", headers=_bearer(other))[0] == 200  # another session lives


def test_a_cross_site_sign_out_is_no_sign_out(node: NodeProc) -> None:
    """What a form on another origin can send (no Authorization header) leaves the session be."""
    base, key = dashboard_session(node)
    port = urlsplit(base).port
    for origin in ("http://127.0.0.1:1", "null", f"http://127.0.0.1:{port}"):
        answer = _ask(
            base + "/api/logout",
            method="POST",
            body=b"",
            headers={"Origin": origin, "Content-Type": "application/x-www-form-urlencoded"},
        )
        _json_error(answer, 401, "unauthenticated")
    assert _ask(base + "/api/view", headers=_bearer(key))[0] == 200


def test_every_answer_has_the_security_headers_and_none_sets_a_cookie(node: NodeProc) -> None:
    base, key = dashboard_session(node)
    login_base, token = _link(node)
    port = urlsplit(base).port
    metrics = (node.home / "metrics.token").read_text().strip()
    big = b'{"token": "' + b"A" * 70_000 + b'"}'
    answers: dict[str, Answer] = {
        "page": _ask(base + "/"),
        "page with filters": _ask(base + "/?unit=bar-pcu&window=10m"),
        "script": _ask(base + "/static/app.js"),
        "style": _ask(base + "/static/style.css"),
        "login": _login(login_base, token),
        "login again": _login(login_base, token),
        "login malformed": _ask(base + "/api/login", method="POST", body=b"{"),
        "login oversize (declared)": _ask(base + "/api/login", method="POST", body=big),
        "login oversize (chunked)": _ask(
            base + "/api/login", method="POST", body=big, chunked=True
        ),
        "login by GET": _ask(base + "/api/login"),
        "old login link": _ask(base + "/login?token=" + "A" * 43),
        "no such static": _ask(base + "/static/nope.js"),
        "static traversal": _ask(base + "/static/..%2fapp.py"),
        "no such page": _ask(base + "/nope"),
        "page by POST": _ask(base + "/", method="POST"),
        "view by DELETE": _ask(base + "/api/view", method="DELETE", headers=_bearer(key)),
        "other host": _ask(base + "/", headers={"Host": "evil.example"}),
        "other port in Host": _ask(base + "/", headers={"Host": f"127.0.0.1:{(port or 0) + 1}"}),
        "view unauthenticated": _ask(base + "/api/view"),
        "view": _ask(base + "/api/view", headers=_bearer(key)),
        "metrics unauthenticated": _ask(base + "/metrics"),
        "metrics": _ask(base + "/metrics", headers=_bearer(metrics)),
        "logout unauthenticated": _ask(base + "/api/logout", method="POST"),
    }
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:  # the stream's headers only: the stream itself never ends
        conn.request("GET", "/api/events", headers=_bearer(key))
        r = conn.getresponse()
        every = r.getheaders()
        answers["stream"] = (r.status, {k.lower(): v for k, v in every}, b"", every)
    finally:
        conn.close()
    answers["logout"] = _ask(base + "/api/logout", method="POST", headers=_bearer(key))

    expected = {
        "page": 200,
        "page with filters": 200,
        "script": 200,
        "style": 200,
        "login": 200,
        "login again": 403,
        "login malformed": 400,
        "login oversize (declared)": 413,
        "login oversize (chunked)": 413,
        "login by GET": 405,
        "old login link": 404,
        "no such static": 404,
        "static traversal": 404,
        "no such page": 404,
        "page by POST": 405,
        "view by DELETE": 405,
        "other host": 421,
        "other port in Host": 421,
        "view unauthenticated": 401,
        "view": 200,
        "metrics unauthenticated": 401,
        "metrics": 200,
        "logout unauthenticated": 401,
        "stream": 200,
        "logout": 200,
    }
    assert {name: a[0] for name, a in answers.items()} == expected
    for name, (status, headers, body, every) in answers.items():
        csp = headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "script-src 'self'" in csp, name
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, name
        assert headers.get("x-frame-options") == "DENY", name
        assert headers.get("x-content-type-options") == "nosniff", name
        assert headers.get("referrer-policy") == "no-referrer", name
        assert headers.get("cache-control") == "no-store", name
        assert headers.get("server") == "borderlink", name  # no aiohttp or Python version
        assert not [k for k, _ in every if k.lower() == "set-cookie"], name
        assert "access-control-allow-origin" not in headers, name
        if status >= 400:
            _json_error((status, headers, body, every), status, json.loads(body)["error"])
    assert "GET" in answers["page by POST"][1]["allow"]  # a 405 still says what is allowed


def test_the_page_and_its_files_carry_nothing_secret(node: NodeProc) -> None:
    """They are served to anyone who reaches the port: the key exists only after a login."""
    base, key = dashboard_session(node)
    token = (node.home / "metrics.token").read_text().strip()
    for path in ("/", "/static/app.js", "/static/style.css"):
        body = _ask(base + path)[2]
        assert key.encode() not in body and token.encode() not in body, path


def test_dashboard_and_monitor_on_a_stopped_node_say_so_in_one_line(tmp_path: Path) -> None:
    from tests.integration.harness import cli, init_home

    init_home(tmp_path / "h", "zagreb-jaitf")
    for args in (("dashboard",), ("monitor", "--once")):
        one_line_error(cli(tmp_path / "h", *args, check=False), 3, "is not running")


def test_one_session_holds_at_most_four_live_streams(node: NodeProc) -> None:
    """A key (a stolen one, say) cannot take all 16 places: its fifth stream is refused, another
    session's is not, and a closed stream gives its place back."""
    base, key = dashboard_session(node)
    _, other = dashboard_session(node)
    held = []
    try:
        for _ in range(4):
            conn, events = _stream(base, key)
            held.append(conn)
            assert next(events)[0] == "view"
        _json_error(_ask(base + "/api/events", headers=_bearer(key)), 429, "rate_limited")
        conn, events = _stream(base, other)
        held.append(conn)
        assert next(events)[0] == "view"
        held.pop(0).close()
        wait_until(
            lambda: _ask_stream_status(base, key) == 200, "a closed stream to give its place back"
        )
    finally:
        for c in held:
            c.close()


def _ask_stream_status(base: str, key: str) -> int:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("GET", "/api/events", headers=_bearer(key))
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.slow  # about 40 s: the kernel's send buffer grows to megabytes before writes wait
def test_a_stream_whose_reader_stopped_reading_gives_its_place_back(
    nodes: dict[str, NodeProc],
) -> None:
    """Four streams of one session that ask for the whole history and never read (their
    buffers fill) held their places for ever (attack review F7): each is closed once a write has
    waited WRITE_TIMEOUT, and the session can open a stream again. Run with -m slow."""
    from cli.admin_client import call

    bar = nodes["bar-pcu"]
    body = json.loads(bar.cli("template", "seizure-alert").stdout)
    for _ in range(150):  # 300 flow events or more: a history far bigger than the buffers
        call(
            bar.home / "admin.sock",
            "POST",
            "/v1/send",
            {"to": ["belgrade-accu"], "type": "seizure-alert", "body": body, "ttl": 3600},
        )
    base, key = dashboard_session(bar)
    parts = urlsplit(base)
    stalled = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connect: a tiny window
            s.connect((parts.hostname or "", parts.port or 0))
            s.sendall(
                f"GET /api/events HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer "
                f"{key}\r\nLast-Event-ID: 0\r\n\r\n".encode()
            )
            stalled.append(s)
        wait_until(lambda: _ask_stream_status(base, key) == 429, "the four streams to be held")
        wait_until(lambda: _ask_stream_status(base, key) == 200, "a stalled stream to be closed")
    finally:
        for s in stalled:
            s.close()


def test_an_event_id_too_big_for_a_rowid_starts_the_stream_from_now(
    nodes: dict[str, NodeProc],
) -> None:
    """A Last-Event-ID of 25 digits overflowed SQLite's integer: the stream ended with a
    traceback in the log (second attack review). Now it is no event id: the stream starts."""
    bar = nodes["bar-pcu"]
    base, key = dashboard_session(bar)
    for bad in ("9" * 25, "-1", "1e9", " 7"):
        conn, events = _stream(base, key, **{"Last-Event-ID": bad})
        try:
            assert next(events)[0] == "view"
            if bad == "9" * 25:  # and it goes on: the next view comes (about 1 s later)
                assert next(e for e in events if e[0] == "view")
        finally:
            conn.close()
    text = bar.log.read_text(errors="replace")
    assert "Traceback" not in text and "OverflowError" not in text
