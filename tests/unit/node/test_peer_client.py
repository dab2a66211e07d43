"""PeerClient against real aiohttp servers on 127.0.0.1 over mutual TLS: what it sends, what it
refuses to read, that it never follows a redirect, that it talks only to the certificate the
peer's card pins, and how a failure is put in words (our words, not aiohttp's)."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from keys.tls import make_certificate, pin_text
from node.peer_client import (
    CHECKPOINT_PATH,
    CONSISTENCY_PATH,
    COSIGNATURE_PATH,
    MAX_BATCH_RESPONSE,
    MAX_NOTE,
    AnswerTooLarge,
    DeliveryFailed,
    PeerClient,
    PinMismatch,
)
from node.peer_info import PeerInfo
from node.tls import NodeTls, presented_certificate
from protocol.batch import BATCH_CONTENT_TYPE, BATCH_PATH
from tests.conftest import fixed_identity

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NOW = 1_790_000_000
ALICE, BOB, MALLORY = (fixed_identity(n) for n in ("alice", "bob", "mallory"))
CERTS = {who: make_certificate(who, now=NOW) for who in (ALICE, BOB, MALLORY)}


def tls_of(who: object, workdir: Path) -> NodeTls:
    ident = {id(i): i for i in (ALICE, BOB, MALLORY)}[id(who)]
    return NodeTls(ident, CERTS[ident], workdir)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[PeerClient]:
    """Alice's client."""
    c = PeerClient(timeout=10, tls=tls_of(ALICE, tmp_path))
    yield c
    await c.close()


async def serve(
    routes: dict[tuple[str, str], Handler], *, who: object = BOB, workdir: Path | None = None
) -> TestServer:
    """A server holding ``who``'s TLS key, trusting Alice's certificate as a client."""
    app = web.Application()
    for (method, path), handler in routes.items():
        app.router.add_route(method, path, handler)
    server = TestServer(app, host="127.0.0.1")
    tls = tls_of(who, workdir or Path(tempfile.mkdtemp()))
    await server.start_server(ssl=tls.server_context([CERTS[ALICE]]))
    return server


def endpoint(server: TestServer) -> str:
    return str(server.make_url(""))


def bob_at(url: str, cert: bytes | None = CERTS[BOB]) -> PeerInfo:
    """Bob as Alice's peer table knows him: his card's endpoint and pinned certificate."""
    return PeerInfo("bob", BOB.node_id, BOB.public, url, cert)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_batch_answer_over_the_limit_is_not_read(
    client: PeerClient, declared: bool
) -> None:
    """Bug 4: post_batch read the whole answer, so a 400 MB answer cost 1.3 GB of memory."""
    sent = [0]

    async def huge(request: web.Request) -> web.StreamResponse:
        await request.read()
        if declared:
            body = b"\0" * (MAX_BATCH_RESPONSE + 1)
            return web.Response(body=body, content_type=BATCH_CONTENT_TYPE)
        resp = web.StreamResponse()
        resp.content_type = BATCH_CONTENT_TYPE
        await resp.prepare(request)
        try:
            for _ in range(256):
                # Let the loop see the client hang up: a write into a TLS transport whose peer is
                # gone may be dropped without an error, and without a pause nothing would notice.
                await asyncio.sleep(0)
                if request.transport is None or request.transport.is_closing():
                    break
                await resp.write(b"\0" * 2**20)
                sent[0] += 2**20
        except ConnectionError:
            pass
        return resp

    server = await serve({("POST", BATCH_PATH): huge})
    try:
        with pytest.raises(AnswerTooLarge, match="answered with more than 4 MiB") as caught:
            await client.post_batch(bob_at(endpoint(server)), b"batch")
    finally:
        await server.close()
    assert isinstance(caught.value, DeliveryFailed)  # delivery retries it like any failure
    assert str(caught.value).startswith("bob at 127.0.0.1:")
    assert sent[0] < 64 * 2**20


