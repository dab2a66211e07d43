"""Flow reports (PROTOCOL.md 14) as attacks: tamper, forge, wrong coordinator, unknown unit, future
time, disorder, oversize; and what a unit withholds by TLP (14.2)."""

from __future__ import annotations

import msgspec
import pytest

from protocol.errors import (
    BadSignature,
    ClockSkew,
    DecryptionFailed,
    Malformed,
    NotForMe,
    Oversize,
    UnknownSender,
)
from protocol.flow import (
    DEFAULT_WITHHOLD,
    FlowEvent,
    FlowReport,
    SealedReport,
    apply_policy,
    open_report,
    report_sender,
    seal_report,
    size_bucket,
    withhold,
)
from protocol.identity import Identity, PublicIdentity
from tests.conftest import NOW

NOW_MS = NOW * 1000


def _report(unit: Identity, coord: Identity, events: list[FlowEvent] | None = None) -> FlowReport:
    evs = events if events is not None else [FlowEvent(seq=1, at=NOW_MS, event="queued")]
    return FlowReport(
        v=1,
        unit=unit.node_id,
        coordinator=coord.node_id,
        time=NOW_MS,
        through=max((e.seq for e in evs), default=0),
        events=evs,
    )


def _opener(*known: Identity):  # type: ignore[no-untyped-def]
    ids = {i.node_id: i.public for i in known}

    def sender_of(node_id: bytes) -> PublicIdentity:
        if node_id not in ids:
            raise UnknownSender("not a trusted peer")
        return ids[node_id]

    return sender_of


def test_14_3_a_sealed_report_opens_for_its_coordinator(alice: Identity, bob: Identity) -> None:
    sealed = seal_report(alice, bob.public, _report(alice, bob))
    assert report_sender(sealed) == alice.node_id
    got = open_report(sealed, bob, sender_of=_opener(alice), now_ms=NOW_MS)
    assert got == _report(alice, bob)


