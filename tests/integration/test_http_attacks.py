"""Every attack of PROTOCOL.md 5-8 and 11.0, performed over HTTPS against real running nodes.

The attacker talks to ``POST /v1/envelopes`` directly with hand-built bodies, over the mutual TLS
channel of the peer whose key it holds (by default the envelope's claimed sender: the checks of
sections 5-8 must hold even against a trusted peer's own channel) or with no certificate at all.
For each attack the node must answer with the exact status and ``{"error": reason}``, store nothing
(``borderlink inbox --json`` is unchanged), and log a ``message.rejected`` event with the reason
and the source address, but never the message plaintext; an anonymous caller is refused before any
of that, and nothing of its request is audited.
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from keys.card import parse_card
from keys.keystore import open_keystore, read_keystore_file
from keys.tls import make_certificate
from node.http.responses import HTTP_STATUS
from protocol.batch import BATCH_CONTENT_TYPE, BATCH_PATH, BatchResponse, encode_batch
from protocol.envelope import (
    CONTENT_NONCE,
    SUITE,
    Envelope,
    decode_envelope,
    hpke_info,
    seal,
)
from protocol.errors import Rejected
from protocol.identity import Identity, PublicIdentity
from protocol.labels import MAX_ENVELOPE_BYTES, MAX_RECIPIENTS
from protocol.padding import unpad
from protocol.schemas import encode_body, template
from tests.attacker import craft
from tests.integration.harness import PASSPHRASE, NodeProc, make_network, stop_all
from tests.integration.waiting import PATIENCE, log_events, wait_until
from tests.tlsclient import anonymous, peer_context

NAMES = ["bar-pcu", "belgrade-accu", "skopje-coord"]
DAY = 86400
# A narrative no log line may ever contain: it only exists inside encrypted payloads.
CANARY = "Canary narrative 7f3c: reefer MSCU-CANARY held at berth nine"


def alert_body(narrative: str = CANARY) -> bytes:
    return encode_body(msgspec.structs.replace(template("seizure-alert"), narrative=narrative))


@dataclass(frozen=True)
class Net:
    root: Path
    nodes: dict[str, NodeProc]
    keys: dict[str, Identity]  # secret keys, read from each node's keystore

    def card(self, name: str) -> PublicIdentity:
        """A peer's public identity as anyone holding its card knows it."""
        return parse_card((self.root / f"{name}.card").read_text(), now=None).identity


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("attacks")
    nodes = make_network(root, NAMES)
    try:
        keys = {
            name: Identity.from_secret_bytes(
                open_keystore(read_keystore_file(node.home / "keystore.json"), PASSPHRASE.encode())
            )
            for name, node in nodes.items()
        }
        yield Net(root, nodes, keys)
    finally:
        stop_all(nodes)


# -- the attacker's tools ---------------------------------------------------------------------


ANONYMOUS = "anonymous"


def channel(net: Net, node: NodeProc, body: bytes, via: str | None) -> ssl.SSLContext:
    """The TLS context an attack is sent with: ``via`` names the peer whose channel is used
    (``ANONYMOUS``: none); by default the first envelope's claimed sender if it is a node of the
    net, else Bar (Belgrade when Bar is the target)."""
    if via == ANONYMOUS:
        return anonymous()
    if via is None:
        via = "belgrade-accu" if node.name == "bar-pcu" else "bar-pcu"
        try:
            first = msgspec.msgpack.decode(body, type=list[bytes])[0]
            claimed = decode_envelope(first).sender
        except (msgspec.DecodeError, IndexError, Rejected):
            claimed = b""
        for name, key in net.keys.items():
            if key.node_id == claimed and name != node.name:
                via = name
    return net.nodes[via].as_peer_of(node)


def post(
    net: Net,
    node: NodeProc,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    via: str | None = None,
) -> tuple[int, bytes]:
    req = urllib.request.Request(
        node.url + BATCH_PATH,
        data=body,
        method="POST",
        headers={"Content-Type": BATCH_CONTENT_TYPE, **(headers or {})},
    )
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=channel(net, node, body, via)),
    )
    try:
        with opener.open(req, timeout=PATIENCE) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def sealed(net: Net, sender: str | Identity, to: str, **kw: Any) -> Envelope:
    signer = net.keys[sender] if isinstance(sender, str) else sender
    args: dict[str, Any] = {"now": int(time.time()), "ttl": DAY}
    args.update(kw)
    body = args.pop("body", alert_body())
    return seal(signer, [net.card(to)], "seizure-alert", body, **args)


# -- what the node must do ----------------------------------------------------------------------


def assert_no_plaintext_logged(net: Net) -> None:
    for node in net.nodes.values():
        text = node.log.read_text(errors="replace")
        assert CANARY not in text and "MSCU-CANARY" not in text, f"plaintext in {node.name}'s log"


