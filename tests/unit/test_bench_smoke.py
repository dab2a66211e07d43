"""``make bench`` stays runnable: the crypto benchmark in quick mode, its rows and its numbers; the
queueing benchmark's verdicts on its aims."""

from __future__ import annotations

import argparse
import importlib
import math
import re
import time

import pytest

from bench import crypto
from bench.__main__ import BENCHMARKS, parse

QUICK_SECONDS = 3.0
ROW = re.compile(
    r"^(?P<name>\S.*?)\s{2,}(?P<us>\d+\.?\d*)\s+(?P<wall>\d+\.?\d*)\s+(?P<spread>\d+)%\s+\d+ x \d+$"
)
RATIO = re.compile(
    r"^  (?P<name>\S.*?)\s{2,}seal (?P<seal>[\d.]+)x  open (?P<open>[\d.]+)x  "
    r"seal\+open (?P<both>[\d.]+)x  (?:ok|OVER TARGET)\s+with required work (?P<req>[\d.]+)x$"
)


@pytest.fixture(scope="module")
def report() -> str:
    # About 1 s on an idle machine. CPU time, not wall time: the bound catches a benchmark that
    # grew too slow for `make test`, and does not flake when neighbours share the CPUs.
    start = time.process_time()
    text = crypto.run(argparse.Namespace(quick=True))
    assert time.process_time() - start < QUICK_SECONDS
    return text


def expected_rows() -> set[str]:
    rows = {crypto.HPKE_SEAL, crypto.HPKE_OPEN}
    parts = crypto.SEAL_PARTS + crypto.OPEN_PARTS + crypto.REQUIRED_PARTS
    rows |= {crypto.primitive_row(p, body) for p in parts for body in ("1 KiB", "16 KiB")}
    rows |= {row for sc in crypto.SCENARIOS for row in (sc.seal_row, sc.open_row)}
    rows |= {f"keystore unlock, argon2id {p}" for p in crypto.KEYSTORE_PROFILES}
    return rows


def test_report_has_every_row_with_a_sane_time(report: str) -> None:
    times = {m["name"]: float(m["us"]) for m in map(ROW.match, report.splitlines()) if m}
    assert set(times) == expected_rows()
    assert all(0 < us < 10_000_000 for us in times.values()), times
    # The two KDF profiles differ by about 6x in work; noise does not reverse that.
    assert (
        times["keystore unlock, argon2id moderate"] > times["keystore unlock, argon2id interactive"]
    )


def test_report_has_a_ratio_line_per_scenario(report: str) -> None:
    lines = [m for m in map(RATIO.match, report.splitlines()) if m]
    assert [m["name"] for m in lines] == [sc.name for sc in crypto.SCENARIOS]
    for m in lines:
        values = [float(m[k]) for k in ("seal", "open", "both", "req")]
        assert all(math.isfinite(v) and 0.1 < v < 100 for v in values), m.group(0)


def test_every_listed_benchmark_has_a_run_function() -> None:
    assert "crypto" in BENCHMARKS
    for name in BENCHMARKS:
        assert callable(importlib.import_module(f"bench.{name}").run)
    assert parse(["crypto", "--quick"]).quick
    with pytest.raises(SystemExit):
        parse(["no-such-bench"])


def test_the_queueing_report_says_the_ratio_and_whether_each_aim_was_met() -> None:
    from bench import queueing

    met = queueing.report(queueing.Figures(6000.0, 7500.0, 0.5), queueing.QUICK, "quick")
    assert "aim >= 5,000: met" in met and "aim < 1 s: met" in met
    assert re.search(r"^batch / ceiling\s+0\.80$", met, re.M), met
    missed = queueing.report(queueing.Figures(4000.0, 7500.0, 1.2), queueing.FULL, "full")
    assert "aim >= 5,000: MISSED" in missed and "aim < 1 s: MISSED" in missed
