"""Per-peer delivery workers: at-least-once on the wire, with receipts proving each delivery.

For each peer with work, one task takes due outbox entries in batches (up to ``batch_size``: one
when the queue is short, many when it is backed up) and keeps up to ``concurrency`` batches in
flight. A batch sends the peer only its own key slot of each envelope; what the answer settles is
decided in node/delivery_rules.py and written here in one unit of work with its audit entries. A
failure schedules the next attempt with capped exponential backoff and jitter; the time is
persisted, so a restart resumes the schedule instead of hammering the peer. See PROTOCOL.md 11.

Reads and writes storage through the storage interface on the database thread (``run_db``) and
talks HTTP only through a :class:`node.peer_client.BatchClient`; the time comes from an injected
clock, so tests drive the schedule without real time passing. :class:`Deliveries` owns the workers:
nobody else reaches into them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import msgspec
import structlog

from keys.statements import check_receipt
from keys.trust import PeerRecord
from node.auditing import record
from node.config import Delivery
from node.delivery_rules import (
    Settlement,
    backoff,
    failed,
    receipts_of,
    settle,
    split_expired,
    verify_receipts,
)
from node.peer_client import Answer, BatchClient, DeliveryFailed
from node.peer_info import PeerInfo
from node.runtime import Clock, Run, run_inline, wall_clock
from node.storage import DueMessage, Store, Unit
from node.storage.rows import KeyNotice
from node.tasks import cancelled, woken
from protocol.batch import encode_batch
from protocol.envelope import decode_envelope
from protocol.errors import Rejected
from protocol.receipt import receipt_digest
from protocol.text import escaped

__all__ = ["Deliveries", "LinkState", "PeerWorker", "backoff"]

log = structlog.get_logger("borderlink.delivery")

Failure = tuple[bytes, str, float]  # (message id, error in words, next attempt time)


@dataclass(frozen=True)
class LinkState:
    """How delivery to one peer stands, for status: ``link`` is up, down, unknown (no try yet)
    or idle (no worker: nothing was due since the node started)."""

    link: str
    in_flight: int  # messages in batches being delivered now


class GroupWriter:
    """What finished batches settle, written in one unit for all that finished while the
    database thread was busy (a broadcast's answers from many peers: one fsync, not one each).
    Each batch's write returns only once the commit that holds it is done. Should the shared
    unit fail, each write is tried in its own, so one batch's error is not another's."""

    def __init__(self, store: Store, run_db: Run, clock: Clock) -> None:
        self.store = store
        self.run_db = run_db
        self.clock = clock
        self._queue: list[tuple[Callable[[Unit], None], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    async def write(self, fn: Callable[[Unit], None]) -> None:
        done = asyncio.get_running_loop().create_future()
        self._queue.append((fn, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="delivery-writes")
        await asyncio.shield(done)

    async def _drain(self) -> None:
        while self._queue:
            jobs, self._queue = self._queue, []
            try:
                errors = await self.run_db(self._commit, [fn for fn, _ in jobs])
            except Exception as exc:
                errors = [exc] * len(jobs)
            except asyncio.CancelledError:
                for _, done in jobs:
                    done.cancel()
                raise
            for (_, done), error in zip(jobs, errors, strict=True):
                if done.done():
                    continue
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

    def _commit(self, fns: list[Callable[[Unit], None]]) -> list[Exception | None]:
        try:
            with self.store.unit(self.clock()) as u:
                for fn in fns:
                    fn(u)
        except Exception:
            if len(fns) == 1:
                raise
        else:
            self.commits += 1
            return [None] * len(fns)
        errors: list[Exception | None] = []
        for fn in fns:
            try:
                with self.store.unit(self.clock()) as u:
                    fn(u)
                errors.append(None)
            except Exception as exc:  # this write's own error, said to its batch alone
                errors.append(exc)
        return errors


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
        run_db: Run,
        client: BatchClient,
        policy: Delivery,
        clock: Clock = wall_clock,
        on_delivered: Callable[[int], None] | None = None,
        rng: random.Random | None = None,
        run_cpu: Run = run_inline,
        writer: GroupWriter | None = None,
    ) -> None:
        self.peer = peer
        self.run_cpu = run_cpu  # receipt signatures are checked there, off the event loop
        self.writer = writer or GroupWriter(store, run_db, clock)
        self.me = me
        self.store = store
        self.run_db = run_db
        self.client = client
        self.policy = policy
        # Wall-clock seconds, as persisted in next_attempt. Injected so tests can drive the
        # schedule (what is due, when the next try is) without waiting for real time to pass.
        self.clock = clock
        self.on_delivered = on_delivered
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self.wake = asyncio.Event()
        self.inflight: set[bytes] = set()  # message ids of the batches being delivered
        self.link = "unknown"  # up | down | unknown, for status
        # A link that fails backs off as one (PROTOCOL.md 11.4): one try per backoff step, the
        # whole backlog waiting for it (each row's next attempt says when), not one try per
        # message. ``link_failures`` counts the steps since the peer last answered.
        self.link_failures = 0
        self.link_retry_at: float | None = None
        # Key statements of this node's may wait for this peer (PROTOCOL.md 13.5): they go
        # first, and no envelope goes while one is queued (the peer could not check it yet).
        self.notices = True
        self._tasks: list[asyncio.Task[None]] = []
        self._batches: set[asyncio.Task[None]] = set()

    def state(self) -> LinkState:
        return LinkState(self.link, len(self.inflight))

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(), name=f"deliver-{self.peer.name}")]

    async def stop(self) -> None:
        await cancelled([*self._tasks, *self._batches])

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
        time. A wake-up comes from a new message (``Deliveries.ensure``) or a finished batch."""
        self.wake.clear()  # before reading: a wake-up during the read is not lost
        timeout: float | None = None
        if self.notices:
            wait = await self._send_notices()
            if wait is not None:
                await woken(self.wake, wait)
                return
        retry_at = self.link_retry_at
        if retry_at is not None and self.clock() < retry_at:
            # Down: nothing is sent before the link's next try; what was queued meanwhile is
            # written as due then, so the outbox says when it goes.
            await self.run_db(self._defer, retry_at)
            await woken(self.wake, max(0.0, retry_at - self.clock()))
            return
        room = 1 if retry_at is not None else max(1, self.policy.concurrency)  # down: one probe
        if len(self._batches) < room:
            rows, next_due = await self.run_db(
                self._take, self.peer.node_id, self.clock(), tuple(self.inflight)
            )
            if rows:
                self._launch(rows)
                if len(rows) == self.policy.batch_size:
                    return  # maybe more due now: fill the next slot at once
                # Everything due is in flight; its end wakes us (no second read per message).
            elif next_due is not None:
                timeout = max(0.0, next_due - self.clock())
        await woken(self.wake, timeout)

    async def _send_notices(self) -> float | None:
        """Send the queued key statements in order; None once none is left queued, else the
        seconds until the next attempt."""
        self.notices = False  # before reading: a statement queued during the read is not lost
        notices = await self.run_db(self.store.key_notices, self.peer.node_id, pending=True)
        for n in notices:
            now = self.clock()
            if n.next_attempt > now:
                self.notices = True
                return n.next_attempt - now
            try:
                answer = await self.client.post_key_statement(self.peer, n.statement)
            except DeliveryFailed as exc:
                self.link = "down"
                retry = backoff(n.attempts, self.policy, self.rng)
                await self.run_db(self._settle_notice, n, "queued", exc.message, now + retry)
                log.info("keys.notice_failed", peer=self.peer.name, kind=n.kind, error=exc.message)
                self.notices = True
                return retry
            self.link = "up"
            status, error, receipt = notice_outcome(answer, self.peer, n.statement)
            retry = backoff(n.attempts, self.policy, self.rng) if status == "queued" else 0.0
            await self.run_db(self._settle_notice, n, status, error, now + retry, receipt)
            log.info("keys.notice", peer=self.peer.name, kind=n.kind, status=status, error=error)
            if status == "queued":
                self.notices = True
                return retry
        return None

    def _settle_notice(
        self,
        n: KeyNotice,
        status: str,
        error: str | None,
        next_attempt: float,
        receipt: bytes | None = None,
    ) -> None:
        with self.store.unit(self.clock()) as u:
            u.mark_notice(n.id, status, error=error, next_attempt=next_attempt, receipt=receipt)
            if status != "queued":
                record(
                    u,
                    "key.delivered" if status == "delivered" else "key.refused",
                    peer=self.peer.name,
                    peer_id=self.peer.node_id.hex(),
                    outcome=status if status == "delivered" else (error or "refused")[:60],
                    detail=f"{n.kind} (queued {round(self.clock() - n.queued_at)} s before)",
                )
                u.add_key_event(
                    self.peer.name, f"own.{n.kind}", status, error or "receipt verified"
                )

    def _take(
        self, peer: bytes, now: float, exclude: tuple[bytes, ...]
    ) -> tuple[list[DueMessage], float | None]:
        """On the database thread: (rows to send, None), or ([], when the next row falls due,
        None if none). Expired rows are marked so, in a unit, and never sent; if that was all
        that was due, the next is due ``now`` (look again at once). Otherwise a read only."""
        rows = self.store.due(peer, now, self.policy.batch_size, exclude)
        live, expired = split_expired(rows, now)
        if expired:
            with self.store.unit(now) as u:
                u.mark_expired(peer, expired)
        if rows:
            return live, None if live else now
        return [], self.store.next_due(peer, exclude)

    def _defer(self, until: float) -> None:
        """On the database thread: rows due before the link's next try are due at it (a read
        first: a commit only when one was queued since the last look)."""
        nxt = self.store.next_due(self.peer.node_id, tuple(self.inflight))
        if nxt is not None and nxt < until:
            with self.store.unit(self.clock()) as u:
                u.defer(self.peer.node_id, until)

    def _launch(self, rows: list[DueMessage]) -> None:
        ids = [r.id for r in rows]
        self.inflight.update(ids)
        task = asyncio.create_task(self._run_batch(rows, ids))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run_batch(self, rows: list[DueMessage], ids: list[bytes]) -> None:
        try:
            await self._deliver(rows)
        except Exception:
            log.exception("delivery.worker_error", peer=self.peer.name)
            with contextlib.suppress(Exception):
                error = "internal error while delivering; see the node's log"
                await self._apply(failed(rows, error), self.clock())
            await asyncio.sleep(backoff(0, self.policy, self.rng))
        finally:
            # Free the slot before waking the dispatcher, so it sees the room.
            task = asyncio.current_task()
            if task is not None:
                self._batches.discard(task)
            self.inflight.difference_update(ids)
            self.wake.set()

    async def _deliver(self, rows: list[DueMessage]) -> None:
        peer = self.peer
        started = self.clock()
        try:
            if not peer.endpoint:
                raise DeliveryFailed(f"{peer.name} has no endpoint in its contact card")
            copies = [
                decode_envelope(r.envelope).for_recipient(peer.node_id).encode() for r in rows
            ]
            answer = await self.client.post_batch(peer, encode_batch(copies))
        except DeliveryFailed as exc:
            self.link = "down"
            now = self.clock()
            retry_at = self.link_retry_at
            if retry_at is None or retry_at <= started:  # a new step, not a batch of this one
                # A restarted node goes on from its rows' tries, not from the first step.
                step = max(self.link_failures, *(r.attempts for r in rows))
                retry_at = now + backoff(step, self.policy, self.rng)
                self.link_retry_at = retry_at
                self.link_failures = step + 1
            await self._apply(failed(rows, exc.message), started, link_retry=retry_at)
            return
        self.link = "up"
        self.link_failures, self.link_retry_at = 0, None
        receipts = receipts_of(answer.status, answer.body)
        verified = (
            await self.run_cpu(verify_receipts, receipts, peer.identity, self.me)
            if receipts
            else None
        )
        outcome = settle(
            rows,
            answer.status,
            answer.body,
            peer=peer.name,
            signer=peer.identity,
            me=self.me,
            verified=verified,
        )
        await self._apply(outcome, started)

    async def _apply(
        self, outcome: Settlement, started: float, *, link_retry: float | None = None
    ) -> None:
        """Write what ``outcome`` settles in one unit (with its audit entries), then log it.
        ``link_retry``: the link is down until then, and every row waiting for it with it."""
        peer = self.peer
        now = self.clock()
        failures = [
            (
                row.id,
                error,
                link_retry
                if link_retry is not None
                else now + backoff(row.attempts, self.policy, self.rng),
            )
            for row, error in outcome.retry
        ]
        if outcome.delivered or outcome.rejected or failures:
            write = functools.partial(
                self._write, peer.node_id, outcome=outcome, failures=failures, retry=link_retry
            )
            await self.writer.write(write)
        if outcome.refused is not None:
            for msg_id, _ in outcome.rejected:
                log.warning(
                    "delivery.rejected",
                    peer=peer.name,
                    message_id=msg_id.hex(),
                    reason=outcome.refused,
                )
        if outcome.delivered and self.on_delivered:
            self.on_delivered(len(outcome.delivered))
        for msg_id, _ in outcome.delivered:
            log.debug(
                "delivery.ok",
                peer=peer.name,
                message_id=msg_id.hex(),
                ms=round((now - started) * 1000, 1),
            )
        for msg_id, error, nxt in failures:
            log.debug(
                "delivery.failed",
                peer=peer.name,
                message_id=msg_id.hex(),
                error=error,
                retry_in=round(nxt - now, 2),
            )
        log.info(
            "delivery.batch",
            peer=peer.name,
            delivered=len(outcome.delivered),
            failed=len(failures),
            refused=len(outcome.rejected),
            ms=round((now - started) * 1000, 1),
            error=failures[0][1] if failures else None,
            retry_in=round(max(f[2] for f in failures) - now, 2) if failures else None,
        )

    @staticmethod
    def _write(
        peer: bytes,
        u: Unit,
        *,
        outcome: Settlement,
        failures: Sequence[Failure],
        retry: float | None = None,
    ) -> None:
        """On the database thread: the outbox changes and their audit entries, in ``u``."""
        for msg_id, error in outcome.rejected:
            u.mark_rejected(peer, msg_id, error)
            record(
                u,
                "message.delivery_refused",
                message_id=msg_id.hex(),
                peer_id=peer.hex(),
                outcome="refused",
                detail=error,
            )
        if outcome.delivered:
            u.mark_delivered(peer, outcome.delivered)
            for msg_id, receipt in outcome.delivered:
                record(
                    u,
                    "message.delivered",
                    message_id=msg_id.hex(),
                    peer_id=peer.hex(),
                    outcome="receipt verified",
                    hashes={"receipt": receipt_digest(receipt)},
                )
        if failures:
            u.mark_failed(peer, failures)
        if retry is not None:
            u.defer(peer, retry)


class Deliveries:
    """The node's delivery workers, one per trusted peer that had work since the node started.

    The only way in: the daemon starts and stops them, the sender and peer changes call
    :meth:`ensure`, status reads :meth:`link`."""

    def __init__(
        self,
        me: bytes,
        store: Store,
        run_db: Run,
        client: BatchClient,
        policy: Delivery,
        clock: Clock = wall_clock,
        on_delivered: Callable[[int], None] | None = None,
        run_cpu: Run = run_inline,
    ) -> None:
        self.me = me
        self.store = store
        self.run_db = run_db
        self.client = client
        self.policy = policy
        self.clock = clock
        self.on_delivered = on_delivered
        self.run_cpu = run_cpu
        self.writer = GroupWriter(store, run_db, clock)  # one for every peer's worker
        self._workers: dict[bytes, PeerWorker] = {}
        self._stopped = False

    async def ensure(self, rec: PeerRecord, *, now: bool = False) -> None:
        """Start the worker of a trusted peer, or give it the peer's current card, and wake it
        (new work may be due). A revoked peer gets no new worker. ``now``: the operator asked
        for a try now (``outbox retry``), so a link that is backed off tries at once instead of
        at its next step; its failures still count, so a failed try backs off further."""
        if self._stopped or rec.status != "trusted":
            return
        info = PeerInfo.of(rec)
        worker = self._workers.get(rec.node_id)
        if worker is None:
            worker = self._workers[rec.node_id] = PeerWorker(
                info,
                me=self.me,
                store=self.store,
                run_db=self.run_db,
                client=self.client,
                policy=self.policy,
                clock=self.clock,
                on_delivered=self.on_delivered,
                run_cpu=self.run_cpu,
                writer=self.writer,
            )
            worker.start()
        else:
            worker.peer = info
        if now:
            worker.link_retry_at = None
        worker.wake.set()

    async def ensure_all(self, records: Iterable[PeerRecord]) -> None:
        for rec in records:
            await self.ensure(rec)

    async def start(self) -> None:
        """Workers for every peer with messages still to deliver (at node start)."""
        await self.refresh()

    async def refresh(self) -> None:
        """Re-read the peers with work or a worker (after a peer was added, changed or revoked
        outside the worker's view) and :meth:`ensure` each; a peer no longer trusted loses its
        worker (what was queued for it is held, node/keychange.py)."""
        wanted = set(await self.run_db(self.store.pending_peers)) | set(self._workers)
        wanted |= {n.peer for n in await self.run_db(self.store.key_notices, pending=True)}
        peers = await self.run_db(self.store.peers)
        for p in peers:
            worker = self._workers.get(p.node_id)
            if worker is not None and p.status != "trusted":
                del self._workers[p.node_id]
                await worker.stop()
        await self.ensure_all(p for p in peers if p.node_id in wanted)

    async def notices_queued(self) -> None:
        """Key statements were queued: every worker looks for them, new ones start."""
        for worker in self._workers.values():
            worker.notices = True
        await self.refresh()

    def link(self, node_id: bytes) -> LinkState:
        worker = self._workers.get(node_id)
        return worker.state() if worker is not None else LinkState("idle", 0)

    async def stop(self) -> None:
        self._stopped = True
        workers, self._workers = list(self._workers.values()), {}
        for w in workers:
            await w.stop()


_NOT_YET = frozenset({"malformed", "expired"})


def notice_outcome(
    answer: Answer, peer: PeerInfo, statement: str
) -> tuple[str, str | None, bytes | None]:
    """(status, error, receipt) of a key statement's answer: delivered only with the peer's
    signature over the exact statement (PROTOCOL.md 13.5)."""
    try:
        data = msgspec.json.decode(answer.body)
    except msgspec.DecodeError:
        data = None
    if answer.status == 200 and isinstance(data, dict) and isinstance(data.get("receipt"), str):
        try:
            receipt = base64.b64decode(data["receipt"], validate=True)
            check_receipt(peer.identity.sign_key, peer.node_id, statement, receipt)
        except (binascii.Error, Rejected):
            return "refused", f"{peer.name} answered with a receipt that does not verify", None
        return "delivered", None, receipt
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        reason = escaped(data["error"], limit=40)
        text = escaped(str(data.get("message", "")), limit=160)
        if answer.status in (429, 503):
            return "queued", f"{peer.name} is busy ({reason})", None
        if data["error"] in _NOT_YET:
            # Our own statement, not valid to the peer now: its clock is off (a card "not
            # valid yet"). Refused for good, every later change would be sequence_skipped
            # there; kept queued (with backoff, the later ones behind it), it lands once the
            # peer's clock is right.
            return "queued", f"{peer.name} refused it for now: {reason}: {text}", None
        return "refused", f"{peer.name} refused it: {reason}: {text}", None
    return "queued", f"{peer.name} answered HTTP {answer.status}", None
