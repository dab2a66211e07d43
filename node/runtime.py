"""The node's worker threads, its crypto processes and its clock, as typed callables handed to
every service.

All storage work runs on one database thread (``run_db``) and envelope cryptography through
``run_cpu``, so the event loop never waits on fsync and never computes for long. Services take
``run_db`` and a ``Clock`` as constructor arguments instead of reaching for a global, which is
what lets unit tests drive them with a fake clock and an inline runner.

``run_cpu`` runs the functions registered with :func:`in_process` (opening a batch of envelopes,
sealing, checking receipts) on the crypto thread while it is free, and in worker processes, one
per usable core ([node] crypto_processes), while it is busy: a backlog's cryptography escapes
the parent's GIL and uses every core, and one message at a time pays no process hop (measured:
the hop costs more latency than it saves on a single envelope). Anything else runs on the
crypto thread, as before. A worker (node/crypto_worker.py, its own interpreter, not a fork of this
threaded one) gets the node's private identity once, when it starts, never per call; a call's
arguments and result are small picklable data, the node's identity passed as a token the worker
swaps for its own copy. A worker that dies (killed, out of memory) fails the call it held with
:class:`WorkerLost` (the receiver answers "unavailable", which the sender retries) and another
is started for the next call. A worker reads its calls from a pipe the node holds: when the node
ends, however it ends (kill -9 included), the pipe closes and the worker exits, so none is left.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import os
import pickle
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

import structlog

from node.crypto_worker import LENGTH, frame
from protocol.envelope import seal
from protocol.errors import NodeError
from protocol.identity import Identity

P = ParamSpec("P")
T = TypeVar("T")

Clock = Callable[[], float]  # wall-clock Unix seconds, what the database stores

log = structlog.get_logger("borderlink.runtime")


class Run(Protocol):
    """Run ``fn(*args, **kwargs)`` somewhere else and await its result, types preserved."""

    def __call__(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]: ...


class WorkerLost(NodeError):
    """A crypto worker process ended while it held this call: nothing was decided, try again."""


_IN_PROCESS: set[Callable[..., Any]] = set()


def in_process(fn: Callable[P, T]) -> Callable[P, T]:
    """Mark a module-level function as worth a worker process: pure computation on picklable
    data (the node's own identity may be one argument), costing more than the hop (about
    0.1 ms: pickling, two pipe writes)."""
    _IN_PROCESS.add(fn)
    return fn


in_process(seal)


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no sched_getaffinity on this platform
        return max(1, os.cpu_count() or 1)


class Me:
    """Stands for the node's identity in a call sent to a worker (an Identity never pickles)."""


ME = Me()
GIVE_UP_AFTER = 5  # calls lost in a row to dead workers before crypto goes back to a thread
_WORKER = "import sys; sys.path.insert(0, sys.argv[1]); from node.crypto_worker import main; main()"
_ROOT = str(Path(__file__).resolve().parent.parent)  # where the node package is imported from


class _Worker:
    """One worker process and its two pipes; one call at a time."""

    def __init__(self, proc: asyncio.subprocess.Process, keys: object) -> None:
        self.proc = proc
        self.keys = keys  # the identity's public keys it was started with

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def call(self, payload: bytes) -> tuple[bool, Any]:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(frame(payload))
            await stdin.drain()
            (n,) = LENGTH.unpack(await stdout.readexactly(LENGTH.size))
            answer: tuple[bool, Any] = pickle.loads(await stdout.readexactly(n))  # noqa: S301
        except (OSError, asyncio.IncompleteReadError, EOFError, pickle.UnpicklingError) as exc:
            self.kill()
            raise WorkerLost("a crypto worker stopped while it held this request") from exc
        return answer

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()


