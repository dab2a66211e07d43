"""The dashboard's local listener attacked with idle sockets (attack review F3): any local process
could open connections to it without logging in, and with no cap they took every descriptor the
node had, so the peer API and the admin socket stopped answering. Now the listener holds at most
DASHBOARD_CONNECTIONS, the oldest closed for a new one: the node keeps delivering and answering
``status``, and a new dashboard request is still served."""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from node.daemon import DASHBOARD_CONNECTIONS
from tests.integration.harness import dashboard_session, make_network, stop_all
from tests.integration.waiting import log_events

LIMIT = 160  # the node's whole file limit
CROWD = 240  # idle sockets, more than the limit


def test_idle_sockets_on_the_dashboard_port_cannot_take_the_nodes_descriptors(
    tmp_path: Path,
) -> None:
    nodes = make_network(tmp_path, ["bar-pcu", "belgrade-accu"], start=False)
    bar, bel = nodes["bar-pcu"], nodes["belgrade-accu"]
    bel.open_files = LIMIT
    crowd: list[socket.socket] = []
    try:
        bar.start()
        bel.start()
        assert bel.proc is not None
        fds = Path(f"/proc/{bel.proc.pid}/fd")
        where = urlsplit(bel.json("dashboard")["url"])
        host, port = where.hostname or "", where.port or 0
        # The operator's live page, open before the crowd comes: the oldest connection, and
        # the one a cap that closes the oldest would close first (second attack review).
        _, key = dashboard_session(bel)
        page = http.client.HTTPConnection(host, port, timeout=30)
        page.request("GET", "/api/events", headers={"Authorization": f"Bearer {key}"})
        stream = page.getresponse()
        assert stream.status == 200 and stream.readline().startswith(b"event: view")
        most = 0
        for _ in range(CROWD):  # bounded: each connect returns at once on loopback
            crowd.append(socket.create_connection((host, port), timeout=10))
            most = max(most, len(list(fds.iterdir())))
        assert most < LIMIT, f"{most} descriptors open"
        # the node still delivers and answers its operator ...
        alert = tmp_path / "alert.json"
        alert.write_text(bar.cli("template", "seizure-alert").stdout)
        sent = bar.json(
            "send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert), "--wait", "60"
        )
        assert sent["recipients"] == {"belgrade-accu": "delivered"}
        assert bel.cli("status").returncode == 0
        # ... and the dashboard still answers a new request (401: no session; an answer)
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/api/view", timeout=10) as r:
                status = r.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == 401
        closed = 0
        for s in crowd:
            s.settimeout(0.0)
            try:
                closed += s.recv(1) == b""
            except BlockingIOError:
                pass
        assert closed >= CROWD - DASHBOARD_CONNECTIONS, closed  # the oldest made room
        # ... but never the signed-in stream: it still delivers views
        views = 0
        for _ in range(10_000):  # bounded; a view comes about once a second
            line = stream.readline()
            assert line, "the operator's live stream was closed"
            views += line.startswith(b"event: view")
            if views == 2:
                break
        page.close()
        assert log_events(bel, "connection.evicted")
        text = bel.log.read_text(errors="replace")
        assert "Traceback" not in text, text[text.find("Traceback") :][:2000]
    finally:
        for s in crowd:
            s.close()
        stop_all(nodes)
