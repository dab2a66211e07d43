"""Stopping tasks for certain (node/tasks.py): SIGTERM once left a node delivering for ever,
because a cancellation that met a wake-up was lost (CI, issue 11)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import pytest

from node import tasks as node_tasks
from node.tasks import cancelled, woken


async def _worker(
    wake: asyncio.Event, rounds: list[int], wait: Callable[[asyncio.Event], Awaitable[object]]
) -> None:
    """A delivery worker's shape: clear, wait for a wake-up, go round again."""
    while True:
        wake.clear()
        await wait(wake)
        rounds.append(1)


async def test_a_wake_up_that_meets_the_cancellation_does_not_keep_the_worker_going() -> None:
    wake = asyncio.Event()
    rounds: list[int] = []
    task = asyncio.create_task(_worker(wake, rounds, lambda e: woken(e, 30.0)))
    await asyncio.sleep(0)  # the worker waits
    wake.set()
    task.cancel()  # the node stops in the same turn a batch ends
    for _ in range(10):
        await asyncio.sleep(0)
    assert task.cancelled()
    assert rounds == []


async def test_wait_for_in_this_python_is_what_lost_it() -> None:
    """Why the node does not use asyncio.wait_for to wait (skipped where it was fixed, 3.12)."""
    if sys.version_info >= (3, 12):
        pytest.skip("asyncio.wait_for keeps a cancellation that meets its result from 3.12 on")
    wake = asyncio.Event()
    rounds: list[int] = []
    task = asyncio.create_task(
        _worker(wake, rounds, lambda e: asyncio.wait_for(e.wait(), timeout=30.0))
    )
    await asyncio.sleep(0)
    wake.set()
    task.cancel()
    for _ in range(10):
        await asyncio.sleep(0)
    assert not task.done() and rounds == [1]  # lost: the worker waits again
    await cancelled([task])
    assert task.cancelled()


async def test_a_task_that_swallows_its_cancellation_is_cancelled_again_until_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(node_tasks, "RECANCEL_EVERY", 0.01)
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed == 3:
                    raise

    async def failing() -> None:
        raise RuntimeError("a task's own error is its own to log")

    tasks = [asyncio.create_task(stubborn()), asyncio.create_task(failing())]
    await asyncio.sleep(0)
    await cancelled(tasks)
    assert swallowed == 3
    assert all(t.done() for t in tasks)


async def test_woken_says_whether_the_event_came() -> None:
    wake = asyncio.Event()
    assert await woken(wake, 0.0) is False
    wake.set()
    assert await woken(wake, 30.0) is True
    assert await woken(wake, None) is True
