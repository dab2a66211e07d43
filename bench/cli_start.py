"""What one ``borderlink`` process costs, as a unit's script pays it: one process per command
(issue 12: "`borderlink send`, one process each: 6 msg/s").

Each case is a fresh process of the installed entry point (``.venv/bin/borderlink``) against a
real pair of nodes (bench/node_pair.py): ``status``, ``inbox``, ``outbox``, a real ``send`` of
one alert, and ``--help`` for scale. Beside them, in the same rounds, the floor no command can
go under: ``python -c pass`` (the interpreter and the venv's site) and ``python -S -c pass``
(the interpreter alone). Rounds interleave the cases, so a neighbour's burst of load lands on
all of them alike, and the median of the rounds is reported: wall time (what a person waits,
the node's answer included) and the process's CPU time (user + system, steadier on a shared
machine). Ratios are of wall times, to both floors of the same run.

The first round is not counted: it writes the bytecode caches, as a first run after an install
or a change does (``PYTHONDONTWRITEBYTECODE`` is removed from the commands' environment).
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.node_pair import MESSAGE_TYPE, RECEIVER, SENDER, Pair

FULL_ROUNDS = 21
QUICK_ROUNDS = 5
FLOOR = "python -c pass"  # the interpreter and the venv's site: no command goes under it
BARE = "python -S -c pass"  # the interpreter alone
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\S.*)$")  # top level: no indent
SEND = "borderlink send (1 alert)"  # its median gives the one-process-per-message rate


@dataclass(frozen=True)
class Timing:
    """Medians over the counted rounds, in milliseconds."""

    wall_ms: float
    cpu_ms: float
    rounds: int


def entry_point() -> list[str]:
    """The installed ``borderlink`` script beside this interpreter, as a person runs it."""
    script = Path(sys.executable).with_name("borderlink")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "cli.main"]  # not installed: the same main, one import less


def cases(home: Path, alert: Path) -> dict[str, list[str]]:
    cli = [*entry_point(), "--home", str(home)]
    return {
        BARE: [sys.executable, "-S", "-c", "pass"],
        FLOOR: [sys.executable, "-c", "pass"],
        "borderlink --help": [*cli, "--help"],
        "borderlink send --help": [*cli, "send", "--help"],
        "borderlink status": [*cli, "status"],
        "borderlink inbox": [*cli, "inbox"],
        "borderlink outbox": [*cli, "outbox"],
        SEND: [
            *cli,
            "send",
            "--to",
            RECEIVER,
            "--type",
            MESSAGE_TYPE,
            str(alert),
        ],
    }


def environment() -> dict[str, str]:
    from tests.integration.harness import env

    environ = env()
    environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return environ


def run_once(argv: list[str], environ: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one process; a failing command ends the benchmark, saying why."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, env=environ, timeout=60)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(commands: dict[str, list[str]], rounds: int) -> dict[str, Timing]:
    environ = environment()
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for done in range(rounds + 1):
        for name, argv in commands.items():
            wall, cpu = run_once(argv, environ)
            if done:  # round 0 writes the bytecode caches
                walls[name].append(wall)
                cpus[name].append(cpu)
    return {
        name: Timing(
            statistics.median(walls[name]) * 1e3, statistics.median(cpus[name]) * 1e3, rounds
        )
        for name in commands
    }


def largest_imports(argv: list[str], top: int = 5) -> list[tuple[str, float]]:
    """The top-level imports of one run of ``argv`` that cost most (``-X importtime``), in ms."""
    if argv[0] != sys.executable:
        argv = [sys.executable, *argv]  # the script, run by this interpreter
    proc = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
    )
    found = [
        (m[2], int(m[1]) / 1000) for m in map(IMPORT_LINE.match, proc.stderr.splitlines()) if m
    ]
    return sorted(found, key=lambda item: -item[1])[:top]


def report(timings: dict[str, Timing], imports: list[tuple[str, float]], mode: str) -> str:
    floor, bare = timings[FLOOR], timings[BARE]
    width = max(map(len, timings))
    head = (
        f"{'one process per command':<{width}}  {'wall ms':>8}  {'CPU ms':>7}  "
        f"{'x ' + FLOOR:>{len(FLOOR) + 2}}  {'x ' + BARE:>{len(BARE) + 2}}  {'over floor':>10}"
    )
    lines = [
        f"{mode}: median of {floor.rounds} rounds, cases interleaved; ratios of wall times to "
        f"the floors of the same run",
        head,
        "-" * len(head),
    ]
    for name, t in timings.items():
        lines.append(
            f"{name:<{width}}  {t.wall_ms:>8.1f}  {t.cpu_ms:>7.1f}  "
            f"{t.wall_ms / floor.wall_ms:>{len(FLOOR) + 1}.2f}x  "
            f"{t.wall_ms / bare.wall_ms:>{len(BARE) + 1}.2f}x  "
            f"{t.wall_ms - floor.wall_ms:>7.1f} ms"
        )
    send = timings[SEND]
    lines.append(f"send, one process per message: {1000 / send.wall_ms:.1f} msg/s")
    shown = ", ".join(f"{name} {ms:.1f} ms" for name, ms in imports)
    lines.append(f"largest top-level imports of one `borderlink status` (-X importtime): {shown}")
    return "\n".join(lines)


def run(args: Any = None) -> str:
    """Start a pair of nodes, time the cases, stop the nodes; returns the report."""
    from protocol.schemas import encode_body, template

    quick = bool(getattr(args, "quick", False))
    rounds = QUICK_ROUNDS if quick else FULL_ROUNDS
    with tempfile.TemporaryDirectory(prefix="bl-cli-start-") as tmp:
        root = Path(tmp)
        alert = root / "alert.json"
        alert.write_bytes(encode_body(template(MESSAGE_TYPE)))
        pair = Pair(root)
        try:
            home = pair.nodes[SENDER].home
            timings = measure(cases(home, alert), rounds)
            imports = largest_imports(cases(home, alert)["borderlink status"])
        finally:
            pair.close()
    return report(timings, imports, "quick" if quick else "full")


if __name__ == "__main__":
    print(run(argparse.Namespace(quick="--quick" in sys.argv)))
