"""POST /v1/flow attacked on real nodes (PROTOCOL.md 14.3): a stranger, a report to a unit that is
no coordinator, a report sealed by one peer and sent on another's channel, a forged report, a
replay. Each asserts the exact refusal and that the coordinator's store did not change.
"""

from __future__ import annotations

import json
import sqlite3
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from keys.card import parse_card
from node.peer_client import FLOW_CONTENT_TYPE, FLOW_PATH
from protocol.flow import FlowEvent, FlowReport, seal_report
from protocol.identity import Identity, PublicIdentity
from tests.integration.harness import PASSPHRASE, NodeProc, make_network, stop_all
from tests.tlsclient import anonymous, home_identity

BAR, BELGRADE, COORD = "bar-pcu", "belgrade-accu", "skopje-coord"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, NodeProc]]]:
    root = tmp_path_factory.mktemp("flowattack")
    nodes = make_network(root, [BAR, BELGRADE, COORD])
    try:
        yield root, nodes
    finally:
        stop_all(nodes)


def _public(root: Path, name: str) -> PublicIdentity:
    return parse_card((root / f"{name}.card").read_text(), now=None).identity


def _report(unit: Identity, coord: PublicIdentity, seqs: range, t: float) -> FlowReport:
    ms = int(t * 1000)
    return FlowReport(
        v=1,
        unit=unit.node_id,
        coordinator=coord.node_id,
        time=ms,
        through=seqs[-1] if seqs else 0,
        events=[
            FlowEvent(seq=i, at=ms, event="queued", tlp="GREEN", type="seizure-alert") for i in seqs
        ],
    )


def _post(node: NodeProc, body: bytes, context: ssl.SSLContext) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(
        node.url + FLOW_PATH, data=body, method="POST", headers={"Content-Type": FLOW_CONTENT_TYPE}
    )
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, msgspec.json.decode(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, msgspec.json.decode(exc.read())


def _held(node: NodeProc) -> int:
    """Events with seq >= 1000: the ones these tests forge (the nodes' own are far below)."""
    db = sqlite3.connect(f"file:{node.home / 'node.db'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM flow_events WHERE seq >= 1000").fetchone()[0])
    finally:
        db.close()


def test_14_3_a_report_is_stored_once_however_often_it_is_sent(
    net: tuple[Path, dict[str, NodeProc]],
) -> None:
    root, nodes = net
    bar, coord = nodes[BAR], nodes[COORD]
    me = home_identity(bar.home, PASSPHRASE)
    body = seal_report(
        me, _public(root, COORD), _report(me, _public(root, COORD), range(1000, 1003), time.time())
    )
    before = _held(coord)
    assert _post(coord, body, bar.as_peer_of(coord)) == (200, {"through": 1002})
    assert _post(coord, body, bar.as_peer_of(coord)) == (200, {"through": 1002})  # a replay
    assert _held(coord) == before + 3


def test_14_3_a_unit_takes_no_reports(net: tuple[Path, dict[str, NodeProc]]) -> None:
    root, nodes = net
    bar, belgrade = nodes[BAR], nodes[BELGRADE]
    me = home_identity(bar.home, PASSPHRASE)
    target = _public(root, BELGRADE)
    body = seal_report(me, target, _report(me, target, range(1000, 1002), time.time()))
    before = _held(belgrade)
    status, answer = _post(belgrade, body, bar.as_peer_of(belgrade))
    assert (status, answer["error"]) == (403, "not_a_coordinator")
    assert _held(belgrade) == before


def test_14_3_a_report_sealed_by_another_peer_is_a_channel_mismatch(
    net: tuple[Path, dict[str, NodeProc]],
) -> None:
    """Belgrade replays Bar's sealed report on its own channel: refused, nothing stored."""
    root, nodes = net
    bar, belgrade, coord = nodes[BAR], nodes[BELGRADE], nodes[COORD]
    me = home_identity(bar.home, PASSPHRASE)
    body = seal_report(
        me, _public(root, COORD), _report(me, _public(root, COORD), range(2000, 2002), time.time())
    )
    before = _held(coord)
    status, answer = _post(coord, body, belgrade.as_peer_of(coord))
    assert (status, answer["error"]) == (403, "channel_mismatch")
    assert _held(coord) == before


def test_14_3_a_report_signed_by_another_key_is_refused(
    net: tuple[Path, dict[str, NodeProc]],
) -> None:
    """On Bar's own channel, a report sealed with a key that is not Bar's (a stolen TLS key
    without the signing key): bad_signature or decryption_failed, and nothing stored."""
    root, nodes = net
    bar, coord = nodes[BAR], nodes[COORD]
    real = home_identity(bar.home, PASSPHRASE)
    fake = Identity.generate()
    # Claim Bar's node id in the outer array; seal and sign with the fake key.
    report = msgspec.structs.replace(
        _report(fake, _public(root, COORD), range(3000, 3002), time.time()), unit=real.node_id
    )
    sealed = seal_report(fake, _public(root, COORD), report)
    outer = msgspec.msgpack.decode(sealed)
    outer[1] = real.node_id
    before = _held(coord)
    status, answer = _post(coord, msgspec.msgpack.encode(outer), bar.as_peer_of(coord))
    assert (status, answer["error"]) == (422, "decryption_failed")  # info binds the real id
    assert _held(coord) == before


