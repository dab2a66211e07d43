"""The node's worker threads, its crypto processes and its clock, as typed callables handed to
every service.

All storage work runs on one database thread (``run_db``) and envelope cryptography through
``run_cpu``, so the event loop never waits on fsync and never computes for long. Services take
``run_db`` and a ``Clock`` as constructor arguments instead of reaching for a global, which is
what lets unit tests drive them with a fake clock and an inline runner.

``run_cpu`` runs the functions registered with :func:`in_process` (opening a batch of envelopes,
sealing) in a pool of worker processes, one per usable core ([node] crypto_processes), so
cryptography escapes the parent's GIL and both cores work; anything else runs on the crypto
thread, as before. A worker gets the node's private identity once, when it starts (never per
call); a call's arguments and result are small picklable data, the node's identity passed as a
token the worker swaps for its own copy. A worker that dies (killed, out of memory) breaks the
pool: the calls it held fail with :class:`WorkerLost` (the caller answers "busy, try again"),
and the next call gets a new pool. A worker ends by itself when the node does, however the node
ended (it watches its parent's pid), so kill -9 of the node leaves no orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, ParamSpec, Protocol, TypeVar

import structlog

from protocol.envelope import seal
from protocol.errors import NodeError
from protocol.identity import Identity

P = ParamSpec("P")
T = TypeVar("T")

Clock = Callable[[], float]  # wall-clock Unix seconds, what the database stores

log = structlog.get_logger("borderlink.runtime")

PARENT_CHECK_EVERY = 0.5  # seconds between a worker's looks at whether the node still runs


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


class _Me:
    """Stands for the node's identity in a call sent to a worker (an Identity never pickles)."""

    def __reduce__(self) -> str:
        return "ME"


ME = _Me()
_worker_identity: Identity | None = None


def _worker_start(parent: int, secret: bytes, node_id: bytes, retired: list[Any]) -> None:
    """In the worker process, once: no core dumps (it holds the keys), Ctrl-C is the node's to
    handle, the identity rebuilt, and a watch that ends the worker when its node is gone."""
    global _worker_identity
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from node.process import harden

    harden()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ident = Identity.from_secret_bytes(secret, node_id=node_id)
    ident.retire([(X25519PrivateKey.from_private_bytes(k), until) for k, until in retired])
    _worker_identity = ident

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_EVERY)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _worker_call(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    me = _worker_identity
    args = tuple(me if a is ME or isinstance(a, _Me) else a for a in args)
    kwargs = {k: me if isinstance(v, _Me) else v for k, v in kwargs.items()}
    return fn(*args, **kwargs)


def _ready() -> int:
    return os.getpid()


class CryptoPool:
    """Worker processes holding the node's identity; replaced when it changes (a rotation
    takes over the identity in place) or when a worker died."""

    def __init__(self, identity: Identity, processes: int) -> None:
        self.identity = identity
        self.processes = processes
        self._context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        self._executor, self._keys = self._new()

    def _new(self) -> tuple[ProcessPoolExecutor, object]:
        ident = self.identity
        executor = ProcessPoolExecutor(
            self.processes,
            mp_context=self._context,
            initializer=_worker_start,
            initargs=(os.getpid(), ident.secret_bytes(), ident.node_id, ident.retired_secrets()),
        )
        return executor, ident.public

    def _current(self) -> ProcessPoolExecutor:
        if self.identity.public != self._keys:  # rotated: the workers hold the old keys
            self._replace(self._executor)
        return self._executor

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if broken is not self._executor:
            return  # another call replaced it already
        old = broken
        self._executor, self._keys = self._new()
        old.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        me = self.identity
        args = tuple(ME if a is me else a for a in args)
        kwargs = {k: ME if v is me else v for k, v in kwargs.items()}
        executor = self._current()
        try:
            future: Future[T] = executor.submit(_worker_call, fn, args, kwargs)
            return await asyncio.wrap_future(future)
        except BrokenProcessPool as exc:
            self._replace(executor)
            log.warning("crypto.worker_lost", action="started new crypto workers")
            raise WorkerLost("a crypto worker stopped while it held this request") from exc

    async def warm(self) -> list[int]:
        """Start every worker now (their imports take a moment), not at the first message;
        their pids."""
        executor = self._current()
        futures = [asyncio.wrap_future(executor.submit(_ready)) for _ in range(self.processes)]
        return list(await asyncio.gather(*futures))

    def pids(self) -> list[int]:
        """The worker processes' pids (for tests and the operator)."""
        procs: dict[int, Any] = getattr(self._executor, "_processes", None) or {}
        return list(procs)

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self._executor.shutdown(wait=True, cancel_futures=True)


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
        self.pool = CryptoPool(identity, processes) if identity and processes > 0 else None

    @property
    def cpu_parallel(self) -> int:
        """How many ``run_cpu`` calls make progress at once."""
        return self.pool.processes if self.pool is not None else 1

    async def run_db(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, functools.partial(fn, *args, **kwargs))

    async def run_cpu(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if self.pool is not None and fn in _IN_PROCESS:
            return await self.pool.run(fn, args, kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._cpu, functools.partial(fn, *args, **kwargs))

    async def run_operator(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._ops, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        self._db.shutdown(wait=True)
        self._cpu.shutdown(wait=True)
        self._ops.shutdown(wait=True)


async def run_inline(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """A :class:`Run` for tests and in-process tools: call on the current thread."""
    return fn(*args, **kwargs)


def wall_clock() -> float:
    return time.time()
