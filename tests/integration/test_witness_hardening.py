"""Witnessing against hostile answers (PROTOCOL.md 12.3), each bug pinned with real aiohttp servers
on 127.0.0.1 and real nodes (not started: the tests call the peer API and the witness directly).

Bob keeps the log; Alice witnesses it. Every server here speaks mutual TLS as a node does (bob's
certificate, alice's trusted as a client), and alice calls with the context her node builds. A
proxy between them stands for whatever holds bob's TLS key but not his signing key (a TLS
terminator in front of the node): it can change the unsigned consistency proof, not the notes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestClient, TestServer
from structlog.testing import capture_logs

from keys.card import make_card
from keys.trust import PeerRecord
from node.config import Config, Limits
from node.daemon import Node
from node.home import Home
from node.peer_info import PeerInfo
from node.runtime import Clock, wall_clock
from protocol.audit import origin_of
from protocol.checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    cosign,
    open_checkpoint,
    sign_checkpoint,
    verify_cosignature,
)
from protocol.errors import AuditError
from protocol.signednote import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    SIG_PREFIX,
    Verifier,
    key_id,
    parse_note,
)
from protocol.signednote import public_key_bytes as raw_key
from tests.conftest import NOW, fixed_identity
from tests.integration.waiting import PATIENCE
from tests.stores import audit

COSIGNATURE = "/v1/audit/cosignature"


def make_node(root: Path, name: str, clock: Clock = wall_clock, **limits: Any) -> Node:
    ident = fixed_identity(name)
    home = Home(root / name)
    home.create()
    now = int(clock())
    card = make_card(
        ident,
        name=name,
        unit_type="PCU",
        country="ME",
        location="MEBAR",
        endpoints=["http://127.0.0.1:1"],
        valid_from=now - 10,
        valid_until=now + 86400,
    )
    home.card.write_text(card.armored())
    return Node(home, Config(limits=Limits(**limits)), ident, clock)


def trust(node: Node, other: Node) -> None:
    with node.store.unit(node.clock()) as u:
        u.put_peer(
            PeerRecord(
                name=other.card.name,
                node_id=other.identity.node_id,
                fingerprint=other.card.identity.fingerprint,
                card=other.card_text,
                verified_by="fingerprint",
                added_at=int(node.clock()),
            )
        )


def peer_app(node: Node) -> web.Application:
    return node.peer_app()


async def serve_as(node: Node, app: web.Application) -> TestServer:
    """``app`` on 127.0.0.1 over mutual TLS, with ``node``'s certificate and client trust."""
    server = TestServer(app)
    trusted = await node.admission.trusted_certificates()
    await server.start_server(ssl=node.tls.server_context(trusted))
    return server


def calling(caller: Node, server: TestServer, callee: Node) -> TestClient[Any, Any]:
    """A client of ``server`` as ``caller`` (its certificate), pinning ``callee``'s."""
    cert = callee.card.body.tls_cert
    assert cert is not None
    ctx = caller.tls.client_context(cert)
    return TestClient(server, connector=aiohttp.TCPConnector(ssl=ctx))


def peer_at(log: Node, server: BaseTestServer) -> PeerInfo:
    """``log`` as the witness knows it from its card, but reached at ``server``."""
    ident = log.card.identity
    return PeerInfo(
        "bob", log.identity.node_id, ident, str(server.make_url("")), log.card.body.tls_cert
    )


async def grow(log: Node, entries: int) -> tuple[int, str]:
    for _ in range(entries):
        await log.run_db(audit, log.store, "node.initialised", now=log.clock())
    await log.checkpoint(force=True)
    latest = await log.run_db(log.store.latest_checkpoint)
    assert latest is not None
    return latest.size, latest.note


def log_verifier(log: Node) -> Verifier:
    return Verifier(origin_of(log.identity.node_id), log.identity.signing_key.public_key())


