"""Shared timing helpers: medians of repeated timed batches, in nanoseconds per operation.

Every benchmark case is a zero-argument callable. :func:`measure` calibrates how many calls make
one batch of about ``batch_seconds``, then times rounds of batches, one batch per case per round,
so that a burst of noise from a neighbour on a shared machine lands on every case alike and the
ratios between cases stay meaningful. Each loop is bounded twice: by a count and by a time budget.
The garbage collector is off while a batch runs, as ``timeit`` does.

Two clocks run around each batch. The figure reported and compared is the CPU time of the
measuring thread: for the single-threaded work timed here it equals wall time on an idle machine,
and on a shared one it leaves out the time spent waiting for a CPU, which is the neighbours' cost,
not ours. The wall-clock median is reported beside it, so a busy machine shows as wall >> CPU.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Case = Callable[[], object]

MAX_OPS_PER_BATCH = 200
MIN_ROUNDS = 3  # a median of fewer batches says little; the time budget yields after these


@dataclass(frozen=True)
class Plan:
    """How long to measure: ``rounds`` batches of about ``batch_seconds`` per case, within budget."""

    rounds: int
    batch_seconds: float
    budget_seconds: float


# Many short batches, interleaved, beat a few long ones on a shared machine: a burst of noise
# spoils a few batches of every case, and the median steps over them.
FULL = Plan(rounds=25, batch_seconds=0.01, budget_seconds=30.0)
QUICK = Plan(rounds=3, batch_seconds=0.001, budget_seconds=0.5)


@dataclass(frozen=True)
class Stat:
    """Per-operation timings of one case: CPU-time median and range, and the wall-time median."""

    median_ns: float  # CPU time, median batch
    low_ns: float  # CPU time, fastest batch
    high_ns: float  # CPU time, slowest batch
    wall_ns: float  # wall time, median batch
    batches: int
    ops: int  # calls per batch

    @property
    def median_us(self) -> float:
        return self.median_ns / 1000

    @property
    def spread(self) -> float:
        """(slowest - fastest) / median: how noisy the run was for this case."""
        return (self.high_ns - self.low_ns) / self.median_ns


def time_batch(fn: Case, ops: int) -> tuple[float, float]:
    """CPU and wall nanoseconds per call, over ``ops`` back-to-back calls."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        for _ in range(ops):
            fn()
        cpu, wall = time.thread_time_ns() - cpu, time.perf_counter_ns() - wall
    finally:
        if was_enabled:
            gc.enable()
    return cpu / ops, wall / ops


def ops_per_batch(fn: Case, batch_seconds: float, max_ops: int = MAX_OPS_PER_BATCH) -> int:
    """Calls that fill about ``batch_seconds``: a warm-up call, then the fastest of three timed.

    With ``max_ops == 1`` (slow cases, such as a key derivation) nothing is called here: the
    first timed batch is then a cold call, which is what a fresh CLI process pays.
    """
    if max_ops <= 1:
        return 1
    fn()
    one = min(time_batch(fn, 1)[0] for _ in range(3))
    return max(1, min(max_ops, int(batch_seconds * 1e9 / max(one, 1.0))))


def measure(
    cases: Mapping[str, Case], plan: Plan, max_ops: int = MAX_OPS_PER_BATCH
) -> dict[str, Stat]:
    """Interleaved rounds of batches; returns each case's :class:`Stat`.

    Stops after ``plan.rounds`` rounds, or earlier once ``plan.budget_seconds`` has passed and at
    least :data:`MIN_ROUNDS` rounds are done (so a slow machine gets a shorter, still valid run).
    """
    ops = {name: ops_per_batch(fn, plan.batch_seconds, max_ops) for name, fn in cases.items()}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    wall: dict[str, list[float]] = {name: [] for name in cases}
    deadline = time.monotonic() + plan.budget_seconds
    for done in range(plan.rounds):
        if done >= MIN_ROUNDS and time.monotonic() > deadline:
            break
        for name, fn in cases.items():
            c, w = time_batch(fn, ops[name])
            cpu[name].append(c)
            wall[name].append(w)
    return {
        name: Stat(
            statistics.median(c),
            min(c),
            max(c),
            statistics.median(wall[name]),
            len(c),
            ops[name],
        )
        for name, c in cpu.items()
    }


def format_us(ns: float) -> str:
    """Microseconds with precision that suits the size: 0.412, 41.2, 41200."""
    us = ns / 1000
    if us < 10:
        return f"{us:.3f}"
    if us < 1000:
        return f"{us:.1f}"
    return f"{us:.0f}"


def format_table(rows: Mapping[str, Stat], title: str) -> str:
    """A fixed-width table: case, median CPU us/op, median wall us/op, spread, batches x ops."""
    width = max([len(title), *map(len, rows)])
    head = (
        f"{title:<{width}}  {'median us/op':>12}  {'wall us/op':>10}  {'spread':>6}"
        f"  {'batches x ops':>13}"
    )
    lines = [head, "-" * len(head)]
    for name, st in rows.items():
        lines.append(
            f"{name:<{width}}  {format_us(st.median_ns):>12}  {format_us(st.wall_ns):>10}"
            f"  {st.spread:>6.0%}  {f'{st.batches} x {st.ops}':>13}"
        )
    return "\n".join(lines)
