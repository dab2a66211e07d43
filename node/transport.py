"""The one-method transport the delivery worker talks to, and its HTTP implementation.

Narrow on purpose (httpx's transport split): the worker knows nothing of aiohttp, so its retry and
receipt logic can be exercised against an in-process transport, and aiohttp's exceptions are
translated here, once, into sentences an operator understands.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from node.http.bodies import read_limited
from protocol.batch import BATCH_CONTENT_TYPE, BATCH_PATH
from protocol.errors import NodeError, os_reason

MAX_BATCH_RESPONSE = 4 * 1024 * 1024  # receipts for a full batch are a few hundred KiB at most


class DeliveryFailed(NodeError):
    """The request did not produce an answer from the peer; always worth retrying."""


class Transport(Protocol):
    async def post_batch(
        self, peer_name: str, endpoint: str, sender: bytes, body: bytes
    ) -> tuple[int, str, bytes]:
        """POST a batch; return (HTTP status, content type, body) or raise DeliveryFailed."""
        ...


class HttpTransport:
    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 5.0))
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post_batch(
        self, peer_name: str, endpoint: str, sender: bytes, body: bytes
    ) -> tuple[int, str, bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit_per_host=8)
            )
        where = f"{peer_name} at {urlsplit(endpoint).netloc or endpoint}"
        headers = {"Content-Type": BATCH_CONTENT_TYPE, "X-Borderlink-Sender": sender.hex()}
        try:
            async with self._session.post(
                endpoint.rstrip("/") + BATCH_PATH, data=body, headers=headers
            ) as resp:
                answer = await read_limited(resp.content, resp.content_length, MAX_BATCH_RESPONSE)
                if answer is None:
                    limit = f"{MAX_BATCH_RESPONSE // 2**20} MiB"
                    raise DeliveryFailed(f"{where} answered with more than {limit}")
                return resp.status, resp.content_type, answer
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                raise DeliveryFailed(f"connection refused by {where}") from exc
            raise DeliveryFailed(f"cannot connect to {where}: {os_reason(exc.os_error)}") from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise DeliveryFailed(
                f"no answer from {where} within {self._timeout.total:.0f} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise DeliveryFailed(f"connection to {where} failed: {exc.__class__.__name__}") from exc
        except OSError as exc:
            raise DeliveryFailed(f"cannot reach {where}: {os_reason(exc)}") from exc
        except ValueError as exc:  # yarl/aiohttp refusing the endpoint URL
            raise DeliveryFailed(f"cannot reach {where}: the endpoint is not a usable URL") from exc
