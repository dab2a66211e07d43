"""The issue's aims in one form for every benchmark: what was measured, against what ceiling or
limit of the same run, the ratio, met or NOT met, and why.

A benchmark that has aims ends its report with :func:`block`; ``python -m bench`` finds those
blocks in the reports (:func:`parse`) and prints them together at the end of the whole run, so
one screen says which aims a run met. A line reads::

      drain: 1,862 msg/s | both-cores crypto ceiling 3,120 msg/s | ratio 0.60 (aim >= 0.90) | NOT met | why: ...

The ratio is measured / against; an aim is a bound on that ratio. An absolute aim (5,000 msg/s,
50 ms) is the same thing with the limit itself as ``against`` and a bound of 1. A measurement
that did not happen (NaN) is never met, and says so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

HEADER = "aims:"
LINE = re.compile(
    r"^  (?P<name>[\w.-]+): (?P<measured>[^|]+?) \| (?P<against>[^|]+?) \| "
    r"ratio (?P<ratio>[\d.]+|nan) \(aim (?P<op>>=|<) (?P<bound>[\d.]+)\) \| "
    r"(?P<verdict>met|NOT met) \| why: (?P<why>.*)$"
)


@dataclass(frozen=True)
class Aim:
    """One aim of the issue as one run measured it."""

    name: str  # short and stable: the smoke test and the summary key on it
    measured: float
    unit: str  # of measured and against: "msg/s", "ms", "s"
    against: float  # the in-run ceiling or floor, or the aim's own limit
    against_label: str  # what ``against`` is: "both-cores crypto ceiling", "limit"
    bound: float  # the aim on the ratio
    at_least: bool  # True: ratio >= bound; False: ratio < bound
    why: str  # from what the run observed

    @property
    def ratio(self) -> float:
        if not self.against or math.isnan(self.measured) or math.isnan(self.against):
            return math.nan
        return self.measured / self.against

    @property
    def met(self) -> bool:
        r = self.ratio
        if math.isnan(r):
            return False
        return r >= self.bound if self.at_least else r < self.bound

    def line(self) -> str:
        op = ">=" if self.at_least else "<"
        why = " ".join(self.why.split()).replace("|", "/") or "-"
        return (
            f"  {self.name}: {number(self.measured)} {self.unit} | {self.against_label} "
            f"{number(self.against)} {self.unit} | ratio {self.ratio:.2f} (aim {op} "
            f"{self.bound:g}) | {'met' if self.met else 'NOT met'} | why: {why}"
        )


def number(x: float) -> str:
    """Figures with the precision their size needs: 1,862 / 41.2 / 0.412 / nan."""
    if math.isnan(x):
        return "nan"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def block(aims: list[Aim]) -> str:
    """The final "aims:" block of a report."""
    return "\n".join([HEADER, *(a.line() for a in aims)])


@dataclass(frozen=True)
class Parsed:
    name: str
    ratio: float
    met: bool
    line: str


def parse(report: str) -> list[Parsed]:
    """The aim lines of a report's "aims:" block (every block, if a report holds several)."""
    found: list[Parsed] = []
    inside = False
    for text in report.splitlines():
        if text == HEADER:
            inside = True
            continue
        m = LINE.match(text) if inside else None
        if m is None:
            inside = False
            continue
        found.append(Parsed(m["name"], float(m["ratio"]), m["verdict"] == "met", text))
    return found


def summary(collected: list[tuple[str, list[Parsed]]]) -> str:
    """The aims of a whole ``python -m bench`` run, by benchmark, with a count of those met."""
    lines = ["aims of this run (ratios against ceilings measured in the same run):"]
    total = met = 0
    for bench, aims in collected:
        for a in aims:
            lines.append(f"  [{bench}]{a.line[1:]}")
            total += 1
            met += a.met
    lines.append(f"{met} of {total} aims met")
    return "\n".join(lines)