def assert_rejected(
    net: Net, node: NodeProc, body: bytes, reason: str, status: int, *, via: str | None = None
) -> dict[str, Any]:
    """POST ``body``; the answer, the inbox and the log must show one clean, audited refusal."""
    assert HTTP_STATUS[reason] == status
    inbox = node.json("inbox")["items"]
    offset = node.log.stat().st_size
    got, answer = post(net, node, body, via=via)
    assert (got, json.loads(answer)["error"]) == (status, reason), answer
    assert node.json("inbox")["items"] == inbox
    event = wait_for_event(node, offset, "message.rejected")
    assert event["reason"] == reason and event["source"] == "127.0.0.1", event
    assert_no_plaintext_logged(net)
    return event


def wait_for_event(node: NodeProc, offset: int, name: str) -> dict[str, Any]:
    """The one ``name`` event in the node's log since byte ``offset``. The node may log it after
    answering, so it is waited for; once there, a second one would be a fault."""
    events = wait_until(
        lambda: log_events(node, name, offset), f"a {name} event in {node.name}'s log"
    )
    assert len(events) == 1, f"expected one {name} event, got {events}"
    return events[0]


def accept(net: Net, node: NodeProc, envelope: bytes) -> BatchResponse:
    status, answer = post(net, node, encode_batch([envelope]))
    assert status == 200, answer
    resp = msgspec.msgpack.decode(answer, type=BatchResponse)
    assert [r.outcome for r in resp.results] == ["accepted"]
    return resp


# -- tampering and forgery ----------------------------------------------------------------------


def test_tampered_payload_bit(net: Net) -> None:
    env = sealed(net, "bar-pcu", "belgrade-accu")
    env.payload = env.payload[:100] + bytes([env.payload[100] ^ 0x04]) + env.payload[101:]
    event = assert_rejected(
        net, net.nodes["belgrade-accu"], encode_batch([env.encode()]), "decryption_failed", 422
    )
    assert event["claimed_sender"] == net.keys["bar-pcu"].node_id.hex()


def test_tampered_header_created(net: Net) -> None:
    """``created`` is in the AEAD's associated data and under the signature."""
    env = sealed(net, "bar-pcu", "belgrade-accu")
    env.created -= 60
    assert_rejected(
        net, net.nodes["belgrade-accu"], encode_batch([env.encode()]), "decryption_failed", 422
    )


def test_forged_signature_claiming_a_trusted_peer(net: Net) -> None:
    """Mallory encrypts correctly to Belgrade and claims to be Bar, but signs with her own key."""
    mallory = Identity.generate()
    data = craft(
        mallory,
        net.keys["bar-pcu"].node_id,
        [net.card("belgrade-accu")],
        [net.card("belgrade-accu").node_id],
        body=alert_body(),
    )
    assert_rejected(net, net.nodes["belgrade-accu"], encode_batch([data]), "bad_signature", 422)


@pytest.fixture(scope="module")
def received(net: Net) -> tuple[Envelope, bytes, bytes]:
    """A message Bar really sent to Belgrade, and what Belgrade learned from it: signature, body."""
    env = sealed(net, "bar-pcu", "belgrade-accu")
    accept(net, net.nodes["belgrade-accu"], env.encode())
    bel = net.keys["belgrade-accu"]
    key = SUITE.decrypt(
        env.slots[0].key, bel.decryption_key, hpke_info(env.sender, bel.node_id, env.id)
    )
    plain = unpad(ChaCha20Poly1305(key).decrypt(CONTENT_NONCE, env.payload, env.header()))
    return env, plain[:64], plain[64:]


@pytest.mark.parametrize(
    ("variant", "via", "reason", "status"),
    [
        ("relabelled", "belgrade-accu", "channel_mismatch", 403),
        ("kept-recipients", "belgrade-accu", "channel_mismatch", 403),
        ("relabelled", "bar-pcu", "bad_signature", 422),
        ("kept-recipients", "bar-pcu", "not_recipient", 403),
    ],
)
def test_surreptitious_forwarding(
    net: Net,
    received: tuple[Envelope, bytes, bytes],
    variant: str,
    via: str,
    reason: str,
    status: int,
) -> None:
    """Belgrade re-encrypts Bar's signed alert to Skopje, still claiming Bar sent it (Davis).

    Over its own channel Belgrade is refused before any cryptography (PROTOCOL.md 11.0); even
    over Bar's channel (an attacker holding Bar's TLS key but not its signing key), the envelope
    checks of section 6 refuse it."""
    env, signature, body = received
    skopje = net.card("skopje-coord")
    signed_for = [skopje.node_id] if variant == "relabelled" else list(env.recipients)
    data = craft(
        net.keys["belgrade-accu"],
        env.sender,
        [skopje],
        signed_for,
        body=body,
        signature=signature,
        msg_id=env.id,
        created=env.created,
        expires=env.expires,
    )
    assert_rejected(net, net.nodes["skopje-coord"], encode_batch([data]), reason, status, via=via)


