"""The node's incremental check of its own audit log (node/audit_ops.py BackgroundCheck): it
recomputes only what was appended since the stored verified point, goes on from that point after
a restart, re-checks old entries a bounded slice per round, and catches damage in new entries at
once and in old ones within a sweep; the full ``audit verify`` catches an old edit at any time."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from node.audit_ops import (
    SLICE,
    BackgroundCheck,
    log_snapshot,
    sign_checkpoint,
    sweep_size,
    verify_snapshot,
)
from node.auditing import record
from node.runtime import run_inline
from node.storage import Reader, Store
from node.storage.sqlite import open_reader, open_store
from protocol.audit import AuditEntry, encode_entry
from protocol.errors import AuditError
from protocol.identity import Identity
from tests.conftest import NOW, fixed_identity

DAMAGED = "the tree no longer matches the root recorded when it was appended"


@dataclass
class Home:
    path: Path
    store: Store
    reader: Reader

    def check(self, sweep: int = 0) -> BackgroundCheck:
        """A fresh check, as a node builds one at start, re-checking ``sweep`` old entries."""
        return BackgroundCheck(
            self.reader,
            run_inline,
            self.store,
            run_inline,
            lambda: NOW,
            sweep=lambda _size: sweep,
        )

    def append(self, n: int) -> None:
        with self.store.unit(NOW) as u:
            for i in range(n):
                record(u, "message.queued", message_id=f"{i:032x}")

    def edit(self, index: int) -> None:
        forged = encode_entry(AuditEntry(time=1, actor="node", kind="peer.added", peer="forged"))
        with sqlite3.connect(self.path) as db:
            db.execute("UPDATE audit SET entry = ? WHERE idx = ?", (forged, index))

    def restart(self) -> None:
        self.reader.close()
        self.store.close()
        self.store, self.reader = open_store(self.path), open_reader(self.path)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    path = tmp_path / "node.db"
    h = Home(path, open_store(path), open_reader(path))
    yield h
    h.reader.close()
    h.store.close()


async def test_the_check_stores_how_far_it_verified_and_goes_on_from_there(home: Home) -> None:
    home.append(3 * SLICE + 5)  # more than one step's worth: the check steps until the end
    verified = await home.check().run()
    assert verified.prefix.size == 3 * SLICE + 5
    assert home.store.audit_verified() == verified
    home.append(10)
    home.restart()
    home.edit(7)  # an old entry, verified before: the check at start does not read it again
    verified = await home.check().run()
    assert home.store.audit_verified().prefix.size == 3 * SLICE + 15
    # ... but the full verification the operator runs recomputes everything and finds it.
    me = fixed_identity("alice").public
    with pytest.raises(AuditError, match=rf"^audit entry 7 is damaged: {DAMAGED}$"):
        verify_snapshot(log_snapshot(home.store), me)


async def test_an_entry_appended_after_the_verified_point_is_caught(home: Home) -> None:
    home.append(100)
    await home.check().run()
    home.append(50)
    home.edit(120)
    check = home.check()
    with pytest.raises(AuditError, match=rf"^audit entry 120 is damaged: {DAMAGED}$"):
        await check.run()
    assert home.store.audit_verified().prefix.size == 100  # nothing damaged marked verified
    with pytest.raises(AuditError, match=r"^audit entry 120 is damaged"):  # and it stays found
        await check.run()


async def test_the_sweep_re_checks_old_entries_a_slice_per_round(home: Home) -> None:
    home.append(1000)
    await home.check().run()
    home.edit(450)
    check = home.check(sweep=300)
    await check.run()
    assert home.store.audit_verified().sweep.size == 300
    with pytest.raises(AuditError, match=rf"^audit entry 450 is damaged: {DAMAGED}$"):
        await check.run()  # 300 .. 600 holds the edit
    assert home.store.audit_verified().sweep.size == 300


async def test_a_full_sweep_starts_again_from_the_first_entry(home: Home) -> None:
    home.append(500)
    check = home.check(sweep=200)
    sizes = []
    for _ in range(4):
        await check.run()
        sizes.append(home.store.audit_verified().sweep.size)
    assert sizes == [200, 400, 0, 200]  # 400 .. 500 reached the end: from 0 again


async def test_a_shortened_log_is_caught(home: Home) -> None:
    home.append(100)
    await home.check().run()
    with sqlite3.connect(home.path) as db:
        db.execute("DELETE FROM audit WHERE idx >= 90")
        db.execute("UPDATE audit_state SET size = 90")
    with pytest.raises(AuditError, match=r"^the audit log has 90 entries, fewer than the 100"):
        await home.check().run()


async def test_an_append_state_that_disagrees_with_the_entries_is_caught(home: Home) -> None:
    home.append(20)
    with sqlite3.connect(home.path) as db:
        db.execute("UPDATE audit_state SET peaks = ?", (b"\x00" * 32,))
    with pytest.raises(AuditError, match=r"^the audit log's append state no longer matches"):
        await home.check().run()


async def test_signing_after_the_check_covers_the_new_entries(home: Home) -> None:
    alice: Identity = fixed_identity("alice")
    home.append(30)
    await home.check().run()
    signed = sign_checkpoint(home.store, alice, NOW, full=False)
    assert signed.new and signed.size == 31
    verified = await home.check().run()  # the published entry is verified on the next round
    assert verified.prefix.size == 31
    assert verify_snapshot(log_snapshot(home.store), alice.public).checkpoint_size == 31


def test_the_sweep_re_checks_the_log_about_once_per_full_check_interval() -> None:
    assert sweep_size(100_000, interval=5.0, full_interval=600.0) == 2048  # at least SWEEP_MIN
    assert sweep_size(1_000_000, interval=5.0, full_interval=600.0) == 8334
    assert sweep_size(10**8, interval=5.0, full_interval=600.0) == 50_000  # at most SWEEP_MAX
    assert sweep_size(10, interval=3600.0, full_interval=600.0) == 2048