def test_14_3_another_coordinator_cannot_open_it(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    sealed = seal_report(alice, bob.public, _report(alice, bob))
    with pytest.raises(NotForMe):
        open_report(sealed, carol, sender_of=_opener(alice), now_ms=NOW_MS)


def test_14_3_an_unknown_unit_is_refused_before_decryption(
    alice: Identity, bob: Identity, mallory: Identity
) -> None:
    sealed = seal_report(mallory, bob.public, _report(mallory, bob))
    with pytest.raises(UnknownSender):
        open_report(sealed, bob, sender_of=_opener(alice), now_ms=NOW_MS)


def test_14_3_tampered_ciphertext_does_not_decrypt(alice: Identity, bob: Identity) -> None:
    outer = msgspec.msgpack.decode(
        seal_report(alice, bob.public, _report(alice, bob)), type=SealedReport
    )
    flipped = bytearray(outer.sealed)
    flipped[-1] ^= 1
    data = msgspec.msgpack.encode(SealedReport(1, outer.sender, outer.recipient, bytes(flipped)))
    with pytest.raises(DecryptionFailed):
        open_report(data, bob, sender_of=_opener(alice), now_ms=NOW_MS)


def test_14_3_a_report_claimed_for_another_unit_is_forged(
    alice: Identity, bob: Identity, mallory: Identity
) -> None:
    """Mallory (a trusted unit) seals a report under Alice's node id in the outer array: it is
    checked against Alice's key, and Mallory's signature does not verify."""
    outer = msgspec.msgpack.decode(
        seal_report(mallory, bob.public, _report(mallory, bob)), type=SealedReport
    )
    forged = msgspec.msgpack.encode(SealedReport(1, alice.node_id, bob.node_id, outer.sealed))
    with pytest.raises(DecryptionFailed):  # info binds the sealer: it opens for no other id
        open_report(forged, bob, sender_of=_opener(alice, mallory), now_ms=NOW_MS)


def test_14_3_the_signed_report_must_name_its_sealer(
    alice: Identity, bob: Identity, mallory: Identity
) -> None:
    """Mallory signs a report whose body names Alice as the unit: refused, malformed."""
    body = _report(alice, bob)
    sealed = seal_report(mallory, bob.public, body)
    with pytest.raises(Malformed, match="names another unit"):
        open_report(sealed, bob, sender_of=_opener(alice, mallory), now_ms=NOW_MS)


def test_14_3_a_report_from_the_future_is_refused(alice: Identity, bob: Identity) -> None:
    report = msgspec.structs.replace(_report(alice, bob), time=NOW_MS + 301_000)
    sealed = seal_report(alice, bob.public, report)
    with pytest.raises(ClockSkew):
        open_report(sealed, bob, sender_of=_opener(alice), now_ms=NOW_MS)


def test_14_3_an_event_dated_after_its_report_is_malformed(alice: Identity, bob: Identity) -> None:
    """A unit that dates its events in the future would hold the top of every time-ordered
    view (the dashboard's window) for as long as it likes: refused, and nothing opened."""
    report = _report(alice, bob, [FlowEvent(seq=1, at=NOW_MS + 1, event="queued")])
    sealed = seal_report(alice, bob.public, msgspec.structs.replace(report, time=NOW_MS))
    with pytest.raises(Malformed, match="dated after"):
        open_report(sealed, bob, sender_of=_opener(alice), now_ms=NOW_MS)


def test_14_3_events_out_of_order_or_beyond_through_are_malformed(
    alice: Identity, bob: Identity
) -> None:
    events = [
        FlowEvent(seq=2, at=NOW_MS, event="queued"),
        FlowEvent(seq=1, at=NOW_MS, event="queued"),
    ]
    sealed = seal_report(alice, bob.public, _report(alice, bob, events))
    with pytest.raises(Malformed):
        open_report(sealed, bob, sender_of=_opener(alice), now_ms=NOW_MS)
    beyond = msgspec.structs.replace(_report(alice, bob), through=0)
    with pytest.raises(Malformed):
        open_report(
            seal_report(alice, bob.public, beyond), bob, sender_of=_opener(alice), now_ms=NOW_MS
        )


def test_14_3_oversize_and_garbage_are_refused_before_any_work(bob: Identity) -> None:
    with pytest.raises(Oversize):
        report_sender(b"\x94" + b"\x00" * (1024 * 1024 + 200))
    with pytest.raises(Malformed):
        report_sender(b"not msgpack at all")


def test_14_2_red_withholds_recipients_and_type_on_both_sides(alice: Identity) -> None:
    peer = alice.node_id
    queued = FlowEvent(
        seq=1, at=1, event="queued", tlp="RED", type="seizure-alert", recipients=[peer]
    )
    out = apply_policy(queued, DEFAULT_WITHHOLD)
    assert out.recipients is None and out.type is None
    assert out.withheld == ["recipients", "type"]
    delivered = FlowEvent(seq=2, at=1, event="delivered", tlp="RED", peer=peer, id=b"i" * 16)
    assert apply_policy(delivered, DEFAULT_WITHHOLD).peer is None
    failed = FlowEvent(seq=2, at=1, event="failed", tlp="RED", peer=peer, reason="refused by x")
    f = apply_policy(failed, DEFAULT_WITHHOLD)
    assert (f.peer, f.reason) == (None, None)  # the reason names the recipient
    received = FlowEvent(seq=3, at=1, event="received", tlp="RED", peer=peer, id=b"i" * 16)
    r = apply_policy(received, DEFAULT_WITHHOLD)
    assert r.id is None and r.peer is None  # the id would link the recipient to the sender


def test_14_2_unknown_tlp_is_treated_as_red_and_green_is_shared(alice: Identity) -> None:
    unknown = FlowEvent(seq=1, at=1, event="delivered", peer=alice.node_id, type="feedback")
    assert apply_policy(unknown, DEFAULT_WITHHOLD).peer is None
    green = msgspec.structs.replace(unknown, tlp="GREEN")
    assert apply_policy(green, DEFAULT_WITHHOLD) == green


def test_14_2_withhold_ignores_names_it_does_not_know() -> None:
    e = FlowEvent(seq=1, at=1, event="failed", reason="connection refused", latency_ms=5)
    got = withhold(e, ["reason", "latency", "nonsense"])
    assert got.reason is None and got.latency_ms is None
    assert got.withheld == ["latency", "reason"]


def test_14_1_size_buckets() -> None:
    assert [size_bucket(n) for n in (1, 4096, 4097, 65536, 65537)] == [
        "small",
        "small",
        "medium",
        "medium",
        "large",
    ]


def test_14_3_a_forged_signature_under_a_units_name_is_refused(
    alice: Identity, bob: Identity, mallory: Identity
) -> None:
    """HPKE base mode does not authenticate the sealer: anyone can seal to the coordinator under
    Alice's id. The signature inside is what proves Alice made it; Mallory's does not verify."""
    from protocol.envelope import SUITE
    from protocol.labels import FLOW_HPKE_INFO_LABEL, FLOW_REPORT_LABEL

    body = msgspec.msgpack.encode(_report(alice, bob))
    signature = mallory.sign(FLOW_REPORT_LABEL + body)
    info = FLOW_HPKE_INFO_LABEL + alice.node_id + bob.node_id
    sealed = SUITE.encrypt(signature + body, bob.public.encryption_key(), info)
    data = msgspec.msgpack.encode(SealedReport(1, alice.node_id, bob.node_id, sealed))
    with pytest.raises(BadSignature):
        open_report(data, bob, sender_of=_opener(alice, mallory), now_ms=NOW_MS)