# -- who may send, to whom ------------------------------------------------------------------------


def test_wrong_recipient(net: Net) -> None:
    data = sealed(net, "bar-pcu", "belgrade-accu").encode()
    assert_rejected(net, net.nodes["skopje-coord"], encode_batch([data]), "not_recipient", 403)


def test_unknown_sender_over_a_peers_channel(net: Net) -> None:
    """A trusted peer passing on a stranger's envelope: refused before any cryptography."""
    stranger = Identity.generate()
    data = sealed(net, stranger, "belgrade-accu").encode()
    event = assert_rejected(
        net, net.nodes["belgrade-accu"], encode_batch([data]), "channel_mismatch", 403
    )
    assert event["claimed_sender"] == stranger.node_id.hex()


def assert_unauthenticated(net: Net, node: NodeProc, body: bytes, **headers: str) -> None:
    """POST ``body`` with no client certificate: 401 before the body is read, nothing stored,
    nothing audited, no ``message.rejected`` event naming anyone."""
    inbox, audit = node.json("inbox")["items"], node.json("status")["audit"]["size"]
    offset = node.log.stat().st_size
    got, answer = post(net, node, body, headers, via=ANONYMOUS)
    assert (got, json.loads(answer)["error"]) == (401, "unauthenticated"), answer
    assert node.json("inbox")["items"] == inbox
    assert node.json("status")["audit"]["size"] == audit
    assert log_events(node, "message.rejected", offset) == []


def test_anonymous_caller_claiming_a_trusted_peer(net: Net) -> None:
    """Today's attack: a caller with no key names Bar (header and envelope) to make Belgrade
    decrypt, verify and audit junk as Bar's. Now it costs Belgrade nothing."""
    bar = net.keys["bar-pcu"]
    data = craft(
        Identity.generate(),
        bar.node_id,
        [net.card("belgrade-accu")],
        [net.card("belgrade-accu").node_id],
        body=alert_body(),
    )
    assert_unauthenticated(
        net,
        net.nodes["belgrade-accu"],
        encode_batch([data]),
        **{"X-Borderlink-Sender": bar.node_id.hex()},
    )


def test_a_strangers_certificate_gets_no_connection(net: Net) -> None:
    """A client certificate no trusted peer's card pins: the TLS handshake fails, nothing else
    happens."""
    bel = net.nodes["belgrade-accu"]
    stranger = Identity.generate()
    context = peer_context(stranger, make_certificate(stranger, now=int(time.time())), bel.cert)
    inbox = bel.json("inbox")["items"]
    req = urllib.request.Request(bel.url + "/v1/card")
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
        with opener.open(req, timeout=PATIENCE) as resp:
            resp.read()
    assert bel.json("inbox")["items"] == inbox


def test_removed_peer(net: Net) -> None:
    """Skopje forgets Belgrade while running; Belgrade's next request is anonymous to Skopje
    (its certificate still completes a handshake, but names no trusted peer)."""
    skopje = net.nodes["skopje-coord"]
    accept(net, skopje, sealed(net, "belgrade-accu", "skopje-coord").encode())
    skopje.cli("peers", "remove", "belgrade-accu")
    data = sealed(net, "belgrade-accu", "skopje-coord").encode()
    inbox, audit = skopje.json("inbox")["items"], skopje.json("status")["audit"]["size"]
    got, answer = post(net, skopje, encode_batch([data]), via="belgrade-accu")
    assert (got, json.loads(answer)["error"]) == (401, "unauthenticated"), answer
    assert skopje.json("inbox")["items"] == inbox
    assert skopje.json("status")["audit"]["size"] == audit


# -- time -----------------------------------------------------------------------------------------


def test_expired_message(net: Net) -> None:
    data = sealed(net, "bar-pcu", "belgrade-accu", now=int(time.time()) - 7200, ttl=3600).encode()
    assert_rejected(net, net.nodes["belgrade-accu"], encode_batch([data]), "expired", 422)


def test_created_far_in_the_future(net: Net) -> None:
    data = sealed(net, "bar-pcu", "belgrade-accu", now=int(time.time()) + 3600).encode()
    assert_rejected(net, net.nodes["belgrade-accu"], encode_batch([data]), "clock_skew", 422)


# -- replay -----------------------------------------------------------------------------------------


