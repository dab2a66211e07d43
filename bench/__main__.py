"""``python -m bench [NAME ...] [--quick]``: run each benchmark module and print its report.

A benchmark is a module ``bench.<name>`` with ``run(args: argparse.Namespace) -> str``; add its
name to :data:`BENCHMARKS` to have ``make bench`` run it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from collections.abc import Sequence

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
    print(machine(), flush=True)
    for name in args.names or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        print(f"\n== {name} ==", flush=True)
        print(module.run(args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
