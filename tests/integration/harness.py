"""Real nodes for integration tests: throwaway homes, real ``borderlink serve`` processes on
127.0.0.1, the real CLI. Nothing here is mocked; a test reads like an operator's session.

``cli`` runs commands other than ``serve`` in the test process (tests/inprocess.py): a fresh
interpreter per command was most of the suite's run time, and few tests are about the process.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.inprocess import run_main
from tests.tlsclient import anonymous, card_cert, home_identity, peer_context

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "integration-test-passphrase"
UNITS = {
    "bar-pcu": ("PCU", "ME", "MEBAR"),
    "belgrade-accu": ("ACCU", "RS", "RSBEG"),
    "skopje-coord": ("coordinator", "MK", "MKSKP"),
    "zagreb-jaitf": ("JAITF", "HR", "HRZAG"),
    # A region of ten units around skopje-coord (tests/integration/test_region.py)
    "kotor-pcu": ("PCU", "ME", "MEKOT"),
    "durres-pcu": ("PCU", "AL", "ALDRZ"),
    "tirana-accu": ("ACCU", "AL", "ALTIA"),
    "sofia-accu": ("ACCU", "BG", "BGSOF"),
    "varna-pcu": ("PCU", "BG", "BGVAR"),
    "thessaloniki-pcu": ("PCU", "GR", "GRSKG"),
    "sarajevo-accu": ("ACCU", "BA", "BASJJ"),
}


def _ephemeral() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


_PORTS = random.Random()  # spreading test ports, not secrets


def free_port() -> int:
    """A port free now and outside the kernel's ephemeral range. A port the kernel hands out for
    ``bind(0)`` comes from the range it also takes the local ports of outgoing connections from,
    so between this check and the node's bind another test's client could take it (a CI run saw
    "address is already in use"); a port below the range is only ever taken by a bind."""
    eph = _ephemeral()
    low, high = (10000, eph.start - 1) if eph.start > 12000 else (eph.stop, 65535)
    for _ in range(200):
        port = _PORTS.randint(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # a crowded machine: the kernel's choice, as before
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("BORDERLINK_")}
    e["BORDERLINK_PASSPHRASE"] = PASSPHRASE
    # Tests call nodes from 127.0.0.1 with a new connection per request (urllib), as no peer
    # does (a peer keeps its connection alive): the per-address bound on new connections
    # (20 a second) is lifted unless a test sets it (tests/unit/node/test_listener.py does).
    e["BORDERLINK_LIMITS_CONNECTION_RATE"] = "10000"
    e["BORDERLINK_LIMITS_CONNECTION_BURST"] = "10000"
    e.update(extra)
    return e


def cli(
    home: Path,
    *args: str,
    check: bool = True,
    timeout: float = 60,
    process: bool = False,
    **kw: Any,
) -> subprocess.CompletedProcess[str]:
    """Run ``borderlink --home HOME ARGS`` as a person would; returns the completed process.

    ``env`` is the command's whole environment (default ``env()``), ``input`` or ``stdin`` its
    stdin. It runs in this process unless the process is the point: ``serve`` (an event loop,
    signal handlers and logging set up for the whole process) or ``process=True`` (e.g. with
    ``start_new_session=True``: no controlling terminal). ``timeout`` bounds a real process.
    """
    argv = ["--home", str(home), *args]
    environ = kw.pop("env", None)
    if environ is None:
        environ = env()
    if process or args[:1] == ("serve",):
        proc = subprocess.run(
            [sys.executable, "-m", "cli.main", *argv],
            capture_output=True,
            text=True,
            env=environ,
            timeout=timeout,
            cwd=ROOT,
            **kw,
        )
    else:
        stdin_data = kw.pop("input", None)
        stdin = kw.pop("stdin", None)  # DEVNULL is the empty stdin run_main gives anyway
        if kw or stdin not in (None, subprocess.DEVNULL):
            raise TypeError(f"cli({', '.join(kw) or 'stdin'}=...) needs process=True")
        proc = run_main(argv, env=environ, input=stdin_data, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"borderlink {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def cli_json(home: Path, *args: str) -> Any:
    return json.loads(cli(home, *args, "--json").stdout)


@dataclass
class NodeProc:
    name: str
    home: Path
    port: int
    log: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    open_files: int | None = None  # a hard RLIMIT_NOFILE for the node process (soft = hard)

    @property
    def cert(self) -> bytes:
        """The TLS certificate this node's card pins."""
        return card_cert(self.home.joinpath("card.txt").read_text())

    def as_peer_of(self, server: NodeProc) -> ssl.SSLContext:
        """A TLS context with which a test speaks to ``server`` as this node (its key)."""
        return peer_context(home_identity(self.home, PASSPHRASE), self.cert, server.cert)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> None:
        logf = open(self.log, "ab")
        if logf.tell() and self.log.read_bytes()[-1:] != b"\n":
            logf.write(b"\n")  # a line cut by kill -9 must not swallow the new process's first
            logf.flush()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.main",
                "--home",
                str(self.home),
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            stdout=logf,
            stderr=logf,
            env=env(**self.extra_env),
            cwd=ROOT,
            preexec_fn=None if self.open_files is None else self._limit_open_files,
        )
        logf.close()
        if wait:
            self.wait_ready()

    def _limit_open_files(self) -> None:
        assert self.open_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(
                    self.url + "/readyz", timeout=1, context=anonymous()
                ) as r:
                    if r.status == 200 and self.home.joinpath("admin.sock").exists():
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(
            f"{self.name} not ready in {timeout} s: {self.log.read_text()[-2000:]}"
        )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def cli(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return cli(self.home, *args, **kw)

    def json(self, *args: str) -> Any:
        return cli_json(self.home, *args)


def init_home(home: Path, name: str, *extra: str) -> None:
    """``borderlink init`` for one of the UNITS, with the fast KDF profile tests use."""
    unit, cc, loc = UNITS[name]
    cli(
        home,
        "init",
        "--name",
        name,
        "--unit-type",
        unit,
        "--country",
        cc,
        "--location",
        loc,
        "--kdf-profile",
        "interactive",
        *extra,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    """What a person must see for a mistake: one line on stderr, no traceback, the exit code."""
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert text in proc.stderr, proc.stderr


def make_network(
    root: Path, names: list[str], *, start: bool = True, extra_env: dict[str, str] | None = None
) -> dict[str, NodeProc]:
    """Init one home per name, exchange cards with fingerprints both ways, start the nodes."""
    nodes: dict[str, NodeProc] = {}
    for name in names:
        port = free_port()
        home = root / name
        init_home(home, name, "--endpoint", f"https://127.0.0.1:{port}")
        cli(home, "keys", "export-card", "-o", str(root / f"{name}.card"))
        nodes[name] = NodeProc(name, home, port, root / f"{name}.log", dict(extra_env or {}))
    for a in nodes.values():
        for b in nodes.values():
            if a is not b:
                fp = cli_json(b.home, "keys", "show")["fingerprint"]
                cli(a.home, "peers", "add", str(root / f"{b.name}.card"), "--fingerprint", fp)
    if start:
        try:
            for n in nodes.values():
                n.start(wait=False)
            for n in nodes.values():
                n.wait_ready()
        except BaseException:
            # One node that cannot start fails the test before its fixture could stop the
            # others: stop them here, or they run on after the suite (seen: a port collision).
            stop_all(nodes)
            raise
    return nodes


def dashboard_session(node: NodeProc) -> tuple[str, str]:
    """(base URL, session key), got as the page gets them: the one-time token from the fragment
    of the link ``borderlink dashboard`` prints, traded at POST /api/login. The key goes in
    ``Authorization: Bearer`` (a fragment never reaches a server, and there is no cookie)."""
    base, _, token = node.json("dashboard")["url"].partition("/#login=")
    login = urllib.request.Request(
        base + "/api/login",
        data=json.dumps({"token": token}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(login, timeout=10) as r:
        return base, str(json.loads(r.read())["session"])


def stop_all(nodes: dict[str, NodeProc]) -> None:
    for n in nodes.values():
        try:
            n.stop()
        except Exception:
            if n.proc is not None:
                n.proc.kill()
