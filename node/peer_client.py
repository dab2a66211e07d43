"""The node's one HTTP client for talking to peers: batches, checkpoints, proofs, cosignatures.

Holds one aiohttp session and touches nothing else (no storage, no clock). Every call goes through
:meth:`PeerClient._request`, so the rules hold for all of them: redirects are never followed (a
peer's endpoint is the one in its signed card; a redirect would send our batch, or our witness
request, wherever the answer says), every answer is read up to a limit fixed per call, and
aiohttp's exceptions are translated here, once, into sentences an operator understands
(:class:`DeliveryFailed`). Every request is mutual TLS 1.3 pinned to the certificate in the
peer's card (node/tls.py): a peer whose card pins nothing, or whose endpoint is not https://, is
not contacted at all, and a server presenting another certificate is refused with both pins named
(:class:`PinMismatch`), so whatever the peer answers, a rejection included, was said by it.

Callers see narrow Protocols (:class:`BatchClient` for delivery, :class:`AuditClient` for
witnessing), so their retry and decision logic can be tested against a fake.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from keys.tls import pin_text
from node.http.bodies import read_limited
from node.peer_info import PeerInfo
from node.tls import NodeTls, anonymous_client, presented_certificate, unverified_client
from protocol.batch import BATCH_CONTENT_TYPE, BATCH_PATH
from protocol.errors import NodeError, os_reason

KEYS_PATH = "/v1/keys"  # PROTOCOL.md 13.5
MAX_KEYS_ANSWER = 4096
CHECKPOINT_PATH = "/v1/audit/checkpoint"
CONSISTENCY_PATH = "/v1/audit/consistency"
COSIGNATURE_PATH = "/v1/audit/cosignature"
FLOW_PATH = "/v1/flow"  # PROTOCOL.md 14.3
FLOW_CONTENT_TYPE = "application/vnd.borderlink.flow-report"
MAX_FLOW_ANSWER = 4096

MAX_BATCH_RESPONSE = 4 * 1024 * 1024  # receipts for a full batch are a few hundred KiB at most
MAX_NOTE = 64 * 1024  # a checkpoint with up to 100 signature lines is under 16 KiB
MAX_PROOF = 16 * 1024  # a proof for 2^63 entries is at most 63 hashes, about 3 KiB as JSON
MAX_COSIGNATURE_ANSWER = 4 * 1024  # {"status": "stored"} or an error body


class DeliveryFailed(NodeError):
    """The request did not produce a usable answer from the peer; always worth retrying."""


class PinMismatch(DeliveryFailed):
    """The server at the peer's endpoint presented a certificate its card does not pin."""


class AnswerTooLarge(DeliveryFailed):
    """The peer answered, with more than the call reads: a broken or hostile peer, not a network
    fault (the witness reports it as a bad answer, delivery simply retries)."""


@dataclass(frozen=True)
class Answer:
    """A peer's HTTP answer, read in full (within the call's limit)."""

    status: int
    content_type: str
    body: bytes


class BatchClient(Protocol):
    """What the delivery worker needs: one POST of a batch."""

    async def post_batch(self, peer: PeerInfo, body: bytes) -> Answer:
        """POST a batch; the peer's answer, or raise :class:`DeliveryFailed`."""
        ...

    async def post_key_statement(self, peer: PeerInfo, statement: str) -> Answer:
        """POST one of this node's key statements (PROTOCOL.md 13.5)."""
        ...


class AuditClient(Protocol):
    """What the witness needs (PROTOCOL.md 12.3); each raises :class:`DeliveryFailed`."""

    async def checkpoint(self, peer: PeerInfo) -> Answer: ...

    async def consistency(self, peer: PeerInfo, old: int, new: int) -> Answer: ...

    async def post_cosignature(self, peer: PeerInfo, payload: bytes) -> Answer:
        """``payload``: the JSON body ``{witness, size, line}``."""
        ...


def _kib(limit: int) -> str:
    return f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit // 1024} KiB"