def test_exact_replay_returns_the_original_receipt(net: Net) -> None:
    bel = net.nodes["belgrade-accu"]
    env = sealed(net, "bar-pcu", "belgrade-accu")
    first = accept(net, bel, env.encode())
    inbox = bel.json("inbox")["items"]
    status, answer = post(net, bel, encode_batch([env.encode()]))
    assert status == 200
    again = msgspec.msgpack.decode(answer, type=BatchResponse)
    assert [(r.outcome, r.id) for r in again.results] == [("duplicate", env.id)]
    assert again.receipts == first.receipts
    assert bel.json("inbox")["items"] == inbox
    assert [m["id"] for m in inbox].count(env.id.hex()) == 1
    assert_no_plaintext_logged(net)


def test_same_id_different_content_is_a_replay(net: Net) -> None:
    """Even the real sender's key cannot reuse an accepted id for a different message."""
    bel = net.nodes["belgrade-accu"]
    env = sealed(net, "bar-pcu", "belgrade-accu")
    accept(net, bel, env.encode())
    other = sealed(net, "bar-pcu", "belgrade-accu", msg_id=env.id, body=alert_body(CANARY + " v2"))
    assert_rejected(net, bel, encode_batch([other.encode()]), "replay", 409)
    shown = bel.json("inbox", "show", env.id.hex())
    assert shown["message"]["narrative"] == CANARY


# -- size and shape ---------------------------------------------------------------------------------


def declared_oversize(net: Net, node: NodeProc) -> tuple[int, bytes]:
    """Declare a body one byte over ``limits.max_body`` but send none: the answer must not wait."""
    context = net.nodes["bar-pcu"].as_peer_of(node)
    conn = http.client.HTTPSConnection("127.0.0.1", node.port, timeout=PATIENCE, context=context)
    try:
        conn.putrequest("POST", BATCH_PATH)
        conn.putheader("Content-Type", BATCH_CONTENT_TYPE)
        conn.putheader("Content-Length", str(8 * 1024 * 1024 + 1))
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_declared_oversize_body_refused_without_reading(net: Net) -> None:
    bel = net.nodes["belgrade-accu"]
    inbox = bel.json("inbox")["items"]
    status, answer = declared_oversize(net, bel)
    assert (status, json.loads(answer)["error"]) == (413, "oversize")
    assert bel.json("inbox")["items"] == inbox


def test_declared_oversize_body_is_audited(net: Net) -> None:
    bel = net.nodes["belgrade-accu"]
    offset = bel.log.stat().st_size
    assert declared_oversize(net, bel)[0] == 413
    event = wait_for_event(bel, offset, "message.rejected")
    assert event["reason"] == "oversize" and event["source"] == "127.0.0.1"


def test_envelope_over_one_mib_in_a_batch(net: Net) -> None:
    body = encode_batch([b"\x00" * (MAX_ENVELOPE_BYTES + 1)])
    assert_rejected(net, net.nodes["belgrade-accu"], body, "oversize", 413)


def test_too_many_recipients(net: Net) -> None:
    env = sealed(net, "bar-pcu", "belgrade-accu")
    env.recipients = sorted(
        [net.card("belgrade-accu").node_id] + [bytes([i]) * 32 for i in range(MAX_RECIPIENTS)]
    )
    assert_rejected(
        net, net.nodes["belgrade-accu"], encode_batch([env.encode()]), "too_many_recipients", 400
    )


@pytest.mark.parametrize(
    "body",
    [
        random.Random(1337).randbytes(512),
        b"",
        json.dumps({"envelopes": ["aGVsbG8="]}).encode(),
        encode_batch([b"not an envelope"]),
        msgspec.msgpack.encode({"v": 1}),
    ],
    ids=["random", "empty", "json", "garbage-envelope", "map-not-array"],
)
def test_garbage_body(net: Net, body: bytes) -> None:
    assert_rejected(net, net.nodes["belgrade-accu"], body, "malformed", 400)


def test_batch_over_max_batch(net: Net) -> None:
    body = encode_batch([b"x"] * 257)  # limits.max_batch defaults to 256
    assert_rejected(net, net.nodes["belgrade-accu"], body, "malformed", 400)


def test_invalid_signed_body_leaves_no_plaintext_in_the_log(net: Net) -> None:
    """A trusted peer's signed body that fails the schema: refused, but its values stay secret."""
    bel = net.nodes["belgrade-accu"]
    body = json.loads(alert_body())
    body["conveyance"]["container_number"] = "LEAKCANARY9"  # not an ISO 6346 number
    env = sealed(net, "bar-pcu", "belgrade-accu", body=json.dumps(body).encode())
    inbox, offset = bel.json("inbox")["items"], bel.log.stat().st_size
    status, answer = post(net, bel, encode_batch([env.encode()]))
    assert (status, json.loads(answer)["error"]) == (400, "malformed")
    assert bel.json("inbox")["items"] == inbox
    event = wait_for_event(bel, offset, "message.rejected")
    assert event["reason"] == "malformed" and event["source"] == "127.0.0.1"
    assert "LEAKCANARY9" not in bel.log.read_bytes()[offset:].decode(errors="replace")
