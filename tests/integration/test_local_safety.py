"""Local safety of a running node: one node per home, no core dumps, enough file descriptors, a
clean stop on SIGHUP. Real ``borderlink serve`` processes on real homes; nothing is mocked.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    ROOT,
    NodeProc,
    cli_json,
    env,
    free_port,
    init_home,
    one_line_error,
)
from tests.integration.waiting import PATIENCE, log_events, start, wait_until


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProc]:
    """One initialised home, not started; stopped (or killed) after the test."""
    home = tmp_path / "bar"
    init_home(home, "bar-pcu")
    n = NodeProc("bar-pcu", home, free_port(), tmp_path / "bar.log")
    yield n
    try:
        n.stop()
    except subprocess.TimeoutExpired:
        assert n.proc is not None
        n.proc.kill()
        n.proc.wait(PATIENCE)


def serve_argv(node: NodeProc, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cli.main",
        "--home",
        str(node.home),
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
    ]


def lock_pid(node: NodeProc) -> int:
    return int((node.home / "node.lock").read_text())


# -- one node per home ---------------------------------------------------------------------------


def test_second_serve_on_a_home_is_refused_and_leaves_the_admin_socket_alone(
    node: NodeProc,
) -> None:
    start(node)
    assert node.proc is not None
    sock = node.home / "admin.sock"
    before = sock.stat().st_ino

    second = subprocess.Popen(
        serve_argv(node, free_port()),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=ROOT,
    )
    try:
        # Without the lock the second node replaces admin.sock: stop waiting as soon as it does.
        wait_until(
            lambda: second.poll() is not None or not sock.exists() or sock.stat().st_ino != before,
            "the second serve to exit",
        )
    finally:
        if second.poll() is None:
            second.kill()
        out, err = second.communicate(timeout=PATIENCE)
    refused = subprocess.CompletedProcess(second.args, second.returncode, out, err)

    one_line_error(refused, 3, f"already running on {node.home}")
    assert f"pid {node.proc.pid}" in refused.stderr
    assert sock.stat().st_ino == before  # not unlinked, not rebound
    assert lock_pid(node) == node.proc.pid
    status = cli_json(node.home, "status")  # the first node answers its own socket
    assert status["listen"] == f"127.0.0.1:{node.port}"


def test_serve_starts_again_after_the_node_was_killed(node: NodeProc) -> None:
    start(node)
    node.kill9()  # no clean-up ran: the lock file and admin.sock are left behind
    assert (node.home / "node.lock").exists()
    start(node)
    assert node.proc is not None
    assert lock_pid(node) == node.proc.pid
    assert cli_json(node.home, "status")["listen"] == f"127.0.0.1:{node.port}"


# -- process limits ------------------------------------------------------------------------------


def proc_limits(pid: int) -> dict[str, tuple[str, str]]:
    """/proc/PID/limits as {name: (soft, hard)}; the name column is 26 characters wide."""
    limits = {}
    for row in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        soft, hard, *_ = row[26:].split()
        limits[row[:26].strip()] = (soft, hard)
    return limits


def loosened_limits(nofile_soft: int) -> Callable[[], None]:
    """Before exec in the child: core dumps allowed as far as the hard limit lets, and a low
    soft limit on open files, so the node has something to change."""

    def apply() -> None:
        _, core_hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (core_hard, core_hard))
        _, nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile_soft, nofile_hard))

    return apply


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="needs Linux /proc")
def test_serve_runs_without_core_dumps_and_with_raised_open_files_limit(node: NodeProc) -> None:
    _, nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = 65536 if nofile_hard == resource.RLIM_INFINITY else min(nofile_hard, 65536)
    with open(node.log, "ab") as logf:
        node.proc = subprocess.Popen(
            serve_argv(node, node.port),
            stdout=logf,
            stderr=logf,
            env=env(),
            cwd=ROOT,
            preexec_fn=loosened_limits(min(256, expected)),
        )
    node.wait_ready(timeout=PATIENCE)

    limits = proc_limits(node.proc.pid)
    assert limits["Max core file size"] == ("0", "0")
    assert limits["Max open files"][0] == str(expected)


@pytest.mark.skipif(sys.platform != "linux", reason="prctl is Linux's")
def test_hardened_process_is_not_dumpable() -> None:
    probe = (
        "import ctypes\n"
        "from node.process import harden\n"
        "harden()\n"
        "print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))\n"  # PR_GET_DUMPABLE
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=PATIENCE
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


# -- SIGHUP --------------------------------------------------------------------------------------


def test_sighup_stops_the_node_cleanly(node: NodeProc) -> None:
    start(node)
    assert node.proc is not None
    node.proc.send_signal(signal.SIGHUP)
    assert node.proc.wait(PATIENCE) == 0  # SIGHUP's default action would kill it (-SIGHUP)
    said = [json.dumps(rec) for rec in log_events(node)]
    assert any("SIGHUP" in line for line in said), said
    assert not (node.home / "admin.sock").exists()
    assert (node.home / "node.lock").read_text() == ""  # a clean stop leaves no pid behind