class CryptoPool:
    """Worker processes holding the node's identity (node/crypto_worker.py), started at the
    first call (or :meth:`warm`); one replaced when it died, all when the identity changed (a
    rotation takes over the identity in place)."""

    def __init__(self, identity: Identity, processes: int) -> None:
        self.identity = identity
        self.processes = processes
        self._idle: asyncio.Queue[_Worker] | None = None
        self._workers: set[_Worker] = set()
        self._starting = 0
        self._closed = False
        self.lost_in_a_row = 0  # calls failed by a dead worker since the last one answered
        self._respawning: set[asyncio.Future[None]] = set()
        self._warming: asyncio.Task[list[int]] | None = None
        self.on_free: Callable[[], None] = lambda: None  # a worker became idle

    async def _spawn(self) -> _Worker:
        ident = self.identity
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER,
            _ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        worker = _Worker(proc, ident.public)
        secrets = (ident.secret_bytes(), ident.node_id, ident.retired_secrets())
        assert proc.stdin is not None
        proc.stdin.write(frame(pickle.dumps(secrets)))
        await proc.stdin.drain()
        return worker

    async def _take(self) -> _Worker:
        if self._closed:
            raise WorkerLost("the node is stopping")
        if self._idle is None:
            self._idle = asyncio.Queue()
        while True:
            if self._idle.empty() and len(self._workers) + self._starting < self.processes:
                self._starting += 1
                try:
                    worker = await self._spawn()
                finally:
                    self._starting -= 1
                self._workers.add(worker)
            else:
                worker = await self._idle.get()
            if worker.keys == self.identity.public and worker.proc.returncode is None:
                return worker
            if worker.proc.returncode is not None:  # died while idle: no call lost
                log.warning("crypto.worker_lost", pid=worker.pid, action="starting another")
            self._retire(worker)  # rotated away from its keys, or dead

    def _retire(self, worker: _Worker) -> None:
        self._workers.discard(worker)
        worker.kill()

    def _give_back(self, worker: _Worker) -> None:
        if self._closed or self._idle is None:
            self._retire(worker)
        else:
            self._idle.put_nowait(worker)
            self.on_free()

    async def run(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        me = self.identity
        payload = pickle.dumps(
            (
                fn,
                tuple(ME if a is me else a for a in args),
                {k: ME if v is me else v for k, v in kwargs.items()},
            )
        )
        worker = await self._take()
        # The call runs to its end even if the caller is cancelled: the worker's answer must be
        # read before it takes another call.
        call = asyncio.ensure_future(worker.call(payload))
        call.add_done_callback(lambda c: self._after(worker, c))
        ok, value = await asyncio.shield(call)
        if not ok:
            raise value
        result: T = value
        return result

    def _after(self, worker: _Worker, call: asyncio.Future[tuple[bool, Any]]) -> None:
        if call.cancelled() or call.exception() is not None:
            self._retire(worker)
            self.lost_in_a_row += 1
            log.warning("crypto.worker_lost", pid=worker.pid, action="starting another")
            if not self.failing and not self._closed:
                task = asyncio.ensure_future(self._respawn())
                self._respawning.add(task)
                task.add_done_callback(self._respawning.discard)
        else:
            self.lost_in_a_row = 0
            self._give_back(worker)

    async def _respawn(self) -> None:
        """A worker in place of one that died, ready before the next call asks for it."""
        if len(self._workers) + self._starting >= self.processes:
            return
        self._starting += 1
        try:
            worker = await self._spawn()
        except OSError as exc:
            log.warning("crypto.worker_not_started", error=str(exc)[:200])
            return
        finally:
            self._starting -= 1
        self._workers.add(worker)
        self._give_back(worker)

    @property
    def idle(self) -> int:
        """Workers started and waiting for a call."""
        return 0 if self._idle is None else self._idle.qsize()

    @property
    def failing(self) -> bool:
        """Workers that die at every call (they cannot start here, or are killed as they do)
        must not stop the node receiving: the caller falls back to its crypto thread."""
        return self.lost_in_a_row >= GIVE_UP_AFTER

    async def warm(self) -> list[int]:
        """Start every worker now (each imports for a while), not at the first message; their
        pids."""
        taken = [await self._take() for _ in range(self.processes)]
        for w in taken:
            self._give_back(w)
        return self.pids()

    def start_soon(self) -> None:
        """Start every worker in the background (once), and say so in the log with their pids."""
        if self._warming is not None or self._closed:
            return
        self._warming = asyncio.ensure_future(self.warm())
        self._warming.add_done_callback(_said_started)

    def pids(self) -> list[int]:
        """The worker processes' pids (for tests and the operator)."""
        return sorted(w.pid for w in self._workers)

    async def aclose(self) -> None:
        """Close every worker's input (it exits at its end) and wait for it."""
        if self._warming is not None and not self._warming.done():
            with contextlib.suppress(Exception):  # said in the log by _said_started
                async with asyncio.timeout(5.0):
                    await asyncio.shield(self._warming)
        self._closed = True
        workers, self._workers = list(self._workers), set()
        for w in workers:
            if w.proc.stdin is not None:
                w.proc.stdin.close()
        for w in workers:
            try:
                async with asyncio.timeout(2.0):
                    await w.proc.wait()
            except TimeoutError:
                w.kill()

    def shutdown(self) -> None:
        """Without a loop (a node that never started): kill what is left."""
        self._closed = True
        for w in self._workers:
            w.kill()


def _said_started(task: asyncio.Task[list[int]]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.warning("crypto.worker_not_started", error=str(exc)[:200])
    else:
        log.info("node.crypto_workers", pids=task.result())


class Threads:
    """One database thread and one crypto thread (each a single worker: SQLite connections
    and the order of commits stay on one thread), and one for the operator's long computations
    (verifying, proving, exporting the audit log), so an operator's ``audit verify`` never holds
    up the envelopes peers are delivering. With ``processes`` > 0 and the node's ``identity``,
    the :func:`in_process` functions go to that many worker processes instead of the crypto
    thread."""

    def __init__(self, identity: Identity | None = None, processes: int = 0) -> None:
        self._db = ThreadPoolExecutor(1, thread_name_prefix="db")
        self._cpu = ThreadPoolExecutor(1, thread_name_prefix="crypto")
        self._ops = ThreadPoolExecutor(1, thread_name_prefix="operator")
        # Reads on the second, read-only connection (node/storage Reader): operator listings,
        # status and the background audit check never queue behind the writer's thread.
        self._read = ThreadPoolExecutor(1, thread_name_prefix="read")
        self.pool = CryptoPool(identity, processes) if identity and processes > 0 else None
        self._fell_back = False
        self._on_thread = 0  # run_cpu calls given to the crypto thread, not yet done
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        if self.pool is not None:
            self.pool.on_free = self._lane_freed

    @property
    def cpu_parallel(self) -> int:
        """How many ``run_cpu`` calls make progress at once."""
        return self.pool.processes if self.pool is not None else 1

    async def run_db(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, functools.partial(fn, *args, **kwargs))

    async def run_cpu(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        pool = self.pool
        if pool is None or fn not in _IN_PROCESS:
            return await self._on_thread_run(fn, args, kwargs)
        if pool.failing:
            if not self._fell_back:
                self._fell_back = True
                log.error("crypto.workers_failing", action="cryptography on the crypto thread")
            return await self._on_thread_run(fn, args, kwargs)
        # The crypto thread and the workers are lanes, and a call takes the first one free: the
        # thread while it is idle (no process hop, which costs more latency than it saves on
        # one envelope), else an idle worker, else it waits for whichever frees first. One
        # message at a time pays nothing, and a backlog spreads over every core without calls
        # queueing behind a busy thread while a worker is free.
        if self._on_thread > 0:
            pool.start_soon()  # the thread is busy: from now on a backlog has every core
        while self._on_thread > 0 and not pool.idle:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
        if self._on_thread == 0:
            return await self._on_thread_run(fn, args, kwargs)
        return await pool.run(fn, args, kwargs)

    async def _on_thread_run(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        loop = asyncio.get_running_loop()
        self._on_thread += 1
        try:
            return await loop.run_in_executor(self._cpu, functools.partial(fn, *args, **kwargs))
        finally:
            self._on_thread -= 1
            self._lane_freed()

    def _lane_freed(self) -> None:
        """Wake the call that waited longest for a lane (it looks again: another may have
        taken the lane first)."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def run_operator(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._ops, functools.partial(fn, *args, **kwargs))

    async def run_read(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read, functools.partial(fn, *args, **kwargs))

    async def aclose(self) -> None:
        """End the crypto workers (the node is stopping)."""
        if self.pool is not None:
            await self.pool.aclose()

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        self._db.shutdown(wait=True)
        self._cpu.shutdown(wait=True)
        self._ops.shutdown(wait=True)
        self._read.shutdown(wait=True)


async def run_inline(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """A :class:`Run` for tests and in-process tools: call on the current thread."""
    return fn(*args, **kwargs)


def wall_clock() -> float:
    return time.time()