class PeerClient:
    """Every outbound request of the node. Create it anywhere; the session opens on first use
    (aiohttp wants a running loop) and :meth:`close` ends it."""

    def __init__(self, timeout: float, tls: NodeTls | None) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 5.0))
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post_batch(self, peer: PeerInfo, body: bytes) -> Answer:
        headers = {"Content-Type": BATCH_CONTENT_TYPE}
        where = _where(peer)
        return await self._request(
            "POST",
            peer,
            BATCH_PATH,
            where=where,
            limit=MAX_BATCH_RESPONSE,
            too_large=f"{where} answered with more than {_kib(MAX_BATCH_RESPONSE)}",
            data=body,
            headers=headers,
        )

    async def post_key_statement(self, peer: PeerInfo, statement: str) -> Answer:
        """A rotation, renewal or revocation, sent without a client certificate (it carries
        its own signatures; the peer may not know this node's new certificate yet)."""
        return await self._request(
            "POST",
            peer,
            KEYS_PATH,
            where=_where(peer),
            limit=MAX_KEYS_ANSWER,
            too_large=f"answer to a key statement is over {_kib(MAX_KEYS_ANSWER)}",
            data=statement.encode("ascii", "replace"),
            headers={"Content-Type": "text/plain"},
            anonymous=True,
        )

    async def post_flow_report(self, peer: PeerInfo, body: bytes) -> Answer:
        """A sealed flow report to a coordinator (PROTOCOL.md 14.3)."""
        return await self._request(
            "POST",
            peer,
            FLOW_PATH,
            where=_where(peer),
            limit=MAX_FLOW_ANSWER,
            too_large=f"answer to a flow report is over {_kib(MAX_FLOW_ANSWER)}",
            data=body,
            headers={"Content-Type": FLOW_CONTENT_TYPE},
        )

    async def get(self, peer: PeerInfo, path: str, *, limit: int) -> Answer:
        """GET ``path`` from a peer over mutual TLS (a coordinator's directory, PROTOCOL.md 13.8)."""
        return await self._request(
            "GET",
            peer,
            path,
            where=_where(peer),
            limit=limit,
            too_large=f"answer over {_kib(limit)}",
        )

    async def checkpoint(self, peer: PeerInfo) -> Answer:
        return await self._request(
            "GET",
            peer,
            CHECKPOINT_PATH,
            where=_where(peer),
            limit=MAX_NOTE,
            too_large=f"checkpoint is over {_kib(MAX_NOTE)}",
        )

    async def consistency(self, peer: PeerInfo, old: int, new: int) -> Answer:
        return await self._request(
            "GET",
            peer,
            CONSISTENCY_PATH,
            where=_where(peer),
            limit=MAX_PROOF,
            too_large=f"consistency proof is over {_kib(MAX_PROOF)}",
            params={"old": str(old), "new": str(new)},
        )

    async def post_cosignature(self, peer: PeerInfo, payload: bytes) -> Answer:
        return await self._request(
            "POST",
            peer,
            COSIGNATURE_PATH,
            where=_where(peer),
            limit=MAX_COSIGNATURE_ANSWER,
            too_large=f"answer to a cosignature is over {_kib(MAX_COSIGNATURE_ANSWER)}",
            data=payload,
            headers={"Content-Type": "application/json"},
        )

    def _open(self) -> aiohttp.ClientSession:
        """The one place the session is built; TLS is chosen per request (one context per pin).

        No cookies: a peer's answer must not change what we send the next one. Proxies from
        the environment are not used (aiohttp's ``trust_env`` stays off)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit_per_host=8),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def _request(
        self,
        method: str,
        peer: PeerInfo,
        path: str,
        *,
        where: str,
        limit: int,
        too_large: str,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        anonymous: bool = False,
    ) -> Answer:
        endpoint = peer.endpoint or ""
        if peer.tls_cert is None:
            raise DeliveryFailed(
                f"the card of {peer.name} pins no TLS certificate (a version 1 card): "
                f"ask {peer.name} for its current card and run 'borderlink peers add' with it"
            )
        if not endpoint.lower().startswith("https://"):
            raise DeliveryFailed(
                f"{where}: the endpoint in its card is not https://, and peers are reached "
                "over mutual TLS only"
            )
        session = self._open()
        url = endpoint.rstrip("/") + path
        if anonymous or self._tls is None:
            ssl_context = anonymous_client(peer.tls_cert)
        else:
            ssl_context = self._tls.client_context(peer.tls_cert)
        try:
            async with session.request(
                method,
                url,
                data=data,
                headers=headers,
                params=params,
                allow_redirects=False,
                ssl=ssl_context,
            ) as resp:
                body = await read_limited(resp.content, resp.content_length, limit)
                if body is None:
                    raise AnswerTooLarge(too_large)
                return Answer(resp.status, resp.content_type, body)
        except DeliveryFailed:
            raise
        except aiohttp.ClientConnectorCertificateError as exc:
            presented = await _presented(url)
            shown = pin_text(presented) if presented else "a certificate that could not be read"
            raise PinMismatch(
                f"TLS pin mismatch for {where}: its card pins {pin_text(peer.tls_cert)}, "
                f"the server presented {shown}",
                hint=f"if {peer.name} changed its TLS key, import its new card; "
                "otherwise something else answers at that address",
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                raise DeliveryFailed(f"connection refused by {where}") from exc
            raise DeliveryFailed(f"cannot connect to {where}: {os_reason(exc.os_error)}") from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise DeliveryFailed(
                f"no answer from {where} within {self._timeout.total:.0f} s"
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise DeliveryFailed(f"cannot reach {where}: the endpoint is not a usable URL") from exc
        except aiohttp.ClientError as exc:
            raise DeliveryFailed(f"connection to {where} failed: {exc.__class__.__name__}") from exc
        except OSError as exc:
            raise DeliveryFailed(f"cannot reach {where}: {os_reason(exc)}") from exc
        except ValueError as exc:  # yarl/aiohttp refusing the endpoint URL
            raise DeliveryFailed(f"cannot reach {where}: the endpoint is not a usable URL") from exc


async def _presented(url: str) -> bytes | None:
    """The certificate the server at ``url`` presents, fetched over a connection that sends
    nothing: only to name it in a pin mismatch."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 443
        async with asyncio.timeout(5.0):
            _reader, writer = await asyncio.open_connection(
                host, port, ssl=unverified_client(), server_hostname=""
            )
    except (OSError, ValueError, TimeoutError):
        return None
    try:
        return presented_certificate(writer.transport)
    finally:
        writer.close()


def _where(peer: PeerInfo) -> str:
    """How errors name the peer: its name and the host:port we tried."""
    endpoint = peer.endpoint or ""
    try:
        host = urlsplit(endpoint).netloc
    except ValueError:  # e.g. an unbalanced "[" in the host
        host = ""
    return f"{peer.name} at {host or endpoint}"
