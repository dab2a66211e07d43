"""Whom a unit reports its flow to (node/flow_reports.targets, PROTOCOL.md 14.3): a card that
calls itself a coordinator, trusted on first use, gets nothing unless a custodian verified it
or named it (found by an attack review: it received the unit's whole history)."""

from __future__ import annotations

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
