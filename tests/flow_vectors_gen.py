"""Generate the flow report vectors: ``python -m tests.flow_vectors_gen`` (``make vectors``).

Writes docs/vectors/flow-v1.json (PROTOCOL.md 14): a unit and a coordinator (their secret keys, so
another implementation can both seal and open), the exact MessagePack body of a report and its
signature (Ed25519 is deterministic: these recompute), one sealed report that opens to it (HPKE
is randomised, so the sealed bytes are a sample, not a recomputation), and sealed reports a
coordinator must refuse, each with its reason code (14.3), and events before and after the
default TLP policy (14.2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from protocol.envelope import SUITE
from protocol.flow import (
    DEFAULT_WITHHOLD,
    FlowEvent,
    FlowReport,
    LinkState,
    SealedReport,
    UnitState,
    apply_policy,
    seal_report,
)
from protocol.identity import Identity
from protocol.labels import FLOW_HPKE_INFO_LABEL, FLOW_REPORT_LABEL
from tests.conftest import NOW, fixed_identity

OUT = Path(__file__).resolve().parent.parent / "docs" / "vectors" / "flow-v1.json"
MS = NOW * 1000


def _who(ident: Identity) -> dict[str, str]:
    return {
        "secret": ident.secret_bytes().hex(),
        "node_id": ident.node_id.hex(),
        "sign_key": ident.public.sign_key.hex(),
        "enc_key": ident.public.enc_key.hex(),
    }


def parties() -> tuple[Identity, Identity, Identity]:
    return (
        fixed_identity("flow unit"),
        fixed_identity("flow coordinator"),
        fixed_identity("flow peer"),
    )


def report() -> FlowReport:
    unit, coord, peer = parties()
    msg = bytes(range(16))
    return FlowReport(
        v=1,
        unit=unit.node_id,
        coordinator=coord.node_id,
        time=MS + 900,
        through=3,
        events=[
            FlowEvent(
                seq=1,
                at=MS,
                event="queued",
                tlp="AMBER",
                id=msg,
                type="seizure-alert",
                priority="flash",
                recipients=[peer.node_id],
                size="small",
            ),
            FlowEvent(
                seq=2,
                at=MS + 40,
                event="failed",
                tlp="AMBER",
                id=msg,
                type="seizure-alert",
                priority="flash",
                peer=peer.node_id,
                size="small",
                reason="connection refused by belgrade-accu at 127.0.0.1:7443",
            ),
            FlowEvent(
                seq=3,
                at=MS + 850,
                event="delivered",
                tlp="AMBER",
                id=msg,
                type="seizure-alert",
                priority="flash",
                peer=peer.node_id,
                size="small",
                latency_ms=850,
            ),
        ],
        state=UnitState(
            links=[LinkState(peer=peer.node_id, state="ok")],
            key_expires=MS + 300 * 86400 * 1000,
            audit_size=42,
        ),
        policy={"RED": ["recipients", "type"]},
    )


def _sealed_with(
    signer: Identity, coord: Identity, body: bytes, sealer: bytes, claimed: bytes
) -> str:
    """``body`` signed by ``signer``, sealed with ``sealer``'s id in the HPKE info, and sent
    with ``claimed`` as the array's unit id."""
    signature = signer.sign(FLOW_REPORT_LABEL + body)
    info = FLOW_HPKE_INFO_LABEL + sealer + coord.node_id
    sealed = SUITE.encrypt(signature + body, coord.public.encryption_key(), info)
    return msgspec.msgpack.encode(SealedReport(1, claimed, coord.node_id, sealed)).hex()


def build(sealed_samples: bool = True) -> dict[str, Any]:
    unit, coord, peer = parties()
    rep = report()
    body = msgspec.msgpack.encode(rep)
    out: dict[str, Any] = {
        "about": "PROTOCOL.md 14: flow reports. Times in ms; byte strings in hex, but base64 inside the JSON form of a report or event.",
        "unit": _who(unit),
        "coordinator": _who(coord),
        "peer": _who(peer),
        "now_ms": MS + 1000,
        "report_body": body.hex(),
        "report_signature": unit.sign(FLOW_REPORT_LABEL + body).hex(),
        "report": json.loads(msgspec.json.encode(rep)),
        "policy_cases": [
            {
                "policy": {k: list(v) for k, v in DEFAULT_WITHHOLD.items()},
                "event": json.loads(msgspec.json.encode(e)),
                "reported": json.loads(msgspec.json.encode(apply_policy(e, DEFAULT_WITHHOLD))),
            }
            for e in (
                msgspec.structs.replace(rep.events[0], tlp="RED"),
                msgspec.structs.replace(rep.events[1], tlp="RED"),
                msgspec.structs.replace(rep.events[2], tlp="RED"),
                FlowEvent(
                    seq=9, at=MS, event="received", tlp="RED", id=bytes(16), peer=peer.node_id
                ),
                msgspec.structs.replace(rep.events[2], tlp=None),
                rep.events[2],
            )
        ],
    }
    if sealed_samples:
        future = msgspec.msgpack.encode(msgspec.structs.replace(rep, time=MS + 1000 + 301_000))
        other_unit = msgspec.msgpack.encode(msgspec.structs.replace(rep, unit=peer.node_id))
        late = rep.events[-1]
        ahead = msgspec.msgpack.encode(
            msgspec.structs.replace(
                rep,
                events=[*rep.events[:-1], msgspec.structs.replace(late, at=rep.time + 1)],
            )
        )
        out["sealed"] = seal_report(unit, coord.public, rep).hex()
        out["refused"] = [
            {
                "what": "signed by another key under the unit's id",
                "sealed": _sealed_with(peer, coord, body, unit.node_id, unit.node_id),
                "reason": "bad_signature",
            },
            {
                "what": "sealed to another coordinator",
                "sealed": seal_report(
                    unit, peer.public, msgspec.structs.replace(rep, coordinator=peer.node_id)
                ).hex(),
                "reason": "not_recipient",
            },
            {
                "what": "the body names another unit than the array",
                "sealed": _sealed_with(unit, coord, other_unit, unit.node_id, unit.node_id),
                "reason": "malformed",
            },
            {
                "what": "an event dated after the report's time",
                "sealed": _sealed_with(unit, coord, ahead, unit.node_id, unit.node_id),
                "reason": "malformed",
            },
            {
                "what": "made more than 300 s in the future",
                "sealed": _sealed_with(unit, coord, future, unit.node_id, unit.node_id),
                "reason": "clock_skew",
            },
            {
                "what": "the array claims the peer as the sealer (HPKE info binds the unit)",
                "sealed": _sealed_with(unit, coord, body, unit.node_id, peer.node_id),
                "reason": "decryption_failed",
            },
        ]
    return out


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