def cosignature(witness: Node, note: str) -> str:
    name = origin_of(witness.identity.node_id)
    return cosign(parse_note(note).text, name, witness.identity.signing_key, int(time.time()))


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    bob = make_node(tmp_path, "bob", body_timeout=0.5)
    alice = make_node(tmp_path, "alice")
    trust(bob, alice)
    trust(alice, bob)
    try:
        yield bob, alice
    finally:
        await bob.stop()
        await alice.stop()


@pytest.fixture
async def bob_api(nodes: tuple[Node, Node]) -> AsyncIterator[TestClient[Any, Any]]:
    bob, alice = nodes
    await grow(bob, 1)
    async with calling(alice, await serve_as(bob, peer_app(bob)), bob) as client:
        yield client


# Bug 3: POST /v1/audit/cosignature stored the client's line verbatim -----------------------------


async def test_cosignature_line_smuggling_a_forged_log_signature_is_refused(
    nodes: tuple[Node, Node], bob_api: TestClient[Any, Any]
) -> None:
    bob, alice = nodes
    size, note = await grow(bob, 0)
    logname = origin_of(bob.identity.node_id)
    kid = key_id(logname, ALG_ED25519, raw_key(bob.identity.signing_key.public_key()))
    forged = f"{SIG_PREFIX}{logname} {base64.b64encode(kid + bytes(64)).decode()}\n"
    line = cosignature(alice, note) + forged
    payload = {"witness": alice.identity.node_id.hex(), "size": size, "line": line}
    resp = await bob_api.post(COSIGNATURE, json=payload)
    assert resp.status == 400
    assert (await resp.json())["error"] == "malformed"
    served = await (await bob_api.get("/v1/audit/checkpoint")).text()
    assert served == note
    open_checkpoint(served, [log_verifier(bob)])  # every honest witness still accepts it


async def test_cosignature_is_stored_in_the_nodes_own_spelling(
    nodes: tuple[Node, Node], bob_api: TestClient[Any, Any]
) -> None:
    bob, alice = nodes
    size, note = await grow(bob, 0)
    line = cosignature(alice, note)
    payload = {"witness": alice.identity.node_id.hex(), "size": size, "line": line.rstrip("\n")}
    resp = await bob_api.post(COSIGNATURE, json=payload)
    assert resp.status == 200, await resp.text()
    served = await (await bob_api.get("/v1/audit/checkpoint")).text()
    assert served == note + line
    open_checkpoint(served, [log_verifier(bob)])
    witness = CosignatureVerifier(origin_of(alice.identity.node_id), alice.card.body.sign_key)
    verify_cosignature(served, witness)


async def test_cosignature_under_another_name_than_the_witness_is_refused(
    nodes: tuple[Node, Node], bob_api: TestClient[Any, Any]
) -> None:
    bob, alice = nodes
    size, note = await grow(bob, 0)
    line = cosignature(alice, note).replace(
        origin_of(alice.identity.node_id), origin_of(bob.identity.node_id)
    )
    payload = {"witness": alice.identity.node_id.hex(), "size": size, "line": line}
    resp = await bob_api.post(COSIGNATURE, json=payload)
    assert (await resp.json())["error"] == "bad_signature"
    assert await (await bob_api.get("/v1/audit/checkpoint")).text() == note


async def test_cosignature_line_over_512_bytes_is_refused(
    nodes: tuple[Node, Node], bob_api: TestClient[Any, Any]
) -> None:
    bob, alice = nodes
    size, _note = await grow(bob, 0)
    name = origin_of(alice.identity.node_id)
    kid = key_id(name, ALG_COSIGNATURE_V1, raw_key(alice.identity.signing_key.public_key()))
    line = f"{SIG_PREFIX}{name} {base64.b64encode(kid + bytes(600)).decode()}\n"
    payload = {"witness": alice.identity.node_id.hex(), "size": size, "line": line}
    resp = await bob_api.post(COSIGNATURE, json=payload)
    assert resp.status == 400
    assert (await resp.json())["error"] == "malformed"


