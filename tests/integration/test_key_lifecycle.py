"""Keys change safely (PROTOCOL.md 13), black-box: real node processes, real sockets, the CLI.

A rotation reaches a peer that was down, one that missed two rotations catches up in order, an
envelope sealed under the old keys opens during the overlap and is refused as retired_key after
it, and a key revoked by its certificate with the keystore gone stops its messages everywhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keys.card import parse_card
from tests.integration.harness import (
    PASSPHRASE,
    NodeProc,
    free_port,
    init_home,
    make_network,
    one_line_error,
    stop_all,
)
from tests.integration.waiting import wait_until
from tests.tlsclient import connect, home_identity, read_answer, request_bytes

# A peer that comes back is retried within 2 s, so the tests wait for delivery, not backoff.
QUICK = {"BORDERLINK_DELIVERY_BACKOFF_MAX": "2"}


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[dict[str, NodeProc]]:
    nodes = make_network(tmp_path, ["bar-pcu", "belgrade-accu"], extra_env=QUICK)
    yield nodes
    stop_all(nodes)


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[dict[str, NodeProc]]:
    nodes = make_network(tmp_path, ["bar-pcu", "belgrade-accu", "skopje-coord"], extra_env=QUICK)
    yield nodes
    stop_all(nodes)


def _alert(tmp: Path, node: NodeProc) -> Path:
    path = tmp / "alert.json"
    path.write_text(node.cli("template", "seizure-alert").stdout)
    return path


def _peer(node: NodeProc, name: str) -> dict[str, object]:
    [row] = [p for p in node.json("peers", "list") if p["name"] == name]
    return dict(row)


def _audit(node: NodeProc, kind: str) -> list[dict[str, object]]:
    return [e for e in node.json("audit", "log")["items"] if e["kind"] == kind]


def test_rotations_reach_a_peer_that_was_down_in_order_and_old_envelopes_open_in_the_overlap(
    trio: dict[str, NodeProc], tmp_path: Path
) -> None:
    bar, bel, coord = trio["bar-pcu"], trio["belgrade-accu"], trio["skopje-coord"]
    alert = _alert(tmp_path, bar)
    assert bel.stop() == 0
    # Sealed and signed under bar's first keys, queued while bel is down.
    early = bar.json("send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert))
    first = bar.json("keys", "show")["fingerprint"]
    one = bar.json("keys", "rotate")
    assert (one["kind"], one["seq"], one["previous_fingerprint"]) == ("rotated", 1, first)
    assert Path(one["revocation_certificate"]).is_file()
    two = bar.json("keys", "rotate")
    assert two["seq"] == 2 and two["previous_fingerprint"] == one["fingerprint"]
    shown = bar.json("keys", "show")
    assert shown["fingerprint"] == two["fingerprint"] and shown["seq"] == 2
    assert [(h["seq"], h["replaced"], h["by"]) for h in shown["history"]] == [
        (1, first, one["fingerprint"]),
        (2, one["fingerprint"], two["fingerprint"]),
    ]
    # The peer that stayed up switched at once, twice, and audited each switch.
    wait_until(
        lambda: _peer(coord, "bar-pcu")["fingerprint"] == two["fingerprint"] or None,
        "skopje-coord to take bar-pcu's second rotation",
    )
    assert [e["detail"][:6] for e in _audit(coord, "key.rotated")] == ["seq 1:", "seq 2:"]
    assert _peer(coord, "bar-pcu")["verified_by"] == "fingerprint"  # a checked chain stays verified
    # bel returns: both rotations arrive in order, then the envelope sealed under the old keys.
    bel.start()
    wait_until(
        lambda: _peer(bel, "bar-pcu")["fingerprint"] == two["fingerprint"] or None,
        "belgrade-accu to catch up with both rotations",
    )
    assert [e["detail"][:6] for e in _audit(bel, "key.rotated")] == ["seq 1:", "seq 2:"]
    inbox = wait_until(lambda: bel.json("inbox")["items"] or None, "the early alert at bel")
    assert [m["id"] for m in inbox] == [early["id"]]
    # Both ways under the new keys, through the node's new TLS certificate.
    later = bar.json(
        "send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert), "--wait", "30"
    )
    assert later["recipients"] == {"belgrade-accu": "delivered"}
    back = bel.json("inbox", "ack", early["id"], "--action", "seized")
    assert back["to"] == "bar-pcu"
    wait_until(
        lambda: [m for m in bar.json("inbox")["items"] if m["type"] == "feedback"] or None,
        "bel's feedback, sealed to bar's newest key, at bar",
    )
    status = bar.json("status")["keys"]
    assert status["seq"] == 2 and status["undelivered_statements"] == {}


def test_after_the_overlap_an_envelope_signed_with_the_old_key_is_refused(
    pair: dict[str, NodeProc], tmp_path: Path
) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    alert = _alert(tmp_path, bar)
    assert bel.stop() == 0
    early = bar.json("send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert))
    bar.json("keys", "rotate", "--overlap-days", "0")  # the old key's overlap ends at once
    bel.start()
    row = wait_until(
        lambda: next(
            (
                r
                for r in bar.json("outbox")["items"]
                if r["id"] == early["id"] and r["status"] == "rejected"
            ),
            None,
        ),
        "the old-key envelope to be refused",
    )
    assert "retired_key" in row["last_error"]
    assert bel.json("inbox")["items"] == []
    refused = [e for e in _audit(bel, "message.rejected") if e["outcome"] == "retired_key"]
    assert refused and "overlap ended" in str(refused[0]["detail"])
    events = bel.json("status")["keys"]["events"]
    assert any(
        (e["peer"], e["kind"], e["outcome"]) == ("bar-pcu", "envelope", "retired_key")
        for e in events
    )
    assert "bar-pcu: envelope retired_key" in bel.cli("status").stdout


def test_revocation_by_certificate_with_the_keystore_gone(
    pair: dict[str, NodeProc], tmp_path: Path
) -> None:
    bar, bel = pair["bar-pcu"], pair["belgrade-accu"]
    alert = _alert(tmp_path, bel)
    sent = bar.json(
        "send",
        "--to",
        "belgrade-accu",
        "--type",
        "seizure-alert",
        str(_alert(tmp_path, bar)),
        "--wait",
        "30",
    )
    assert bar.stop() == 0
    queued = bel.json("send", "--to", "bar-pcu", "--type", "seizure-alert", str(alert))
    certificate = tmp_path / "kept-away.txt"
    certificate.write_text((bar.home / "revocation.txt").read_text())
    thief = bar.as_peer_of(bel)  # what whoever holds the stolen keys can still present
    stolen = home_identity(bar.home, PASSPHRASE)
    (bar.home / "keystore.json").unlink()  # the laptop was stolen: no keystore, no passphrase
    done = bar.cli(
        "keys",
        "revoke",
        "--certificate",
        str(certificate),
        "--reason",
        "compromised",
        "--yes",
        "--json",
    )
    assert json.loads(done.stdout)["kind"] == "revoked"
    assert "belgrade-accu: delivered, receipt verified" in done.stderr
    peer = _peer(bel, "bar-pcu")
    assert (peer["status"], peer["revoke_reason"]) == ("revoked", "compromised")
    # What bel received from that key since it was compromised is marked, what it queued held.
    [m] = bel.json("inbox")["items"]
    assert m["id"] == sent["id"] and "compromised" in m["suspect"]
    [row] = [r for r in bel.json("outbox")["items"] if r["id"] == queued["id"]]
    assert row["status"] == "held" and "revoked" in row["last_error"]
    [entry] = _audit(bel, "key.revoked")
    assert entry["peer"] == "bar-pcu" and entry["outcome"] == "compromised"
    one_line_error(
        bel.cli("send", "--to", "bar-pcu", "--type", "seizure-alert", str(alert), check=False),
        4,
        "revoked (compromised)",
    )
    # The revoked key sending: its TLS certificate names no peer any more, nothing is opened.
    from protocol.batch import BATCH_CONTENT_TYPE, encode_batch
    from protocol.envelope import seal
    from protocol.schemas import encode_body, template

    bel_id = parse_card((bel.home / "card.txt").read_text(), now=None).identity
    env = seal(
        stolen,
        [bel_id],
        "seizure-alert",
        encode_body(template("seizure-alert")),
        now=int(time.time()),
        ttl=600,
    )
    with connect(bel.port, thief) as sock:
        sock.sendall(
            request_bytes(
                "POST",
                "/v1/envelopes",
                encode_batch([env.encode()]),
                {"Content-Type": BATCH_CONTENT_TYPE},
            )
        )
        answer = read_answer(sock)
    assert answer.status == 401 and json.loads(answer.body)["error"] == "unauthenticated"
    assert [m["id"] for m in bel.json("inbox")["items"]] == [sent["id"]]
    events = bel.json("status")["keys"]["events"]
    assert [(e["peer"], e["kind"], e["outcome"]) for e in events][:1] == [
        ("bar-pcu", "revoked", "applied")
    ]


def test_a_unit_that_verified_its_coordinator_imports_the_region_from_its_node(
    tmp_path: Path,
) -> None:
    """PROTOCOL.md 13.8 over the peer API: skopje-coord verified bar-pcu and zagreb-jaitf;
    zagreb-jaitf verified only the coordinator, and imports bar-pcu as introduced by it."""
    nodes = make_network(tmp_path, ["bar-pcu", "skopje-coord"], start=False, extra_env=QUICK)
    port = free_port()
    zag = NodeProc(
        "zagreb-jaitf", tmp_path / "zagreb-jaitf", port, tmp_path / "zag.log", dict(QUICK)
    )
    nodes["zagreb-jaitf"] = zag
    init_home(zag.home, "zagreb-jaitf", "--endpoint", f"https://127.0.0.1:{port}")
    coord = nodes["skopje-coord"]
    zag.cli("keys", "export-card", "-o", str(tmp_path / "zag.card"))
    coord.cli(
        "peers",
        "add",
        str(tmp_path / "zag.card"),
        "--fingerprint",
        zag.json("keys", "show")["fingerprint"],
    )
    zag.cli(
        "peers",
        "add",
        str(tmp_path / "skopje-coord.card"),
        "--fingerprint",
        coord.json("keys", "show")["fingerprint"],
    )
    try:
        for n in nodes.values():
            n.start()
        published = coord.cli("peers", "publish-directory", "-o", str(tmp_path / "region.dir"))
        assert published.returncode == 0
        got = zag.json("peers", "import-directory", "--from", "skopje-coord")
        assert got["introduced"] == ["bar-pcu"]
        row = _peer(zag, "bar-pcu")
        assert (row["verified_by"], row["introduced_by"]) == ("introduced", "skopje-coord")
        [entry] = _audit(zag, "peer.introduced")
        assert entry["peer"] == "bar-pcu" and "skopje-coord" in str(entry["outcome"])
        # The same directory again is a rollback: refused with its reason, nothing changes.
        again = zag.cli("peers", "import-directory", str(tmp_path / "region.dir"), check=False)
        one_line_error(again, 4, "directory_rollback")
        # bar-pcu signs no directory: refused even though it is now a trusted peer of zagreb.
        bar = nodes["bar-pcu"]
        forged = bar.cli("peers", "publish-directory", check=False)
        assert forged.returncode != 0
    finally:
        stop_all(nodes)
