"""Audit log at scale (PROTOCOL.md 12): append cost as the log grows, and ``audit verify`` of it.

A throwaway home is made with the real ``borderlink init``; its node.db is filled through the real
append path (``Unit.append_audit`` inside one unit of work, a thousand entries per
unit, as a busy node batches them). Append time is reported for the first and the last
thousand entries: O(log n) appends keep the two close. Then ``borderlink audit checkpoint`` signs
the log (unlocking the keystore) and ``borderlink audit verify`` checks every entry against the
recorded roots and the signed checkpoint, both timed as a person would run them (process start
included); the pure ``verify_log`` over the same rows is timed in-process beside them. The issue's
target: verify 100,000 entries in seconds. ``--quick`` uses 10,000 entries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from node.storage import Store
from node.storage.sqlite import open_store
from protocol.audit import AuditEntry, origin_of, verify_log
from protocol.checkpoint import open_checkpoint
from protocol.signednote import Verifier

FULL_ENTRIES = 100_000
QUICK_ENTRIES = 10_000
BATCH = 1_000
PASSPHRASE = "bench-audit-passphrase"
VERIFY_TARGET_SECONDS = 10.0
ROOT = Path(__file__).resolve().parents[1]


def _cli(home: Path, *args: str) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BORDERLINK_")}
    env["BORDERLINK_PASSPHRASE"] = PASSPHRASE
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"borderlink {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return took, proc.stdout


def _entry(i: int) -> AuditEntry:
    return AuditEntry(
        time=1_790_000_000_000 + i,
        actor="node",
        kind="message.delivered",
        message_id=f"{i:032x}",
        peer="belgrade-accu",
        outcome="delivered",
    )


def _fill(store: Store, n: int) -> list[float]:
    """Append n entries; returns microseconds per append_audit call, in order."""
    per_entry: list[float] = []
    for lo in range(0, n, BATCH):
        with store.unit(time.time()) as u:
            for i in range(lo, min(lo + BATCH, n)):
                entry = _entry(i)
                t = time.perf_counter_ns()
                u.append_audit(entry)
                per_entry.append((time.perf_counter_ns() - t) / 1000)
    return per_entry


def _verify_in_process(store: Store, home: Path) -> float:
    """What ``audit verify`` does, without process start: open checkpoints, recompute, compare."""
    from keys.card import parse_card

    ident = parse_card((home / "card.txt").read_text(), now=None).identity
    verifier = Verifier(origin_of(ident.node_id), ident.sign_key)
    start = time.perf_counter()
    cps = [open_checkpoint(c.note, [verifier]) for c in store.checkpoints()]
    rows = store.audit_rows()
    verify_log([r.entry for r in rows], [r.root for r in rows], cps)
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> str:
    n = QUICK_ENTRIES if getattr(args, "quick", False) else FULL_ENTRIES
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        home = Path(tmp) / "home"
        _cli(
            home,
            "init",
            "--name",
            "bar-pcu",
            "--unit-type",
            "PCU",
            "--country",
            "ME",
            "--location",
            "MEBAR",
            "--kdf-profile",
            "interactive",
        )
        store = open_store(home / "node.db")
        start = time.perf_counter()
        times = _fill(store, n)
        fill_s = time.perf_counter() - start
        first, last = times[:BATCH], times[-BATCH:]
        sign_s, _ = _cli(home, "audit", "checkpoint")
        verify_s, out = _cli(home, "audit", "verify")
        pure_s = _verify_in_process(store, home)
        size = store.audit_state().size
        db_mb = sum(p.stat().st_size for p in home.glob("node.db*")) / 1e6  # with the WAL
        store.close()
    ratio = statistics.median(last) / statistics.median(first)
    verdict = "ok" if verify_s <= VERIFY_TARGET_SECONDS else "OVER TARGET"
    return "\n".join(
        [
            f"audit: {n:,} entries appended through Unit.append_audit, {BATCH:,} per unit "
            f"({fill_s:.1f} s, database {db_mb:.1f} MB)",
            f"  append, first {BATCH:,} entries   median {statistics.median(first):7.1f} us/entry",
            f"  append, last {BATCH:,} entries    median {statistics.median(last):7.1f} us/entry"
            f"  ({ratio:.2f}x the first: O(log n) keeps this near 1)",
            f"  audit checkpoint (CLI, keystore unlock + root over {size:,} leaves)  {sign_s:6.2f} s",
            f"  audit verify (CLI, {size:,} entries)   {verify_s:6.2f} s  "
            f"(target <= {VERIFY_TARGET_SECONDS:.0f} s: {verdict})",
            f"  verify_log in-process            {pure_s:6.2f} s",
            f"  verify said: {out.strip()}",
        ]
    )


if __name__ == "__main__":
    print(run(argparse.Namespace(quick="--quick" in sys.argv)))