async def test_a_batch_is_posted_over_the_senders_certificate_and_the_answer_returned(
    client: PeerClient,
) -> None:
    """Who sends is what the TLS channel proves: Alice's certificate, and no sender header."""
    got: list[tuple[bytes | None, str, bool, bytes]] = []

    async def ok(request: web.Request) -> web.Response:
        got.append(
            (
                presented_certificate(request.transport),
                request.headers["Content-Type"],
                "X-Borderlink-Sender" in request.headers,
                await request.read(),
            )
        )
        return web.Response(status=207, body=b"receipts", content_type=BATCH_CONTENT_TYPE)

    server = await serve({("POST", BATCH_PATH): ok})
    try:
        answer = await client.post_batch(bob_at(endpoint(server) + "/"), b"x")
    finally:
        await server.close()
    assert got == [(CERTS[ALICE], BATCH_CONTENT_TYPE, False, b"x")]
    assert (answer.status, answer.content_type, answer.body) == (
        207,
        BATCH_CONTENT_TYPE,
        b"receipts",
    )


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_never_followed(client: PeerClient, status: int) -> None:
    """A redirect would send our batch (or our witness's questions) wherever the answer says;
    a peer's endpoint is the one in its signed card."""
    elsewhere: list[str] = []

    async def redirect(_request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": "/elsewhere"})

    async def target(request: web.Request) -> web.Response:
        elsewhere.append(request.method)
        return web.Response(text="followed")

    server = await serve(
        {
            ("POST", BATCH_PATH): redirect,
            ("GET", CHECKPOINT_PATH): redirect,
            ("*", "/elsewhere"): target,
        }
    )
    try:
        batch = await client.post_batch(bob_at(endpoint(server)), b"x")
        note = await client.checkpoint(bob_at(endpoint(server)))
    finally:
        await server.close()
    assert batch.status == note.status == status
    assert elsewhere == []


async def test_witness_calls_reach_their_paths_and_are_capped(client: PeerClient) -> None:
    seen: list[tuple[str, str, str, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, request.query_string, await request.read()))
        return web.Response(text="ok")

    async def big_note(_request: web.Request) -> web.Response:
        return web.Response(body=b"A" * (MAX_NOTE + 1))

    server = await serve(
        {
            ("GET", CONSISTENCY_PATH): record,
            ("POST", COSIGNATURE_PATH): record,
            ("GET", CHECKPOINT_PATH): big_note,
        }
    )
    try:
        proof = await client.consistency(bob_at(endpoint(server)), 3, 9)
        cosigned = await client.post_cosignature(bob_at(endpoint(server)), b'{"size": 9}')
        with pytest.raises(AnswerTooLarge, match="checkpoint is over 64 KiB"):
            await client.checkpoint(bob_at(endpoint(server)))
    finally:
        await server.close()
    assert proof.body == cosigned.body == b"ok"
    assert seen == [
        ("GET", CONSISTENCY_PATH, "old=3&new=9", b""),
        ("POST", COSIGNATURE_PATH, "", b'{"size": 9}'),
    ]


def unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_is_said_in_words(client: PeerClient) -> None:
    port = unused_port()
    with pytest.raises(DeliveryFailed) as caught:
        await client.post_batch(bob_at(f"https://127.0.0.1:{port}"), b"x")
    assert caught.value.message == f"connection refused by bob at 127.0.0.1:{port}"
    with pytest.raises(DeliveryFailed) as caught:
        await client.checkpoint(bob_at(f"https://127.0.0.1:{port}"))
    assert caught.value.message == f"connection refused by bob at 127.0.0.1:{port}"


async def test_an_endpoint_that_is_no_url_is_said_in_words(client: PeerClient) -> None:
    with pytest.raises(DeliveryFailed, match="the endpoint is not a usable URL"):
        await client.post_batch(bob_at("https://[::1"), b"x")


async def test_a_peer_that_never_answers_is_said_in_words(tmp_path: Path) -> None:
    hold = asyncio.Event()

    async def silent(_request: web.Request) -> web.Response:
        await hold.wait()
        return web.Response()

    server = await serve({("GET", CHECKPOINT_PATH): silent})
    client = PeerClient(timeout=0.2, tls=tls_of(ALICE, tmp_path))
    try:
        with pytest.raises(DeliveryFailed, match=r"^no answer from bob at 127\.0\.0\.1:\d+ within"):
            await client.checkpoint(bob_at(endpoint(server)))
    finally:
        hold.set()
        await client.close()
        await server.close()


async def test_a_server_presenting_another_certificate_is_refused_naming_both_pins(
    client: PeerClient,
) -> None:
    """An on-path relay (or anything else) at Bob's address without Bob's key: nothing is sent
    to it, and the error names the pin Bob's card holds and the one presented."""
    reached: list[str] = []

    async def relay(request: web.Request) -> web.Response:  # would forge a final rejection
        reached.append(request.path)
        return web.json_response({"error": "unknown_sender", "message": "no"}, status=403)

    server = await serve({("POST", BATCH_PATH): relay}, who=MALLORY)
    port = server.port
    try:
        with pytest.raises(PinMismatch) as caught:
            await client.post_batch(bob_at(endpoint(server)), b"batch")
    finally:
        await server.close()
    assert reached == []
    assert isinstance(caught.value, DeliveryFailed)  # retried, never a final rejection
    assert caught.value.message == (
        f"TLS pin mismatch for bob at 127.0.0.1:{port}: its card pins "
        f"{pin_text(CERTS[BOB])}, the server presented {pin_text(CERTS[MALLORY])}"
    )


async def test_a_peer_whose_card_pins_nothing_is_not_contacted(client: PeerClient) -> None:
    reached: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        reached.append(request.path)
        return web.Response()

    server = await serve({("POST", BATCH_PATH): anything})
    try:
        with pytest.raises(DeliveryFailed, match="pins no TLS certificate"):
            await client.post_batch(bob_at(endpoint(server), cert=None), b"batch")
        with pytest.raises(DeliveryFailed, match="not https://"):
            await client.post_batch(bob_at(endpoint(server).replace("https", "http")), b"b")
    finally:
        await server.close()
    assert reached == []


async def test_a_server_not_trusting_the_client_gives_a_failure_not_an_answer(
    tmp_path: Path,
) -> None:
    """Mallory's client presents a certificate Bob does not trust: the handshake fails."""
    reached: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        reached.append(request.path)
        return web.Response()

    server = await serve({("POST", BATCH_PATH): anything})
    mallory = PeerClient(timeout=5, tls=tls_of(MALLORY, tmp_path))
    try:
        with pytest.raises(DeliveryFailed):
            await mallory.post_batch(bob_at(endpoint(server)), b"batch")
    finally:
        await mallory.close()
        await server.close()
    assert reached == []
