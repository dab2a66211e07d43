"""The CLI's operations give the same answers and leave the same audit entries whether the node runs
(the CLI goes through the admin API) or not (the CLI runs the operation itself): one home has a
node answering on its admin socket, its twin has none, and an operator does the same on both.

The node here is the admin API's operation routes on the home's socket, in a thread of this test,
with the error contract of the admin app (a BorderlinkError as JSON with its class and exit code),
so a refusal must come back to the CLI as the very error it would have raised itself.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from keys.card import parse_card
from keys.keystore import open_keystore, read_keystore_file
from node.http.operations import add_operation_routes
from node.operations import OperationDeps
from node.runtime import run_inline, wall_clock
from node.storage.sqlite import open_store
from protocol.errors import BorderlinkError
from protocol.identity import Identity
from tests.integration.harness import PASSPHRASE, cli, cli_json, init_home

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The admin app's error contract (what cli/admin_client.py rebuilds the error from)."""
    try:
        return await handler(request)
    except BorderlinkError as exc:
        body = {
            "error": type(exc).__name__,
            "message": exc.message,
            "hint": exc.hint,
            "exit_code": exc.exit_code,
        }
        return web.json_response(body, status=400)


@contextmanager
def node_answering(home: Path) -> Iterator[list[str]]:
    """The operation routes served on HOME/admin.sock until the block ends; yields the list the
    node's after-peers-changed hook appends to."""
    changes: list[str] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        store = open_store(home / "node.db")
        try:
            secret = open_keystore(read_keystore_file(home / "keystore.json"), PASSPHRASE.encode())
            card = parse_card((home / "card.txt").read_text(), now=None)

            async def changed() -> None:
                changes.append("peers")

            deps = OperationDeps(
                store=store,
                run_db=run_inline,
                clock=wall_clock,
                own_card=lambda: card,
                identity=Identity.from_secret_bytes(secret),
                after_peers_changed=changed,
            )
            app = web.Application(middlewares=[errors_as_json])
            add_operation_routes(app, deps)
            runner = web.AppRunner(app)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.UnixSite(runner, str(home / "admin.sock")).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
        finally:
            store.close()
            loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(20)
    if failure:
        raise failure[0]
    try:
        yield changes
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(20)


@pytest.fixture
def root() -> Iterator[Path]:
    # Short: a Unix socket path must stay under 108 bytes.
    with tempfile.TemporaryDirectory(prefix="bl-") as d:
        yield Path(d)


@pytest.fixture
def homes(root: Path) -> dict[str, Path]:
    """bar (its node runs) and zag (no node) are twins about belgrade-accu, who trusts both."""
    h = {n: root / n for n in ("bar", "zag", "bel")}
    init_home(h["bar"], "bar-pcu")
    init_home(h["zag"], "zagreb-jaitf")
    init_home(h["bel"], "belgrade-accu")
    for n, home in h.items():
        cli(home, "keys", "export-card", "-o", str(root / f"{n}.card"))
    for n in ("bar", "zag"):
        fp = cli_json(h[n], "keys", "show")["fingerprint"]
        cli(h["bel"], "peers", "add", str(root / f"{n}.card"), "--fingerprint", fp)
    return h


def outcome(home: Path, *args: str) -> tuple[int, str, str]:
    proc = cli(home, *args, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def entries_after_init(home: Path) -> list[dict[str, Any]]:
    """The audit log without what differs between two homes: times, and the init entries."""
    return [
        {k: v for k, v in e.items() if k != "time"}
        for e in cli_json(home, "audit", "log")["items"]
        if e["kind"] not in ("node.initialised", "key.created")
        and not (
            e["kind"] == "card.exported" and e.get("detail", "").endswith(("bar.card", "zag.card"))
        )
    ]


def test_peers_and_open_say_and_audit_the_same_with_or_without_the_node(
    homes: dict[str, Path], root: Path
) -> None:
    bel_fp = cli_json(homes["bel"], "keys", "show")["fingerprint"]
    card = str(root / "bel.card")
    wrong = "11111 22222 33333 44444 55555 66666"
    msg = root / "alert.json"
    msg.write_text(cli(homes["bel"], "template", "seizure-alert").stdout)
    sealed = root / "alert.sealed"
    steps: list[tuple[str, ...]] = [
        ("peers", "add", card, "--trust-on-first-use", "--fingerprint", bel_fp),  # usage: 2
        ("peers", "add", card, "--fingerprint", wrong),  # refused, audited: 4
        ("peers", "add", card, "--fingerprint", bel_fp),
        ("peers", "add", card, "--trust-on-first-use", "--json"),  # unchanged
        ("peers", "list"),
        ("peers", "list", "--json"),
        ("open", str(sealed), "--json"),
        ("open", str(sealed)),  # the same file again: a replay, refused and audited
        ("seal", "--to", "belgrade-accu,nobody", "--type", "seizure-alert", str(msg)),
        ("audit", "log", "--kind", "peer."),
        ("peers", "revoke", "belgrade-accu", "--yes"),
        ("peers", "revoke", "belgrade-accu", "--yes"),
        ("peers", "remove", "belgrade-accu"),  # refused: revocation is permanent
        ("peers", "remove", "nobody"),
        ("open", str(sealed)),  # a revoked sender
        ("keys", "export-card", "--force", "-o", str(root / "card-again")),
        ("audit", "verify"),
        ("audit", "prove", "1"),  # no checkpoint signed yet
    ]
    cli(
        homes["bel"],
        "seal",
        "--to",
        "bar-pcu,zagreb-jaitf",
        "--type",
        "seizure-alert",
        str(msg),
        "-o",
        str(sealed),
    )
    with node_answering(homes["bar"]) as changes:
        running = [outcome(homes["bar"], *step) for step in steps]
    assert changes == ["peers", "peers"]  # added; revoked (a refusal or no-op changes nothing)
    stopped = [outcome(homes["zag"], *step) for step in steps]
    # bar's node is gone (its socket file may remain, refusing connections): the CLI works alone
    assert cli_json(homes["bar"], "peers", "list")[0]["status"] == "revoked"

    def same(text: str) -> str:
        """Without what tells the homes apart (their names and ids) and the clock."""
        text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", "WHEN", text)
        text = re.sub(r"[0-9a-f]{64}", "NODE", text)
        return text.replace("bar-pcu", "ME").replace("zagreb-jaitf", "ME")

    for step, a, b in zip(steps, running, stopped, strict=True):
        assert (a[0], same(a[1]), same(a[2])) == (b[0], same(b[1]), same(b[2])), step
    codes = [code for code, _, _ in running]
    assert codes == [2, 4, 0, 0, 0, 0, 0, 5, 4, 0, 0, 0, 4, 4, 4, 0, 0, 2]
    assert running[7][2].startswith("borderlink: rejected (replay): ")
    assert running[12][2].startswith("borderlink: error: peer 'belgrade-accu' is revoked")
    assert "warning: 'belgrade-accu' trusted on first use" not in running[2][2]
    bar, zag = entries_after_init(homes["bar"]), entries_after_init(homes["zag"])
    assert [same(str(e)) for e in bar] == [same(str(e)) for e in zag]
    assert [
        (e["kind"], e.get("outcome")) for e in bar if e["kind"].startswith(("peer", "message"))
    ] == [
        ("peer.added", "refused"),
        ("peer.added", "verified by fingerprint"),
        ("message.opened", "seizure-alert"),
        ("message.rejected", "replay"),
        ("peer.revoked", None),
        ("peer.removed", "refused"),
        ("message.rejected", "unknown_sender"),
    ]
    assert all(e["actor"].startswith("cli") for e in bar)
