"""The dashboard's listener attacked over plain HTTP (no browser): who gets in, with what, and what
every answer forbids. One real node; the login links come from `borderlink dashboard`."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.integration.harness import NodeProc, make_network, one_line_error, stop_all


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProc]:
    nodes = make_network(tmp_path_factory.mktemp("dash"), ["bar-pcu"])
    try:
        yield nodes["bar-pcu"]
    finally:
        stop_all(nodes)


def _get(
    url: str, *, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def _login(node: NodeProc) -> tuple[str, str]:
    """(base URL, session cookie) after opening a fresh login link."""
    links = node.json("dashboard")
    status, headers, _ = _get(links["url"])
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    return links["url"].split("/login")[0], cookie.split(";")[0]


def test_a_login_link_works_once_and_leaves_no_token_in_the_address(node: NodeProc) -> None:
    links = node.json("dashboard")
    assert set(links) == {"url", "metrics_url"}  # the shape the issue asks for
    first = _get(links["url"])
    assert first[0] == 303 and "token" not in first[1]["location"]
    again = _get(links["url"])
    assert again[0] == 403 and b"used already or has expired" in again[2]
    guessed = _get(links["url"].split("token=")[0] + "token=" + "A" * 43)
    assert guessed[0] == 403


def test_without_a_session_every_page_and_api_is_refused(node: NodeProc) -> None:
    base, cookie = _login(node)
    for path in ("/", "/api/view", "/api/events"):
        status, _, body = _get(base + path)
        assert status == 401 and b"borderlink dashboard" in body, path
        status, _, _ = _get(base + path, headers={"Cookie": "borderlink_session=forged"})
        assert status == 401, path
    status, headers, body = _get(base + "/api/view", headers={"Cookie": cookie})
    assert status == 200 and json.loads(body)["me"] == "bar-pcu"
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"


def test_another_host_name_is_refused(node: NodeProc) -> None:
    """DNS rebinding: a page elsewhere that resolves its own name to 127.0.0.1 sends its Host."""
    base, cookie = _login(node)
    status, _, _ = _get(base + "/api/view", headers={"Cookie": cookie, "Host": "evil.example"})
    assert status == 421


def test_metrics_need_the_bearer_token(node: NodeProc) -> None:
    links = node.json("dashboard")
    token_file = node.home / "metrics.token"
    token = token_file.read_text().strip()
    assert (token_file.stat().st_mode & 0o777) == 0o600
    assert _get(links["metrics_url"])[0] == 401
    assert _get(links["metrics_url"], headers={"Authorization": "Bearer " + "x" * 43})[0] == 401
    status, headers, body = _get(links["metrics_url"], headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b"borderlink_outbox_depth" in body


def test_logging_out_ends_the_session(node: NodeProc) -> None:
    base, cookie = _login(node)
    assert _get(base + "/logout", headers={"Cookie": cookie}, method="POST")[0] == 303
    assert _get(base + "/api/view", headers={"Cookie": cookie})[0] == 401


def test_dashboard_and_monitor_on_a_stopped_node_say_so_in_one_line(tmp_path: Path) -> None:
    from tests.integration.harness import cli, init_home

    init_home(tmp_path / "h", "zagreb-jaitf")
    for args in (("dashboard",), ("monitor", "--once")):
        one_line_error(cli(tmp_path / "h", *args, check=False), 3, "is not running")
