"""Per-peer delivery workers: at-least-once on the wire, with receipts proving each delivery.

For each peer with work, one task takes due outbox rows in batches (up to ``batch_size``: one
when the queue is short, many when it is backed up) and keeps up to ``concurrency`` batches in
flight. A batch sends the peer only its own key slot of each envelope, verifies the signed
receipt, and records the outcome. A failure schedules the next
attempt with capped exponential backoff and jitter; the time is persisted, so a restart resumes
the schedule instead of hammering the peer. See PROTOCOL.md 11.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from node.config import Delivery
from node.outbox_store import Row
from node.peer_info import PeerInfo
from node.store import Store
from node.transport import DeliveryFailed, Transport
from protocol.batch import PERMANENT_REASONS, decode_response, encode_batch, error_reason
from protocol.envelope import decode_envelope
from protocol.errors import BorderlinkError
from protocol.receipt import receipt_covers, verify_receipt

log = structlog.get_logger("borderlink.delivery")
T = TypeVar("T")
RunDb = Callable[..., Awaitable[Any]]


def backoff(attempts: int, policy: Delivery, rng: random.Random) -> float:
    """Delay before try number ``attempts + 1``: base * 2^attempts, capped, times U(0.5, 1)."""
    raw = min(policy.backoff_max, policy.backoff_base * (2 ** min(attempts, 30)))
    return raw * rng.uniform(0.5, 1.0)


class PeerWorker:
    """One peer's deliveries: a dispatcher task takes due rows and runs up to ``concurrency``
    batches at once. The ids in flight are kept here, in memory, not written to the outbox: a
    crash leaves them due in the database, so they are retried after a restart (PROTOCOL.md 11.4).
    """

    def __init__(
        self,
        peer: PeerInfo,
        *,
        me: bytes,
        store: Store,
        run_db: RunDb,
        transport: Transport,
        policy: Delivery,
        on_delivered: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.peer = peer
        self.me = me
        self.store = store
        self.run_db = run_db
        self.transport = transport
        self.policy = policy
        self.wake = asyncio.Event()
        self.rng = random.Random()  # noqa: S311 - jitter, not secrets
        self.on_delivered = on_delivered
        self.tasks: list[asyncio.Task[None]] = []
        self.inflight: set[bytes] = set()  # message ids of the batches being delivered
        self._batches: set[asyncio.Task[None]] = set()
        self.link = "unknown"  # up | down | unknown, for status
        # Wall-clock seconds, as persisted in next_attempt. Injected so tests can drive the
        # schedule (what is due, when the next try is) without waiting for real time to pass.
        self.clock = clock

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._loop(), name=f"deliver-{self.peer.name}")]

    async def stop(self) -> None:
        tasks = [*self.tasks, *self._batches]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self._step()
            except Exception:  # CancelledError is no Exception: stop() still ends the task
                # A database error (locked, disk full) must not end delivery to this peer for
                # good: log it, wait, try again (regression: test_outage, database locked).
                log.exception("delivery.worker_error", peer=self.peer.name)
                await asyncio.sleep(backoff(0, self.policy, self.rng))

    async def _step(self) -> None:
        """Start one batch if there is room and work, else wait for a wake-up or the next due
        time. A wake-up comes from a new message (``Node.ensure_worker``) or a finished batch."""
        self.wake.clear()  # before reading: a wake-up during the read is not lost
        timeout: float | None = None
        if len(self._batches) < max(1, self.policy.concurrency):
            rows, next_due = await self.run_db(
                self.store.take_batch,
                self.peer.node_id,
                self.clock(),
                self.policy.batch_size,
                tuple(self.inflight),
            )
            if rows:
                self._launch(rows)
                if len(rows) == self.policy.batch_size:
                    return  # maybe more due now: fill the next slot at once
                # Everything due is in flight; its end wakes us (no second read per message).
            elif next_due is not None:
                timeout = max(0.0, next_due - self.clock())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=timeout)

    def _launch(self, rows: list[Row]) -> None:
        ids = [r[0] for r in rows]
        self.inflight.update(ids)
        task = asyncio.create_task(self._run_batch(rows, ids))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run_batch(self, rows: list[Row], ids: list[bytes]) -> None:
        try:
            await self._deliver(rows)
        except Exception:
            log.exception("delivery.worker_error", peer=self.peer.name)
            with contextlib.suppress(Exception):
                await self._fail(rows, "internal error while delivering; see the node's log")
            await asyncio.sleep(backoff(0, self.policy, self.rng))
        finally:
            # Free the slot before waking the dispatcher, so it sees the room.
            self._batches.discard(asyncio.current_task())  # type: ignore[arg-type]
            self.inflight.difference_update(ids)
            self.wake.set()

    async def _deliver(self, rows: list[Row]) -> None:
        peer = self.peer
        started = self.clock()
        try:
            if not peer.endpoint:
                raise DeliveryFailed(f"{peer.name} has no endpoint in its contact card")
            copies = [
                decode_envelope(env).for_recipient(peer.node_id).encode() for _, env, *_ in rows
            ]
            status, ctype, body = await self.transport.post_batch(
                peer.name, peer.endpoint, self.me, encode_batch(copies)
            )
        except DeliveryFailed as exc:
            self.link = "down"
            await self._fail(rows, exc.message)
            return
        self.link = "up"
        await self._settle(rows, status, ctype, body, started)

    async def _settle(
        self,
        rows: list[Row],
        status: int,
        ctype: str,
        body: bytes,
        started: float,
    ) -> None:
        peer = self.peer
        if status != 200:
            reason = error_reason(body)
            text = f"{peer.name} refused the message ({reason}, HTTP {status})"
            if reason in PERMANENT_REASONS and len(rows) == 1:
                await self.run_db(
                    self.store.mark_rejected, peer.node_id, rows[0][0], text, self.clock()
                )
                log.warning(
                    "delivery.rejected", peer=peer.name, message_id=rows[0][0].hex(), reason=reason
                )
            else:
                await self._fail(rows, text)
            return
        try:
            resp = decode_response(body)
            if len(resp.results) != len(rows):
                raise DeliveryFailed(
                    f"{peer.name} answered for {len(resp.results)} of {len(rows)} messages"
                )
            verified = [
                verify_receipt(r, signer=peer.identity, sender=self.me) for r in resp.receipts
            ]
        except BorderlinkError as exc:
            await self._fail(rows, f"{peer.name} sent an invalid answer or receipt: {exc.message}")
            return
        delivered: list[tuple[bytes, bytes]] = []
        retry: list[Row] = []
        now = self.clock()
        for row, result in zip(rows, resp.results, strict=True):
            msg_id, _, content_hash, _, _ = row
            if (
                result.outcome in ("accepted", "duplicate")
                and result.receipt is not None
                and 0 <= result.receipt < len(verified)
                and receipt_covers(verified[result.receipt], msg_id, content_hash)
            ):
                delivered.append((msg_id, resp.receipts[result.receipt]))
            elif result.outcome == "rejected" and result.reason in PERMANENT_REASONS:
                await self.run_db(
                    self.store.mark_rejected,
                    peer.node_id,
                    msg_id,
                    f"{peer.name} refused the message ({result.reason})",
                    now,
                )
            else:
                retry.append(row)
        if delivered:
            await self.run_db(self.store.mark_delivered, peer.node_id, delivered, now)
            if self.on_delivered:
                self.on_delivered(len(delivered))
        for msg_id, _ in delivered:
            log.info(
                "delivery.ok",
                peer=peer.name,
                message_id=msg_id.hex(),
                ms=round((now - started) * 1000, 1),
            )
        if retry:
            await self._fail(retry, f"{peer.name} did not confirm the message (no valid receipt)")

    async def _fail(self, rows: list[Row], error: str) -> None:
        now = self.clock()
        failures = [(r[0], error, now + backoff(r[4], self.policy, self.rng)) for r in rows]
        await self.run_db(self.store.mark_failed, self.peer.node_id, failures)
        for msg_id, _, nxt in failures:
            log.info(
                "delivery.failed",
                peer=self.peer.name,
                message_id=msg_id.hex(),
                error=error,
                retry_in=round(nxt - now, 2),
            )