async def test_cosignature_body_over_4_kib_is_refused(bob_api: TestClient[Any, Any]) -> None:
    declared = await bob_api.post(COSIGNATURE, data=b"{" + b" " * 5000 + b"}")
    assert declared.status == 413
    assert (await declared.json())["error"] == "oversize"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b" " * 1024

    streamed = await bob_api.post(COSIGNATURE, data=chunks())
    assert streamed.status == 413


async def test_cosignature_body_trickling_in_times_out(
    nodes: tuple[Node, Node], bob_api: TestClient[Any, Any]
) -> None:
    bob, alice = nodes
    assert bob_api.port is not None and bob.card.body.tls_cert is not None
    ctx = alice.tls.client_context(bob.card.body.tls_cert)
    reader, writer = await asyncio.open_connection("127.0.0.1", bob_api.port, ssl=ctx)
    try:
        writer.write(
            f"POST {COSIGNATURE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n{".encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), timeout=PATIENCE)  # body_timeout=0.5
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")


# Bug 4: the witness read answers of any size ----------------------------------------------------


@dataclass
class Proxy:
    """Forwards the witness's requests to the log, handing each proof to ``change``."""

    upstream: TestClient[Any, Any]
    change: Callable[[int, dict[str, Any]], bytes | None]
    proofs_served: int = 0
    given: list[list[str]] = field(default_factory=list)
    note: str | None = None  # served instead of the log's current checkpoint (a replay)

    def app(self) -> web.Application:
        async def checkpoint(_request: web.Request) -> web.Response:
            if self.note is not None:
                return web.Response(text=self.note)
            return web.Response(text=await (await self.upstream.get("/v1/audit/checkpoint")).text())

        async def consistency(request: web.Request) -> web.Response:
            got = await (await self.upstream.get(request.path_qs)).json()
            self.proofs_served += 1
            body = self.change(self.proofs_served, got)
            if body is None:
                body = json.dumps(got).encode()
            return web.Response(body=body, content_type="application/json")

        async def cosign_(request: web.Request) -> web.Response:
            resp = await self.upstream.post(COSIGNATURE, data=await request.read())
            return web.Response(status=resp.status, body=await resp.read())

        app = web.Application()
        app.router.add_get("/v1/audit/checkpoint", checkpoint)
        app.router.add_get("/v1/audit/consistency", consistency)
        app.router.add_post(COSIGNATURE, cosign_)
        return app


def altered(given: list[list[str]]) -> Callable[[int, dict[str, Any]], bytes]:
    def change(_n: int, got: dict[str, Any]) -> bytes:
        proof = [base64.b64encode(bytes(32)).decode(), *got["proof"][1:]]
        given.append(proof)
        return json.dumps({**got, "proof": proof}).encode()

    return change


async def witnessed_twice(
    nodes: tuple[Node, Node], change: Callable[[int, dict[str, Any]], bytes | None]
) -> tuple[str, str, Proxy]:
    """Alice witnesses Bob once through the proxy, Bob's log grows, Alice witnesses again."""
    bob, alice = nodes
    await grow(bob, 1)
    async with AsyncExitStack() as stack:
        log = await serve_as(bob, peer_app(bob))
        upstream = await stack.enter_async_context(calling(alice, log, bob))
        proxy = Proxy(upstream, change)
        server = await stack.enter_async_context(await serve_as(bob, proxy.app()))
        peer = peer_at(bob, server)
        first = await alice.witness.check(peer)
        await grow(bob, 5)
        second = await alice.witness.check(peer)
    return first, second, proxy


