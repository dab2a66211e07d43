"""The node's two worker threads and its clock, as typed callables handed to every service.

All storage work runs on one database thread (``run_db``) and envelope cryptography on another
(``run_cpu``), so the event loop never waits on fsync and never computes for long. Services take
``run_db`` and a ``Clock`` as constructor arguments instead of reaching for a global, which is
what lets unit tests drive them with a fake clock and an inline runner.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

Clock = Callable[[], float]  # wall-clock Unix seconds, what the database stores


class Run(Protocol):
    """Run ``fn(*args, **kwargs)`` somewhere else and await its result, types preserved."""

    def __call__(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]: ...


class Threads:
    """One database thread and one crypto thread (each a single worker: SQLite connections
    and the order of commits stay on one thread), and one for the operator's long computations
    (verifying, proving, exporting the audit log), so an operator's ``audit verify`` never holds
    up the envelopes peers are delivering."""

    def __init__(self) -> None:
        self._db = ThreadPoolExecutor(1, thread_name_prefix="db")
        self._cpu = ThreadPoolExecutor(1, thread_name_prefix="crypto")
        self._ops = ThreadPoolExecutor(1, thread_name_prefix="operator")
        # Reads on the second, read-only connection (node/storage Reader): operator listings,
        # status and the background audit check never queue behind the writer's thread.
        self._read = ThreadPoolExecutor(1, thread_name_prefix="read")

    async def run_db(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, functools.partial(fn, *args, **kwargs))

    async def run_cpu(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._cpu, functools.partial(fn, *args, **kwargs))

    async def run_operator(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._ops, functools.partial(fn, *args, **kwargs))

    async def run_read(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        self._db.shutdown(wait=True)
        self._cpu.shutdown(wait=True)
        self._ops.shutdown(wait=True)
        self._read.shutdown(wait=True)


async def run_inline(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """A :class:`Run` for tests and in-process tools: call on the current thread."""
    return fn(*args, **kwargs)


def wall_clock() -> float:
    return time.time()
