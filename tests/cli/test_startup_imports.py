"""``status``, ``inbox``, ``outbox`` and ``send`` load only what they need (issue 12).

These commands only talk to the running node over its admin socket, and a unit scripting them
starts one process per call: what each process imports is most of what it costs. Each command
runs here, against a real pair of nodes, in a fresh interpreter that enters through the same
``cli.main:main`` as the installed ``borderlink``, and then reports which of the heavy modules it
loaded. The test asserts on that list and on what the command did, never on time (the figures
are from ``python -m bench cli_start``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, NodeProc, env, make_network, stop_all
from tests.integration.waiting import wait_until

SENDER, RECEIVER = "bar-pcu", "belgrade-accu"

# Never needed by a command that only talks to the admin socket: the node's own stack (aiohttp,
# asyncio, SQLite, logging), the cryptography (the node seals and opens), TLS (the socket is local)
# and the live terminal table of `monitor`.
NEVER = (
    "aiohttp",
    "asyncio",
    "cryptography",
    "http.client",
    "nacl",
    "node.local",
    "protocol.envelope",
    "rich",
    "sqlite3",
    "ssl",
    "structlog",
)
# msgspec writes --json and reads a message file (send), and nothing else here needs it.
NEVER_IN_A_VIEW = (*NEVER, "msgspec")

# Runs one command as the `borderlink` script does, then prints which of the modules named on
# the command line it loaded, as the last line of stdout.
PROBE = """\
import sys
from cli.main import main
watched = sys.argv[1].split(",")
code = 0
try:
    main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
print("LOADED " + ",".join(m for m in watched if m in sys.modules))
sys.exit(code)
"""


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeProc]]:
    network = make_network(tmp_path_factory.mktemp("startup"), [SENDER, RECEIVER])
    try:
        yield network
    finally:
        stop_all(network)


def run(home: Path, watched: tuple[str, ...], *args: str) -> tuple[int, str, list[str]]:
    """Exit code, output and the watched modules loaded by ``borderlink --home HOME ARGS``."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(watched), "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
        timeout=60,
    )
    *output, last = proc.stdout.splitlines() or [""]
    assert last.startswith("LOADED "), (proc.stdout, proc.stderr)
    loaded = [m for m in last.removeprefix("LOADED ").split(",") if m]
    return proc.returncode, "\n".join(output) + proc.stderr, loaded


def test_status_shows_the_node_and_loads_nothing_heavy(nodes: dict[str, NodeProc]) -> None:
    code, out, loaded = run(nodes[SENDER].home, NEVER_IN_A_VIEW, "status")
    assert code == 0, out
    assert out.startswith(f"node {SENDER} up"), out
    assert f"peer {RECEIVER}" in out
    assert loaded == []


def test_send_queues_and_inbox_and_outbox_list_without_heavy_modules(
    nodes: dict[str, NodeProc], tmp_path: Path
) -> None:
    alert = tmp_path / "alert.json"
    code, out, loaded = run(nodes[SENDER].home, NEVER, "template", "seizure-alert")
    assert code == 0, out
    alert.write_text(out)

    code, out, loaded = run(
        nodes[SENDER].home,
        NEVER,
        "send",
        "--to",
        RECEIVER,
        "--type",
        "seizure-alert",
        str(alert),
    )
    assert code == 0, out
    assert re.fullmatch(r"[0-9a-f]{32}", out.strip()), out
    assert loaded == []
    msg_id = out.strip()

    code, out, loaded = run(nodes[SENDER].home, NEVER_IN_A_VIEW, "outbox")
    assert code == 0, out
    assert msg_id in out
    assert loaded == []

    receiver = nodes[RECEIVER]
    wait_until(lambda: msg_id in receiver.cli("inbox").stdout, f"{msg_id} in {RECEIVER}'s inbox")
    code, out, loaded = run(receiver.home, NEVER_IN_A_VIEW, "inbox")
    assert code == 0, out
    assert msg_id in out and f"from {SENDER}" in out, out
    assert loaded == []


def test_json_output_loads_only_its_encoder(nodes: dict[str, NodeProc]) -> None:
    code, out, loaded = run(nodes[SENDER].home, NEVER_IN_A_VIEW, "status", "--json")
    assert code == 0, out
    assert json.loads(out)["node"] == SENDER
    assert loaded == ["msgspec"]


@pytest.mark.parametrize("command", ["status", "inbox", "outbox", "send"])
def test_help_loads_nothing_heavy(tmp_path: Path, command: str) -> None:
    code, out, loaded = run(tmp_path / "home", NEVER_IN_A_VIEW, command, "--help")
    assert code == 0, out
    assert f"borderlink {command} [OPTIONS]" in out
    assert loaded == []


def test_a_stopped_node_is_said_in_one_line_without_heavy_modules(
    nodes: dict[str, NodeProc],
) -> None:
    receiver = nodes[RECEIVER]
    receiver.stop()
    try:
        code, out, loaded = run(receiver.home, NEVER_IN_A_VIEW, "status")
    finally:
        receiver.start()
    assert code == 3, out
    assert out.count("\n") == 1 and "is not running" in out, out
    assert loaded == []