async def test_witness_read_a_checkpoint_answer_of_any_size(nodes: tuple[Node, Node]) -> None:
    bob, alice = nodes
    sent = [0]

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        chunk = b"A" * 2**20
        try:
            for _ in range(256):
                await resp.write(chunk)
                sent[0] += len(chunk)
        except ConnectionError:
            pass
        return resp

    app = web.Application()
    app.router.add_get("/v1/audit/checkpoint", endless)
    async with await serve_as(bob, app) as server:
        peer = peer_at(bob, server)
        with pytest.raises(AuditError, match="checkpoint is over 64 KiB"):
            await alice.witness.check(peer)
    assert sent[0] < 64 * 2**20


async def test_witness_read_a_proof_answer_of_any_size(nodes: tuple[Node, Node]) -> None:
    huge = b'{"proof": ["' + b"A" * 2**20 + b'"]}'
    with pytest.raises(AuditError, match="consistency proof is over 16 KiB"):
        await witnessed_twice(nodes, lambda _n, _got: huge)
    assert nodes[1].store.evidence() == []


# Bug 10: one altered proof (unsigned data) was taken as evidence against the log ----------------


async def test_witness_took_one_altered_proof_as_misbehaviour(nodes: tuple[Node, Node]) -> None:
    given: list[list[str]] = []
    tamper = altered(given)
    first, second, proxy = await witnessed_twice(
        nodes, lambda n, got: tamper(n, got) if n == 1 else None
    )
    assert first.startswith("cosigned size ")
    assert second.startswith("cosigned size "), second
    assert proxy.proofs_served == 2
    assert nodes[1].store.evidence() == []


async def test_witness_keeps_a_proof_that_fails_twice_with_the_evidence(
    nodes: tuple[Node, Node],
) -> None:
    given: list[list[str]] = []
    with capture_logs() as logs:
        _first, second, proxy = await witnessed_twice(nodes, altered(given))
    assert second.startswith("MISBEHAVIOUR: ")
    assert "\n" not in second
    assert proxy.proofs_served == 2
    [evidence] = nodes[1].store.evidence()
    assert evidence.kind == "badconsistencyproof"
    assert evidence.detail.endswith("proof:\n" + "".join(h + "\n" for h in given[-1]))
    events = [e["event"] for e in logs]
    assert events.count("witness.bad_proof_retry") == 1
    assert events.count("witness.misbehaviour") == 1


# Issue 9: a replayed cosignature was audited per POST; a replayed old checkpoint was a rollback --


async def test_regression_a_replayed_cosignature_adds_one_entry_not_one_per_post(
    nodes: tuple[Node, Node], bob_api: TestClient[Any, Any]
) -> None:
    bob, alice = nodes
    size, note = await grow(bob, 0)
    payload = {
        "witness": alice.identity.node_id.hex(),
        "size": size,
        "line": cosignature(alice, note),
    }
    for _ in range(200):
        resp = await bob_api.post(COSIGNATURE, json=payload)
        assert resp.status == 200, await resp.text()
    rows = await bob.run_db(bob.store.audit_rows)
    cosigned = [r for r in rows if json.loads(r.entry)["kind"] == "checkpoint.cosigned"]
    assert len(cosigned) == 1


async def witness_a_replay(nodes: tuple[Node, Node], replayed: Callable[[str], str]) -> str:
    """Alice witnesses Bob at size 10 and again when larger, then is served ``replayed(note of
    size 10)`` for Bob's checkpoint, while proofs still come from Bob's real log."""
    bob, alice = nodes
    await grow(bob, 8)
    ten = await bob.run_db(bob.store.latest_checkpoint)
    assert ten is not None and ten.size == 10
    async with AsyncExitStack() as stack:
        log = await serve_as(bob, peer_app(bob))
        upstream = await stack.enter_async_context(calling(alice, log, bob))
        proxy = Proxy(upstream, lambda _n, _got: None)
        server = await stack.enter_async_context(await serve_as(bob, proxy.app()))
        peer = peer_at(bob, server)
        assert await alice.witness.check(peer) == "cosigned size 10"
        size, _ = await grow(bob, 70)
        assert await alice.witness.check(peer) == f"cosigned size {size}"
        proxy.note = replayed(ten.note)
        return await alice.witness.check(peer)


