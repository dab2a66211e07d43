"""``python -m bench reads`` stays runnable: a small history, one run of each read, every row."""

from __future__ import annotations

import argparse
import re

from bench import reads
from bench.__main__ import BENCHMARKS

ROW = re.compile(
    r"^  borderlink (?P<name>\w+) +CLI +(?P<cli>[\d.]+) ms +admin request +(?P<api>[\d.]+) ms"
)
RESTART = re.compile(r"(?P<sent>\d+) alerts, median (?P<p50>\d+) ms, worst (?P<worst>\d+) ms")
AUDIT = re.compile(r"after a restart \d+ ms \(100 new entries \+ one sweep slice; verified (\S+)\)")


def test_the_read_benchmark_reports_each_read_and_the_audit_check() -> None:
    assert "reads" in BENCHMARKS
    text = reads.run(argparse.Namespace(quick=True, messages=1000, runs=1, window=1.0))
    rows = {m["name"]: m for m in map(ROW.match, text.splitlines()) if m}
    assert set(rows) == {"inbox", "outbox", "status"}
    assert all(0 < float(m["api"]) <= float(m["cli"]) for m in rows.values())
    found = AUDIT.search(text)
    assert found is not None
    # Every entry verified: the home's own from init, the 1,000 filled and the 100 new ones.
    assert 1100 < int(found[1].replace(",", "")) < 1120
    after = RESTART.search(text)
    assert after is not None and int(after["sent"]) > 5
    assert 0 < float(after["p50"]) <= float(after["worst"])
