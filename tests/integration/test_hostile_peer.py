"""A trusted peer turned hostile, against real running nodes (attack9 F2, F3, F4).

Bar is the target; Belgrade is a trusted peer that talks to it over its own mutual TLS channel
(or a stranger, Zagreb, who gets a card of its own past the custodian). Each test does what the
finding's repro did and asserts on what a custodian can count: exit codes, answers, inbox and
audit entries.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from keys.card import parse_card
from protocol.batch import BATCH_CONTENT_TYPE, BATCH_PATH, BatchResponse, encode_batch
from protocol.envelope import Envelope, seal
from protocol.identity import Identity, PublicIdentity
from protocol.schemas import encode_body, template
from tests.hostile_cards import card_pinning
from tests.integration.harness import PASSPHRASE, NodeProc, make_network, one_line_error, stop_all
from tests.integration.waiting import PATIENCE
from tests.tlsclient import home_identity

BAR, BELGRADE = "bar-pcu", "belgrade-accu"
DAY = 86400
# Budgets out of the way: these tests count what the node does with a batch, not what it refuses
# before reading one.
UNBOUNDED = {"BORDERLINK_LIMITS_PEER_RATE": "1000000", "BORDERLINK_LIMITS_PEER_BURST": "1000000"}


@dataclass(frozen=True)
class Net:
    root: Path
    nodes: dict[str, NodeProc]

    @property
    def bar(self) -> NodeProc:
        return self.nodes[BAR]

    @property
    def belgrade(self) -> NodeProc:
        return self.nodes[BELGRADE]

    def public(self, name: str) -> PublicIdentity:
        return parse_card((self.root / f"{name}.card").read_text(), now=None).identity


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("hostile")
    nodes = make_network(root, [BAR, BELGRADE], extra_env=UNBOUNDED)
    try:
        yield Net(root, nodes)
    finally:
        stop_all(nodes)


def post(net: Net, envelopes: list[bytes]) -> tuple[int, bytes]:
    """Belgrade posts a batch to Bar over Belgrade's own channel."""
    req = urllib.request.Request(
        net.bar.url + BATCH_PATH,
        data=encode_batch(envelopes),
        method="POST",
        headers={"Content-Type": BATCH_CONTENT_TYPE},
    )
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=net.belgrade.as_peer_of(net.bar)),
    )
    try:
        with opener.open(req, timeout=PATIENCE) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def outcomes(answer: bytes) -> list[tuple[str, str | None]]:
    resp = msgspec.msgpack.decode(answer, type=BatchResponse)
    return [(r.outcome, r.reason) for r in resp.results]


def from_belgrade(net: Net, type_name: str = "seizure-alert", body: Any = None) -> bytes:
    signer = home_identity(net.belgrade.home, PASSPHRASE)
    env = seal(
        signer,
        [net.public(BAR)],
        type_name,  # type: ignore[arg-type]
        encode_body(body if body is not None else template(type_name)),
        now=int(time.time()),
        ttl=DAY,
    )
    return env.for_recipient(net.public(BAR).node_id).encode()


# -- F2: a card pinning a copy of another peer's certificate -------------------------------------


def test_f2_a_card_pinning_a_copy_of_a_peers_certificate_is_refused_and_the_peer_keeps_its_channel(
    net: Net,
) -> None:
    zagreb = Identity.generate()
    card = net.root / "zagreb-jaitf.card"
    card.write_text(card_pinning(zagreb, "zagreb-jaitf", net.belgrade.cert, now=int(time.time())))
    added = net.bar.cli(
        "peers", "add", str(card), "--fingerprint", zagreb.public.fingerprint, check=False
    )
    one_line_error(
        added,
        5,
        "card field tls_cert: is issued to common name "
        f"'{net.public(BELGRADE).node_id.hex()}', not to this card's node id {zagreb.node_id.hex()}",
    )
    assert [p["name"] for p in net.bar.json("peers", "list")] == [BELGRADE]
    status, answer = post(net, [from_belgrade(net)])
    assert status == 200, answer
    assert outcomes(answer) == [("accepted", None)]


# -- F3: a batch of copies costs the node one opening at most ---------------------------------------


def test_f3_copies_of_a_stored_message_are_answered_duplicate_without_opening(net: Net) -> None:
    data = from_belgrade(net)
    status, answer = post(net, [data])
    assert status == 200 and outcomes(answer) == [("accepted", None)], answer
    receipt = msgspec.msgpack.decode(answer, type=BatchResponse).receipts
    status, answer = post(net, [data] * 256)
    assert status == 200, answer
    assert outcomes(answer) == [("duplicate", None)] * 256
    assert msgspec.msgpack.decode(answer, type=BatchResponse).receipts == receipt
    # What shows nothing was opened: with its key slot zeroed, a copy would fail decryption if
    # it were; its header and payload, all the content hash covers, are the stored message's.
    env = msgspec.msgpack.decode(data, type=Envelope)
    env.slots[0].key = bytes(len(env.slots[0].key))
    status, answer = post(net, [env.encode()] * 256)
    assert status == 200, answer
    assert outcomes(answer) == [("duplicate", None)] * 256
    inbox = net.bar.json("inbox")["items"]
    assert len([m for m in inbox if m["id"] == env.id.hex()]) == 1


# -- F4: one refused envelope re-posted does not grow the audit log one entry a copy ----------------


def rejected_entries(net: Net, outcome: str) -> list[dict[str, Any]]:
    items = net.bar.json("audit", "log", "--kind", "message.rejected")["items"]
    return [e for e in items if e.get("outcome") == outcome]


def test_f4_one_foreign_reference_posted_2560_times_gives_a_dozen_audit_entries(net: Net) -> None:
    feedback = msgspec.structs.replace(template("feedback"), refers_to=(b"\x42" * 16).hex())
    data = from_belgrade(net, "feedback", feedback)
    for _ in range(10):
        status, answer = post(net, [data] * 256)
        assert status == 200, answer
        assert set(outcomes(answer)) == {("rejected", "foreign_reference")}
    entries = rejected_entries(net, "foreign_reference")
    assert len(entries) == 12  # the 1st, 2nd, 4th ... 2048th
    assert entries[-1]["detail"].startswith("2048 so far from this sender")
