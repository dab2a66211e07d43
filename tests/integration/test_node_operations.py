"""The CLI's operations answered by a running node decide as the CLI does with the node down."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from keys.keystore import open_keystore, read_keystore_file
from node.config import load_config
from node.daemon import Node
from node.home import Home
from protocol.identity import Identity
from tests.inprocess import run_main

PASSPHRASE = "operations-test-passphrase"
DAY = 86400


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("BORDERLINK_")}
    out["BORDERLINK_PASSPHRASE"] = PASSPHRASE
    return out


async def test_regression_a_running_node_checks_its_own_card_at_the_time_of_asking(
    tmp_path: Path,
) -> None:
    """A node started before its card expired vouched for it afterwards: with the node up,
    'audit verify' passed on an expired card that the CLI refuses with the node down."""
    root = tmp_path / "bar"
    init = run_main(
        ["--home", str(root), "init", "--name", "bar-pcu", "--unit-type", "PCU", "--country",
         "ME", "--location", "MEBAR", "--valid-days", "1", "--kdf-profile", "interactive"],
        env=env(),
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    home = Home(root)
    identity = Identity.from_secret_bytes(
        open_keystore(read_keystore_file(home.keystore), PASSPHRASE.encode())
    )
    config = load_config(home.config, env={"BORDERLINK_LISTEN": "127.0.0.1:0"})
    node = Node(home, config, identity, clock=lambda: time.time() + 2 * DAY)
    await node.start()
    try:
        up = await asyncio.to_thread(run_main, ["--home", str(root), "audit", "verify"], env=env())
    finally:
        await node.stop()
    assert up.returncode != 0
    assert up.stderr.startswith("borderlink: ") and "expired" in up.stderr
    assert len(up.stderr.strip().splitlines()) == 1
