"""A real node's peer API, spoken to directly as a trusted peer, for bench/under_attack.py and
bench/tls_cost.py.

One node (``belgrade-accu``, the target) runs as a real ``borderlink serve`` process on 127.0.0.1,
started by ``tests/integration/harness.py``; the trusted peer (``bar-pcu``) has a home and a card
the target trusts, but no process: the bench is that peer. It seals fresh envelopes with bar-pcu's
identity (one per delivery, so the target opens, stores with fsync and signs a receipt for each,
as for real traffic) and POSTs them over mutual TLS pinned to the target's card, exactly as the
node's own ``PeerClient`` does (one aiohttp session, the context from ``node/tls.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench.node_pair import MESSAGE_TYPE, RECEIVER, SENDER, limits_env

T = TypeVar("T")

TARGET, PEER = RECEIVER, SENDER
TTL = 3600


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def body_raw() -> bytes:
    """The 1 KiB seizure alert of bench/node_throughput.py, schema-encoded as seal wants it."""
    from bench.node_throughput import body_1k
    from protocol.schemas import decode_body, encode_body

    return encode_body(decode_body(MESSAGE_TYPE, json.dumps(body_1k()).encode()))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MB (/proc/PID/status); NaN if it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            line = next(ln for ln in f if ln.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return float("nan")
    return int(line.split()[1]) / 1024


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


class Target:
    """The target node, running, and everything needed to talk to it as its trusted peer."""

    def __init__(self, root: Path, extra_env: dict[str, str] | None = None) -> None:
        from keys.card import parse_card
        from tests.integration.harness import PASSPHRASE, make_network
        from tests.tlsclient import anonymous, home_identity

        self.root = root
        self.nodes = make_network(root, [PEER, TARGET], start=False)
        self.node = self.nodes[TARGET]
        self.node.extra_env = limits_env() | dict(extra_env or {})
        self.node.start()
        assert self.node.proc is not None
        self.pid = self.node.proc.pid
        self.peer_identity = home_identity(self.nodes[PEER].home, PASSPHRASE)
        self.target_public = parse_card(
            self.node.home.joinpath("card.txt").read_text(), now=None
        ).identity
        self.peer_context: ssl.SSLContext = self.nodes[PEER].as_peer_of(self.node)
        self.anonymous_context: ssl.SSLContext = anonymous()
        self.body = body_raw()

    @property
    def host_port(self) -> tuple[str, int]:
        return "127.0.0.1", self.node.port

    @property
    def url(self) -> str:
        return self.node.url

    def target_identity(self) -> Any:
        """The target's private identity (to time opening its envelopes in this process)."""
        from tests.integration.harness import PASSPHRASE
        from tests.tlsclient import home_identity

        return home_identity(self.node.home, PASSPHRASE)

    def seal(self, n: int) -> list[bytes]:
        """``n`` fresh envelopes from the peer to the target, encoded for the wire."""
        from protocol.envelope import seal

        now = int(time.time())
        return [
            seal(
                self.peer_identity, [self.target_public], MESSAGE_TYPE, self.body, now=now, ttl=TTL
            ).encode()
            for _ in range(n)
        ]

    def forged(self, n: int) -> list[bytes]:
        """``n`` envelopes that claim to come from the trusted peer, signed and sealed by someone
        else: what an attacker without the peer's key can send."""
        import msgspec

        from protocol.envelope import seal
        from protocol.identity import Identity

        mallory = Identity.generate()
        now = int(time.time())
        out = []
        for _ in range(n):
            env = seal(mallory, [self.target_public], MESSAGE_TYPE, self.body, now=now, ttl=TTL)
            out.append(msgspec.structs.replace(env, sender=self.peer_identity.node_id).encode())
        return out

    def close(self) -> None:
        from tests.integration.harness import stop_all

        stop_all(self.nodes)


def check_answer(status: int, body: bytes, expected: int) -> str:
    """ "ok" if a batch answer accepted all ``expected`` envelopes, else a short reason."""
    from protocol.batch import decode_response, error_reason

    if status != 200:
        return f"HTTP {status} {error_reason(body)}"
    resp = decode_response(body)
    bad = [r.reason or r.outcome for r in resp.results if r.outcome != "accepted"]
    if len(resp.results) != expected or bad:
        return f"{len(resp.results)} results, not accepted: {', '.join(sorted(set(bad)))}"
    return "ok"


def quick_or_full(args: Any, prog: str, quick: T, full: T) -> tuple[T, str]:
    """The plan ``args`` ask for (``python -m bench``'s namespace, or an argv list when a module
    is run alone): ``quick`` with ``--quick``, else ``full``; and its name."""
    if isinstance(args, Sequence) and not isinstance(args, str):
        parser = argparse.ArgumentParser(prog=prog)
        parser.add_argument("--quick", action="store_true")
        args = parser.parse_args(list(args))
    return (quick, "quick") if getattr(args, "quick", False) else (full, "full")
