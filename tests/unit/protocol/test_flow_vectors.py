"""docs/vectors/flow-v1.json (made by tests/flow_vectors_gen.py), checked as another
implementation would use it (PROTOCOL.md 14): the body and signature recompute, the sample opens to
the report, each refused sample is refused with its reason, and the policy cases hold."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from protocol.errors import Rejected, UnknownSender
from protocol.flow import DEFAULT_WITHHOLD, FlowEvent, FlowReport, apply_policy, open_report
from protocol.identity import Identity, PublicIdentity
from tests.flow_vectors_gen import OUT, build

V = json.loads(Path(OUT).read_text())


def _me(who: str) -> Identity:
    return Identity.from_secret_bytes(bytes.fromhex(V[who]["secret"]))


def _sender_of(node_id: bytes) -> PublicIdentity:
    for who in ("unit", "peer"):
        ident = _me(who)
        if ident.node_id == node_id:
            return ident.public
    raise UnknownSender("not a trusted peer")


def test_14_3_the_vectors_are_what_the_generator_makes() -> None:
    fresh = build(sealed_samples=False)
    assert {k: V[k] for k in fresh} == fresh, (
        "run 'make vectors' and commit docs/vectors/flow-v1.json"
    )


def test_14_3_the_body_and_signature_recompute() -> None:
    unit = _me("unit")
    body = bytes.fromhex(V["report_body"])
    decoded = msgspec.msgpack.decode(body, type=FlowReport)
    assert json.loads(msgspec.json.encode(decoded)) == V["report"]  # bytes as base64 in JSON
    assert unit.sign(b"borderlink/1 flow report\n" + body).hex() == V["report_signature"]


def test_14_3_the_sample_opens_to_the_report() -> None:
    got = open_report(
        bytes.fromhex(V["sealed"]), _me("coordinator"), sender_of=_sender_of, now_ms=V["now_ms"]
    )
    assert msgspec.msgpack.encode(got).hex() == V["report_body"]


@pytest.mark.parametrize("case", V["refused"], ids=[c["reason"] for c in V["refused"]])
def test_14_3_refused_samples(case: dict[str, str]) -> None:
    coordinator = _me("coordinator")
    with pytest.raises(Rejected) as err:
        open_report(
            bytes.fromhex(case["sealed"]), coordinator, sender_of=_sender_of, now_ms=V["now_ms"]
        )
    assert err.value.reason == case["reason"], case["what"]


@pytest.mark.parametrize("case", V["policy_cases"])
def test_14_2_policy_cases(case: dict[str, object]) -> None:
    event = msgspec.json.decode(json.dumps(case["event"]), type=FlowEvent)
    reported = apply_policy(event, DEFAULT_WITHHOLD)
    assert json.loads(msgspec.json.encode(reported)) == case["reported"]
