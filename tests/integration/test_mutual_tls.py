"""Mutual TLS pinned to cards, against real node processes on 127.0.0.1 (PROTOCOL.md 3.5, 11.0).

- An on-path relay at a peer's address, without the peer's key, gets nothing of a delivery and
  cannot end it: its forged rejection is never read, the delivery fails (retried) with both pins
  named, and the alert is delivered once the real peer is back.
- A home made before cards pinned a certificate gets one on its first start, with one notice.
- ``init --endpoint http://...`` is refused with the reason.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from keys.card import make_card, parse_card
from keys.tls import make_certificate, pin_text
from node.home import Home
from node.initialise import write_card
from node.tls import NodeTls
from protocol.identity import Identity
from tests.integration.harness import (
    PASSPHRASE,
    NodeProc,
    cli,
    make_network,
    one_line_error,
    stop_all,
)
from tests.integration.waiting import log_events, wait_until
from tests.tlsclient import home_identity


class _Relay(http.server.BaseHTTPRequestHandler):
    """Answers every request with a forged, final-looking rejection."""

    seen: list[str]

    def do_POST(self) -> None:
        self.seen.append(self.path)
        body = json.dumps({"error": "unknown_sender", "message": "forged"}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def relay_key(tmp_path: Path) -> Iterator[tuple[Identity, bytes]]:
    mallory = Identity.generate()
    yield mallory, make_certificate(mallory, now=0)


def serve_relay(
    port: int, key: tuple[Identity, bytes], workdir: Path
) -> tuple[http.server.HTTPServer, list[str]]:
    seen: list[str] = []
    handler = type("Relay", (_Relay,), {"seen": seen})
    server = http.server.HTTPServer(("127.0.0.1", port), handler)
    context = NodeTls(key[0], key[1], workdir).server_context([])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def outbox_row(node: NodeProc, peer: str) -> dict[str, object]:
    rows = [r for r in node.json("outbox")["items"] if r["peer"] == peer]
    assert len(rows) == 1, rows
    return rows[0]


def test_an_on_path_relay_cannot_reject_an_alert_for_good(
    tmp_path: Path, relay_key: tuple[Identity, bytes]
) -> None:
    nodes = make_network(tmp_path, ["bar-pcu", "belgrade-accu"])
    bar, bel = nodes["bar-pcu"], nodes["belgrade-accu"]
    relay = None
    try:
        bel.stop()
        relay, seen = serve_relay(bel.port, relay_key, tmp_path)
        alert = tmp_path / "alert.json"
        alert.write_text(bar.cli("template", "seizure-alert").stdout)
        sent = bar.json("send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert))
        msg_id = sent["id"] if "id" in sent else sent["message_id"]

        def failed_with_pins() -> dict[str, object] | None:
            row = outbox_row(bar, "belgrade-accu")
            error = str(row.get("last_error") or "")
            return row if "TLS pin mismatch" in error else None

        row = wait_until(failed_with_pins, "a delivery failure naming the pins")
        expected = (
            f"TLS pin mismatch for belgrade-accu at 127.0.0.1:{bel.port}: its card pins "
            f"{pin_text(bel.cert)}, the server presented {pin_text(relay_key[1])}"
        )
        assert row["last_error"] == expected
        assert row["status"] != "rejected"
        assert seen == []  # the relay never saw a request, let alone the batch
        relay.shutdown()
        relay.server_close()
        relay = None
        bel.start()
        wait_until(
            lambda: outbox_row(bar, "belgrade-accu")["status"] == "delivered",
            "delivery once the real peer is back",
        )
        assert msg_id in {m["id"] for m in bel.json("inbox")["items"]}
    finally:
        if relay is not None:
            relay.shutdown()
            relay.server_close()
        stop_all(nodes)


def test_a_home_from_before_tls_gets_a_pinned_card_on_first_start(tmp_path: Path) -> None:
    nodes = make_network(tmp_path, ["bar-pcu", "belgrade-accu"], start=False)
    bar, bel = nodes["bar-pcu"], nodes["belgrade-accu"]
    home = Home(bar.home)
    old = parse_card(home.card.read_text(), now=None).body
    identity = home_identity(bar.home, PASSPHRASE)
    v1 = make_card(
        identity,
        name=old.name,
        unit_type=old.unit_type,
        country=old.country,
        location=old.location,
        endpoints=[url.replace("https://", "http://") for url in old.endpoints],
        valid_from=old.valid_from,
        valid_until=old.valid_until,
    )
    write_card(home, v1)
    try:
        bar.start()
        notices = log_events(bar, "node.tls_added")
        assert len(notices) == 1
        card = parse_card(home.card.read_text(), now=None)
        assert card.body.version == 2 and card.tls_pin == notices[0]["pin"]
        assert card.body.endpoints == old.endpoints  # https again, same port
        assert card.body.valid_until == old.valid_until
        assert card.body.valid_from > old.valid_from  # peers take it as the newer card
        entries = bar.json("audit", "log")
        items = entries["items"] if isinstance(entries, dict) else entries
        assert [e for e in items if e["kind"] == "key.created" and e["outcome"] == "tls"]
        # A second start adds nothing.
        bar.stop()
        bar.start()
        assert len(log_events(bar, "node.tls_added")) == 1
        # Belgrade imports the re-issued card (newer, same key) and the two talk over TLS.
        new_card = tmp_path / "bar-new.card"
        new_card.write_text(card.armored())
        bel.cli("peers", "add", str(new_card), "--fingerprint", identity.public.fingerprint)
        bel.start()
        alert = tmp_path / "alert.json"
        alert.write_text(bel.cli("template", "seizure-alert").stdout)
        bel.cli("send", "--to", "bar-pcu", "--type", "seizure-alert", str(alert), "--wait", "60")
    finally:
        stop_all(nodes)


@pytest.mark.parametrize("url", ["http://10.0.0.7:7443", "http://127.0.0.1:7443"])
def test_init_refuses_a_plain_http_endpoint(tmp_path: Path, url: str) -> None:
    home = tmp_path / "h"
    proc = cli(
        home,
        "init",
        "--name",
        "bar-pcu",
        "--unit-type",
        "PCU",
        "--country",
        "ME",
        "--location",
        "MEBAR",
        "--kdf-profile",
        "interactive",
        "--endpoint",
        url,
        check=False,
    )
    one_line_error(proc, 1, "must be an https:// URL")
    assert "mutual TLS" in proc.stderr
    assert not (home / "keystore.json").exists()