async def test_regression_a_replayed_old_checkpoint_is_stale(nodes: tuple[Node, Node]) -> None:
    bob, alice = nodes
    outcome = await witness_a_replay(nodes, lambda ten: ten)
    held = await alice.run_db(alice.store.witnessed, bob.identity.node_id)
    assert held is not None
    assert outcome == f"stale checkpoint (size 10, holding {held.size})"
    assert alice.store.evidence() == []


async def test_a_forked_old_checkpoint_is_evidence(nodes: tuple[Node, Node]) -> None:
    bob, alice = nodes
    origin = origin_of(bob.identity.node_id)

    def forked(ten: str) -> str:  # size 10 of another log, signed with Bob's key
        cp = Checkpoint(origin, 10, bytes(32))
        return sign_checkpoint(cp, origin, bob.identity.signing_key)

    outcome = await witness_a_replay(nodes, forked)
    assert outcome.startswith("MISBEHAVIOUR: ")
    [evidence] = alice.store.evidence()
    assert evidence.kind == "rollback"
    assert open_checkpoint(evidence.new_note, [log_verifier(bob)]).size == 10


# attack9 F4: every distinct cosignature line of a witness replaced the last and was audited ----


@dataclass
class FakeClock:
    now: float

    def __call__(self) -> float:
        return self.now


async def cosigned_entries(log: Node) -> list[str]:
    rows = await log.run_db(log.store.audit_rows)
    return [
        e["outcome"]
        for e in map(json.loads, (r.entry for r in rows))
        if e["kind"] == "checkpoint.cosigned"
    ]


async def test_12_3_the_witness_cosigns_each_size_once_and_more_lines_add_nothing(
    tmp_path: Path,
) -> None:
    """Alice's own witness cosigns Bob's checkpoint, a second round at the same size posts
    nothing, and 100 more valid lines by Alice for that size (later, earlier) change nothing on
    Bob, nor does one dated 1970 (refused): no entry, no new line served. Bob's next checkpoint
    is cosigned again, once."""
    clock = FakeClock(NOW)
    bob, alice = make_node(tmp_path, "bob", clock), make_node(tmp_path, "alice", clock)
    trust(bob, alice)
    trust(alice, bob)
    try:
        size, note = await grow(bob, 1)
        async with AsyncExitStack() as stack:
            server = await stack.enter_async_context(await serve_as(bob, peer_app(bob)))
            api = await stack.enter_async_context(calling(alice, server, bob))
            peer = peer_at(bob, server)
            clock.now += 10
            assert await alice.witness.check(peer) == f"cosigned size {size}"
            clock.now += 30
            assert await alice.witness.check(peer) == f"consistent at size {size}"
            served = await (await api.get("/v1/audit/checkpoint")).text()
            assert served.startswith(note) and served.count("\n— ") == 2  # bob's, alice's
            name, key = origin_of(alice.identity.node_id), alice.identity.signing_key
            for at in [*range(int(NOW) - 50, int(NOW) + 50), 0]:
                line = cosign(parse_note(note).text, name, key, at)
                payload = {"witness": alice.identity.node_id.hex(), "size": size, "line": line}
                resp = await api.post(COSIGNATURE, json=payload)
                assert resp.status == (200 if at else 422), await resp.text()
            assert await (await api.get("/v1/audit/checkpoint")).text() == served
            witness = CosignatureVerifier(name, alice.card.body.sign_key)
            assert verify_cosignature(served, witness) == NOW + 10
            assert await cosigned_entries(bob) == [f"size {size}"]

            grown, _ = await grow(bob, 3)
            clock.now += 30
            assert await alice.witness.check(peer) == f"cosigned size {grown}"
            assert await alice.witness.check(peer) == f"consistent at size {grown}"
        assert await cosigned_entries(bob) == [f"size {size}", f"size {grown}"]
    finally:
        await bob.stop()
        await alice.stop()
