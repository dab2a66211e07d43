"""Flow reports (PROTOCOL.md 14): what a unit tells its coordinator about how its messages move.

A report carries metadata only, never a body, narrative or person: for each event of the unit's
outbox and inbox (queued, delivered, failed, expired, rejected, received, acknowledged) the
message id, type, priority, TLP, the other party, a size bucket and a latency; and a snapshot of
the unit's state (each link's depth, oldest undelivered message, failing since when and why, next
retry; its key's expiry; its audit log's size). The unit withholds fields by TLP before sealing
(:func:`withhold`), and every event says what it withheld, so a coordinator can show "withheld"
rather than nothing.

Seal: sign ``FLOW_REPORT_LABEL || body`` with the unit's Ed25519 key, then encrypt
``signature || body`` to the coordinator with single-shot HPKE (the envelope's suite), binding both
node ids in ``info``. The report is evidence the coordinator keeps; a replayed or reordered report
changes nothing, because events are keyed by (unit, seq) and a state snapshot older than the one
held is ignored. Pure: no I/O, no clock (``now`` is passed in).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Final, Literal

import msgspec
from cryptography.exceptions import InvalidTag

from protocol.decoding import Decoder
from protocol.envelope import SUITE
from protocol.errors import (
    BadSignature,
    ClockSkew,
    DecryptionFailed,
    Malformed,
    NotForMe,
    Oversize,
    ValidationError,
)
from protocol.identity import Identity, PublicIdentity, verify_signature
from protocol.labels import (
    DEFAULT_CLOCK_SKEW_SECONDS,
    FLOW_HPKE_INFO_LABEL,
    FLOW_REPORT_LABEL,
    MAX_FLOW_EVENTS,
    MAX_FLOW_REPORT_BYTES,
)

FLOW_VERSION: Final = 1
SIGNATURE_BYTES: Final = 64
NodeId = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
MsgId = Annotated[bytes, msgspec.Meta(min_length=16, max_length=16)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**62)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=2**53)]  # Unix time in milliseconds
Word = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_+\-]+$")]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]

EventKind = Literal[
    "queued", "delivered", "failed", "expired", "rejected", "received", "acknowledged"
]
OUTBOUND: Final = frozenset({"delivered", "failed", "expired", "rejected"})
INBOUND: Final = frozenset({"received", "acknowledged"})
Tlp = Literal["RED", "AMBER+STRICT", "AMBER", "GREEN", "CLEAR"]
TLPS: Final[tuple[Tlp, ...]] = ("RED", "AMBER+STRICT", "AMBER", "GREEN", "CLEAR")
Priority = Literal["routine", "urgent", "flash"]
Size = Literal["small", "medium", "large"]  # envelope <= 4 KiB, <= 64 KiB, larger
# What a unit may withhold from an event. "recipients" hides who a message went to: on an
# outbound event the peer and the reason (a failure's words name the recipient and its address),
# on "queued" the recipient list, and on an inbound event (whose reporter is itself a recipient)
# the message id and the sender, which would otherwise link it to the sender's report. "peer"
# hides the other party of any event.
Withholdable = Literal[
    "id", "type", "priority", "recipients", "peer", "size", "latency", "reason", "action"
]
WITHHOLDABLE: Final[frozenset[str]] = frozenset(Withholdable.__args__)  # type: ignore[attr-defined]
DEFAULT_WITHHOLD: Final[Mapping[str, tuple[str, ...]]] = {"RED": ("recipients", "type")}


class FlowEvent(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """One thing that happened to one message at the reporting unit."""

    seq: Seq  # the unit's own sequence: strictly increasing, never reused
    at: Millis
    event: EventKind
    tlp: Tlp | None = None  # None: not known (a message stored before tlp was kept)
    id: MsgId | None = None
    type: Word | None = None
    priority: Priority | None = None
    peer: NodeId | None = None  # outbound: the recipient; inbound: the sender
    recipients: Annotated[list[NodeId], msgspec.Meta(max_length=64)] | None = None  # queued
    size: Size | None = None
    latency_ms: Millis | None = None  # delivered: since queued; received: since created
    reason: Reason | None = None  # failed, rejected: why, in words
    action: Word | None = None  # acknowledged: the feedback action
    withheld: Annotated[list[Withholdable], msgspec.Meta(max_length=16)] = []


LinkStateName = Literal["ok", "retrying", "blocked", "revoked", "idle"]


class LinkState(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """The unit's delivery to one peer, as it stood when the report was made."""

    peer: NodeId
    state: LinkStateName
    depth: Count = 0  # entries still to deliver
    oldest_ms: Millis | None = None  # queued time of the oldest of them
    failing_since_ms: Millis | None = None
    reason: Reason | None = None
    next_retry_ms: Millis | None = None


