"""``python -m bench [NAME ...] [--quick]``: run each benchmark module and print its report.

A benchmark is a module ``bench.<name>`` with ``run(args: argparse.Namespace) -> str``; add its
name to :data:`BENCHMARKS` to have ``make bench`` run it. A report that ends with an "aims:"
block (bench/aims.py) has its aims collected; the whole run ends with all of them, so one screen
says which of the issue's aims this run met. A benchmark that fails is reported as failed and the
run goes on: the others' figures are still worth having.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import traceback
from collections.abc import Sequence

from bench import aims

BENCHMARKS = [
    "crypto",
    "node_throughput",
    "audit",
    "under_attack",
    "tls_cost",
    "flow",
    "queueing",
    "reads",
    "cli_start",
    "broadcast",
]


def machine() -> str:
    """One line naming the machine, since figures mean little without it."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    return f"machine: {cpu}, nproc {os.cpu_count()}, Python {platform.python_version()}"


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="a short, noisier run (smoke test)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(
            f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    print(machine(), f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    collected: list[tuple[str, list[aims.Parsed]]] = []
    failed = []
    for name in args.names or BENCHMARKS:
        print(f"\n== {name} ==", flush=True)
        try:
            text = importlib.import_module(f"bench.{name}").run(args)
        except Exception:  # one failure is reported and the run goes on
            traceback.print_exc()
            failed.append(name)
            continue
        print(text, flush=True)
        found = aims.parse(text)
        if found:
            collected.append((name, found))
    if collected:
        print("\n== aims ==", flush=True)
        print(aims.summary(collected), flush=True)
    if failed:
        print(f"failed: {', '.join(failed)} (their aims are not measured)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