def test_14_3_a_stranger_gets_401_and_garbage_is_malformed(
    net: tuple[Path, dict[str, NodeProc]],
) -> None:
    _, nodes = net
    bar, coord = nodes[BAR], nodes[COORD]
    before = _held(coord)
    status, answer = _post(coord, b"\x94\x01", anonymous())
    assert (status, answer["error"]) == (401, "unauthenticated")
    status, answer = _post(coord, b"not a report", bar.as_peer_of(coord))
    assert (status, answer["error"]) == (400, "malformed")
    assert _held(coord) == before


def test_14_1_a_units_words_reach_the_terminal_escaped_and_json_exact(
    net: tuple[Path, dict[str, NodeProc]],
) -> None:
    """A reason is the unit's own text: control, bidi and invisible characters in it are shown
    escaped by monitor, and kept exactly by monitor --json, whose lines carry them as JSON
    escapes (the attack review saw raw U+202E and U+009B reach the terminal there, and
    zero-width and tag characters pass both views)."""
    root, nodes = net
    bar, coord = nodes[BAR], nodes[COORD]
    me = home_identity(bar.home, PASSPHRASE)
    evil = "refused \x1b]0;owned\x07 by \u202egnp.exe\x9b2J k\u200botor\ufeff\U000e0041"
    ms = int(time.time() * 1000)
    report = FlowReport(
        v=1,
        unit=me.node_id,
        coordinator=_public(root, COORD).node_id,
        time=ms,
        through=4000,
        events=[
            FlowEvent(
                seq=4000, at=ms, event="failed", tlp="GREEN", type="seizure-alert", reason=evil
            )
        ],
    )
    body = seal_report(me, _public(root, COORD), report)
    assert _post(coord, body, bar.as_peer_of(coord))[0] == 200
    shown = coord.cli("monitor", "--once", "--window", "10m").stdout
    raw = ("\x1b", "\u202e", "\x07", "\x9b", "\u200b", "\ufeff", "\U000e0041")
    assert not any(c in shown for c in raw)
    squeezed = "".join(shown.split())  # the table may wrap the line
    assert "refused\\u001b]0;owned\\u0007by\\u202egnp.exe\\u009b2Jk\\u200botor" in squeezed
    out = coord.cli("monitor", "--json", "--once").stdout
    assert not any(c in out for c in raw)
    assert any(json.loads(line)["reason"] == evil for line in out.splitlines())


def _state_of(coord: NodeProc, unit: Path) -> tuple[float, Any]:
    """The latest state ``unit`` reported to ``coord``, as the coordinator stored it."""
    from protocol.flow import UnitState

    node_id = _public(unit.parent, unit.name).node_id
    db = sqlite3.connect(f"file:{coord.home / 'node.db'}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT report_time, state FROM flow_units WHERE unit = ?", (node_id,)
        ).fetchone()
    finally:
        db.close()
    if row is None:
        return 0.0, None
    return float(row[0]), msgspec.msgpack.decode(bytes(row[1]), type=UnitState)


def test_14_2_a_red_messages_recipient_is_not_in_the_reported_links(
    net: tuple[Path, dict[str, NodeProc]], tmp_path: Path
) -> None:
    """A TLP:RED alert waiting for a recipient that is down: the report's events withhold the
    recipient, and its links must not give it away either (depth, queued and failing times to
    the millisecond, the failure's reason naming the peer): found by an attack review. An AMBER
    alert to the same peer is the control: it shows, and the RED one does not add to it."""
    from tests.integration.waiting import wait_until

    root, nodes = net
    bar, belgrade, coord = nodes[BAR], nodes[BELGRADE], nodes[COORD]
    belgrade_id = _public(root, BELGRADE).node_id
    belgrade.stop()
    try:
        body = json.loads(bar.cli("template", "seizure-alert").stdout)

        def send(tlp: str) -> str:
            body["meta"]["tlp"] = tlp
            path = tmp_path / f"{tlp}.json"
            path.write_text(json.dumps(body))
            return bar.cli("send", "--to", BELGRADE, "--type", "seizure-alert", str(path)).stdout

        def failed(msg_id: str) -> bool:
            rows = bar.json("outbox", "--limit", "1000")["items"]
            return any(r["id"] == msg_id.strip() and r["status"] == "failed" for r in rows)

        def reported_after(t: float) -> Any:
            at, state = _state_of(coord, root / BAR)
            return state if at > t else None

        red = send("RED")
        wait_until(lambda: failed(red), "the RED alert to fail to belgrade-accu")
        t = time.time()
        state = wait_until(lambda: reported_after(t), "a report after that")
        assert [lk for lk in state.links if lk.peer == belgrade_id and lk.depth] == []
        assert all(belgrade_id.hex() not in str(lk.reason) for lk in state.links)
        assert all(BELGRADE not in str(lk.reason) for lk in state.links)

        amber = send("AMBER")
        wait_until(lambda: failed(amber), "the AMBER alert to fail to belgrade-accu")
        t = time.time()
        state = wait_until(lambda: reported_after(t), "a report after that")
        [link] = [lk for lk in state.links if lk.peer == belgrade_id]
        assert (link.state, link.depth) == ("retrying", 1)  # the AMBER one only
        assert link.reason is not None and BELGRADE in link.reason
    finally:
        belgrade.start()
