"""Whom a unit reports its flow to (node/flow_reports.targets, PROTOCOL.md 14.3): a card that
calls itself a coordinator, trusted on first use, gets nothing unless a custodian verified it
or named it (found by an attack review: it received the unit's whole history)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from keys.card import make_card
from keys.tls import make_certificate
from keys.trust import PeerRecord
from node.config import Flow
from node.flow_reports import targets
from node.status import Snapshot, keys_status
from node.storage import InboxStats, OutboxStats
from tests.conftest import NOW, fixed_identity
from tests.peering import peer_record


def coordinator(name: str, verified_by: str) -> PeerRecord:
    ident = fixed_identity(name)
    card = make_card(
        ident, name=name, unit_type="coordinator", country="MK", location="MKSKP",
        endpoints=["https://127.0.0.1:1"], valid_from=NOW - 10, valid_until=NOW + 86400 * 365,
        tls_cert=make_certificate(ident, now=NOW),
    )  # fmt: skip
    rec = peer_record(ident, name)
    return msgspec.structs.replace(rec, card=card.armored(), verified_by=verified_by)


VERIFIED, TOFU, INTRODUCED = (
    coordinator("skopje-coord", "fingerprint"),
    coordinator("self-declared", "tofu"),
    coordinator("introduced-coord", "introduced"),
)
UNIT = peer_record(fixed_identity("bar-pcu"), "bar-pcu")


def test_only_a_coordinator_verified_by_fingerprint_is_reported_to_by_default() -> None:
    peers = [VERIFIED, TOFU, INTRODUCED, UNIT]
    assert [p.name for p in targets(peers, Flow())] == ["skopje-coord"]


def test_a_coordinator_named_in_report_to_is_reported_to_however_it_was_trusted() -> None:
    peers = [VERIFIED, TOFU, UNIT]
    assert [p.name for p in targets(peers, Flow(report_to=["self-declared"]))] == ["self-declared"]
    revoked = msgspec.structs.replace(TOFU, status="revoked")
    assert targets([revoked], Flow(report_to=["self-declared"])) == []  # never untrusted


def test_status_says_why_an_unverified_coordinator_gets_no_reports() -> None:
    me = fixed_identity("bar-pcu")
    card = make_card(
        me, name="bar-pcu", unit_type="PCU", country="ME", location="MEBAR",
        endpoints=["https://127.0.0.1:1"], valid_from=NOW - 10, valid_until=NOW + 86400 * 365,
        tls_cert=make_certificate(me, now=NOW),
    )  # fmt: skip
    snap = Snapshot(
        names={}, outbox=OutboxStats({}, None, {}), inbox=InboxStats(0, 0), audit_size=0,
        checkpoint_size=0, cosignatures=0, evidence=[], peers=[VERIFIED, TOFU],
    )  # fmt: skip
    warnings = keys_status(card, snap, NOW).warnings
    assert warnings == [
        "coordinator 'self-declared' was not verified by fingerprint: no flow reports go to it "
        "until 'borderlink peers verify self-declared --fingerprint \"...\"' (or it is named in "
        "[flow] report_to)"
    ]


def test_section_14_2_a_links_state_does_not_tell_whether_a_withheld_message_went_there(
    tmp_path: Path,
) -> None:
    """With withholding, a peer with nothing visible pending is "ok" whether or not a delivery
    worker ever ran for it: "idle" turned "ok" in the report of the first RED message to it
    (second attack review)."""
    from node.flow_reports import unit_state
    from node.storage.sqlite import open_store
    from protocol.identity import Identity

    store = open_store(tmp_path / "n.db")
    me: Identity = fixed_identity("bar-pcu")
    card = make_card(
        me, name="bar-pcu", unit_type="PCU", country="ME", location="MEBAR",
        endpoints=["https://127.0.0.1:1"], valid_from=NOW - 10, valid_until=NOW + 86400 * 365,
        tls_cert=make_certificate(me, now=NOW),
    )  # fmt: skip
    try:
        with store.unit(NOW) as u:
            u.put_peer(UNIT)
        for worker in ("idle", "unknown", "up", "down"):
            hidden = unit_state(
                store, me, card, lambda _id, w=worker: w, 0, NOW, frozenset({"RED"})
            )
            assert [(lk.peer, lk.state) for lk in hidden.links] == [(UNIT.node_id, "ok")]
        shown = unit_state(store, me, card, lambda _id: "idle", 0, NOW)  # the unit's own view
        assert [lk.state for lk in shown.links] == ["idle"]
    finally:
        store.close()
