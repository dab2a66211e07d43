"""Ending tasks for certain. Python 3.11's ``asyncio.wait_for`` returns a result that arrived at
the moment its task was cancelled, and the cancellation is lost: a delivery worker woken just as
the node stopped went on delivering for ever, and SIGTERM never ended the node (CI, issue 11).
The node waits with ``asyncio.timeout`` instead, and stops its tasks with :func:`cancelled`,
which cancels again whatever did not end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

RECANCEL_EVERY = 1.0  # seconds a task has to end before it is cancelled again


async def cancelled(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and return once every one has ended; their errors are not raised here
    (each task logs its own)."""
    pending = set(tasks)
    while pending:
        for t in pending:
            t.cancel()
        done, pending = await asyncio.wait(pending, timeout=RECANCEL_EVERY)
        for t in done:
            if not t.cancelled():
                t.exception()  # retrieved: no "exception was never retrieved" at exit


async def woken(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds (None: no limit); whether it was set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