class UnitState(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    links: Annotated[list[LinkState], msgspec.Meta(max_length=1024)] = []
    key_expires: Millis | None = None
    key_status: Literal["ok", "expiring", "expired", "revoked"] = "ok"
    audit_size: Count = 0
    witness_alarms: Count = 0  # rollbacks, forks and bad proofs this unit holds evidence of


class FlowReport(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    v: int
    unit: NodeId
    coordinator: NodeId
    time: Millis  # when the unit made it
    through: Count  # every event of the unit up to this seq was in this or an earlier report
    events: Annotated[list[FlowEvent], msgspec.Meta(max_length=MAX_FLOW_EVENTS)] = []
    state: UnitState = msgspec.field(default_factory=UnitState)
    # What the unit withholds for each TLP (its policy, so the coordinator can say so).
    policy: dict[Tlp, list[Withholdable]] = {}


class SealedReport(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    v: int
    sender: NodeId
    recipient: NodeId
    sealed: Annotated[bytes, msgspec.Meta(max_length=MAX_FLOW_REPORT_BYTES)]


_ENC = msgspec.msgpack.Encoder()
_REPORT = Decoder[FlowReport](FlowReport, fmt="msgpack", what="flow report")
_SEALED = Decoder[SealedReport](SealedReport, fmt="msgpack", what="sealed flow report")


def size_bucket(nbytes: int) -> Size:
    return "small" if nbytes <= 4096 else "medium" if nbytes <= 65536 else "large"


def withhold(event: FlowEvent, fields: Sequence[str]) -> FlowEvent:
    """``event`` with ``fields`` removed and each field of the policy named in ``withheld``
    (PROTOCOL.md 14.2); names that are not withholdable are ignored."""
    changes: dict[str, object] = {}
    withheld: set[str] = set()
    for f in fields:
        if f not in WITHHOLDABLE:
            continue
        withheld.add(f)
        if f == "recipients":
            if event.event == "queued":
                changes["recipients"] = None
            elif event.event in OUTBOUND:  # a failure's reason names where it went
                changes["peer"] = changes["reason"] = None
            else:  # the reporter is a recipient: the id and sender would link it to the sender
                changes["id"] = changes["peer"] = None
        elif f == "latency":
            changes["latency_ms"] = None
        else:
            changes[f] = None
    if not withheld:
        return event
    return msgspec.structs.replace(event, **changes, withheld=sorted(withheld))


def apply_policy(event: FlowEvent, policy: Mapping[Any, Sequence[str]]) -> FlowEvent:
    """The event as the unit reports it: withheld by its TLP; an event of unknown TLP is
    treated as TLP:RED, the strictest, since nothing says it may be shared."""
    return withhold(event, policy.get(event.tlp or "RED", ()))


def seal_report(me: Identity, coordinator: PublicIdentity, report: FlowReport) -> bytes:
    body = _ENC.encode(report)
    signature = me.sign(FLOW_REPORT_LABEL + body)
    info = FLOW_HPKE_INFO_LABEL + me.node_id + coordinator.node_id
    sealed = SUITE.encrypt(signature + body, coordinator.encryption_key(), info)
    return _ENC.encode(SealedReport(FLOW_VERSION, me.node_id, coordinator.node_id, sealed))


def report_sender(data: bytes) -> bytes:
    """Who claims to have sent a sealed report (unauthenticated: for the channel check)."""
    return _outer(data).sender


def _outer(data: bytes) -> SealedReport:
    if len(data) > MAX_FLOW_REPORT_BYTES + 128:
        raise Oversize(f"flow report is {len(data)} bytes; the limit is {MAX_FLOW_REPORT_BYTES}")
    try:
        outer = _SEALED.decode(data)
    except ValidationError as exc:
        raise Malformed(exc.message) from exc
    if outer.v != FLOW_VERSION:
        raise Malformed(f"unsupported flow report version {outer.v}")
    return outer


def open_report(
    data: bytes,
    me: Identity,
    *,
    sender_of: Callable[[bytes], PublicIdentity],
    now_ms: int,
    skew_ms: int = DEFAULT_CLOCK_SKEW_SECONDS * 1000,
) -> FlowReport:
    """Check in the order of PROTOCOL.md 14.3: structure, addressed to me, sender trusted
    (``sender_of`` raises if not), decryption, signature, then the report itself."""
    outer = _outer(data)
    if outer.recipient != me.node_id:
        raise NotForMe("this flow report is for another coordinator")
    sender = sender_of(outer.sender)
    info = FLOW_HPKE_INFO_LABEL + outer.sender + me.node_id
    for private in me.decryption_keys(now_ms // 1000):
        try:
            plain = SUITE.decrypt(outer.sealed, private, info)
            break
        except (InvalidTag, ValueError):
            continue
    else:
        raise DecryptionFailed("flow report does not decrypt with this node's keys")
    if len(plain) < SIGNATURE_BYTES:
        raise Malformed("plaintext is shorter than a signature")
    signature, body = plain[:SIGNATURE_BYTES], plain[SIGNATURE_BYTES:]
    verify_signature(sender.verifier(), signature, FLOW_REPORT_LABEL + body)
    try:
        report = _REPORT.decode(body)
    except ValidationError as exc:
        raise Malformed(f"signed flow report field {exc.path or '<root>'}: {exc.rule}") from exc
    if report.v != FLOW_VERSION:
        raise Malformed(f"unsupported flow report version {report.v}")
    seqs = [e.seq for e in report.events]
    if any(b <= a for a, b in itertools.pairwise(seqs)):
        raise Malformed("events must be in strictly increasing seq order")
    if seqs and seqs[-1] > report.through:
        raise Malformed("an event's seq is beyond the report's 'through'")
    if any(e.at > report.time for e in report.events):
        # An event dated after its report would sit at the top of every time-ordered view
        # (the dashboard's window) however old the report is: found by an attack review.
        raise Malformed("an event is dated after the report that carries it")
    if report.unit != outer.sender or report.coordinator != me.node_id:
        raise Malformed("the signed report names another unit or coordinator than its array")
    if report.time > now_ms + skew_ms:
        raise ClockSkew("flow report was made in the future beyond the allowed clock skew")
    return report


__all__ = [
    "DEFAULT_WITHHOLD",
    "TLPS",
    "WITHHOLDABLE",
    "BadSignature",
    "FlowEvent",
    "FlowReport",
    "LinkState",
    "SealedReport",
    "UnitState",
    "apply_policy",
    "open_report",
    "report_sender",
    "seal_report",
    "size_bucket",
    "withhold",
]
