"""Waiting for a condition, never for a length of time, and reading what a node has logged.

The suite must pass on a 2-core machine at a load average of 12. There, everything (a node's
start, a delivery, a retry falling due) takes an unknown multiple of its usual time. A test that
sleeps "long enough" or counts what happened within N seconds then fails although the node is
right. So a test polls for the state it needs (a row's status, an attempt count, a log event),
and the bound on the wait only ends a test that is failing anyway: it is generous
(``PATIENCE``), and costs nothing while the test passes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tests.integration.harness import NodeProc

T = TypeVar("T")

PATIENCE = 120.0  # seconds: far beyond what any condition takes on a loaded machine
POLL = 0.05  # seconds between polls: short against what tests wait for, cheap for the node


def wait_until(
    cond: Callable[[], T | None],
    what: str | Callable[[], str],
    *,
    timeout: float = PATIENCE,
    interval: float = POLL,
) -> T:
    """Poll ``cond`` until it returns something truthy, and return that.

    Bounded in time (``timeout``) and in count (at most one poll per ``interval`` of it). On
    timeout the test fails, saying what it waited for: ``what``, or what ``what()`` says then
    (so the message can show the state the condition kept seeing).
    """
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        got = cond()
        if got:
            return got
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    said = what() if callable(what) else what
    raise AssertionError(f"waited {timeout:.0f} s in vain for {said}")


def log_events(node: NodeProc, event: str | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """The node's JSON log records (its stderr is a file, so structlog writes JSON lines) from
    byte ``offset`` on, across restarts; only those named ``event`` if given.

    A line the node is still writing does not parse yet and is skipped: the next poll sees it.
    """
    out = []
    text = node.log.read_bytes()[offset:].decode(errors="replace")
    for line in text.splitlines():
        if not line.startswith("{") or (event is not None and f'"{event}"' not in line):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if event is None or rec.get("event") == event:
            out.append(rec)
    return out


def start(node: NodeProc) -> None:
    """Start ``node`` (again) and wait, with PATIENCE, until it is ready: a node starting on a
    loaded machine may take longer than the harness's default wait."""
    node.start(wait=False)
    node.wait_ready(timeout=PATIENCE)
