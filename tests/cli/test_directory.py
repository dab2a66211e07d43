"""Transcript of a coordinator introducing its units (PROTOCOL.md 13.8), no node running: the
coordinator publishes a signed directory, a unit that verified the coordinator imports it, and
every refusal as a custodian meets it: one line, exit 4, the reason, nothing stored but the audit
entry. What a custodian decided (a fingerprint compared, a revocation) is never undone."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cli.directory import import_directory_cmd, publish_directory_cmd
from cli.peers import peers_group
from keys.card import parse_card
from keys.directory import make_directory
from tests.integration.harness import PASSPHRASE, cli, cli_json, init_home, one_line_error
from tests.tlsclient import home_identity

COORD, BAR, BEL, ZAG = "skopje-coord", "bar-pcu", "belgrade-accu", "zagreb-jaitf"

# The commands live in cli/directory.py; the peers group registers them (cli/peers.py). Until it
# does, the test adds them itself, so this file tests the commands either way.
for _cmd in (import_directory_cmd, publish_directory_cmd):
    if _cmd.name not in peers_group.commands:
        peers_group.add_command(_cmd)


@pytest.fixture
def net(tmp_path: Path) -> dict[str, Path]:
    """The coordinator verified Belgrade ACCU and Zagreb JAITF by fingerprint; Bar PCU verified
    the coordinator by fingerprint and knows no one else."""
    homes = {n: tmp_path / n for n in (COORD, BAR, BEL, ZAG)}
    for name, home in homes.items():
        init_home(home, name)
        cli(home, "keys", "export-card", "-o", str(card_file(tmp_path, name)))
    for name in (BEL, ZAG):
        add(homes[COORD], tmp_path, name, fingerprint(homes[name]))
    add(homes[BAR], tmp_path, COORD, fingerprint(homes[COORD]))
    return homes


def card_file(root: Path, name: str) -> Path:
    return root / f"{name}.card"


def fingerprint(home: Path) -> str:
    return str(cli_json(home, "keys", "show")["fingerprint"])


def add(home: Path, root: Path, name: str, fp: str | None) -> None:
    how = ["--fingerprint", fp] if fp is not None else ["--trust-on-first-use"]
    cli(home, "peers", "add", str(card_file(root, name)), *how)


def publish(coord: Path, out: Path, *names: str) -> Any:
    got = cli_json(coord, "peers", "publish-directory", "-o", str(out), *names)
    assert out.read_text() == got["text"]
    return got


def import_file(home: Path, path: Path, check: bool = True) -> Any:
    return cli(home, "peers", "import-directory", str(path), check=check)


def imported(home: Path, path: Path) -> Any:
    return cli_json(home, "peers", "import-directory", str(path))


def peers(home: Path) -> dict[str, Any]:
    return {p["name"]: p for p in cli_json(home, "peers", "list")}


def audit(home: Path, kind: str) -> list[dict[str, Any]]:
    return list(cli_json(home, "audit", "log", "--kind", kind)["items"])


def signed_by(home: Path, *cards: Path, seq: int, **times: int) -> str:
    """A directory made here with ``home``'s keys (what a node that is no coordinator, or a
    coordinator listing another key, could sign)."""
    now = int(time.time())
    return make_directory(
        home_identity(home, PASSPHRASE),
        [parse_card(c.read_text(), now=None) for c in cards],
        seq=seq,
        issued_at=times.get("issued_at", now),
        valid_until=times.get("valid_until", now + 86400),
    ).armored()


def test_a_verified_coordinator_introduces_its_units(net: dict[str, Path], tmp_path: Path) -> None:
    d = tmp_path / "dir1.txt"
    got = publish(net[COORD], d)
    assert got["seq"] == 1 and got["units"] == 2
    assert (net[COORD] / "directory.txt").read_text() == got["text"]  # what /v1/directory serves
    assert audit(net[COORD], "directory.published")[-1]["outcome"] == "seq 1"

    proc = import_file(net[BAR], d)
    assert proc.stdout.splitlines() == [
        f"introduced {BEL} (introduced by {COORD})",
        f"introduced {ZAG} (introduced by {COORD})",
        f"imported directory seq 1 of {COORD}: 2 introduced, 0 upgraded, 0 updated, 0 kept, "
        "0 blocked, 0 skipped",
    ]
    listed = peers(net[BAR])
    for name in (BEL, ZAG):
        assert listed[name]["verified_by"] == "introduced"
        assert listed[name]["introduced_by"] == COORD
        assert listed[name]["status"] == "trusted"
        assert listed[name]["fingerprint"] == fingerprint(net[name])
    assert listed[COORD]["verified_by"] == "fingerprint"
    entries = audit(net[BAR], "peer.introduced")
    assert sorted(e["peer"] for e in entries) == [BEL, ZAG]
    assert all(e["outcome"] == f"introduced by {COORD}" for e in entries)
    done = audit(net[BAR], "directory.imported")[-1]
    assert done["outcome"] == "imported" and done["peer"] == COORD
    assert done["detail"].startswith("seq 1: 2 introduced")
    table = cli(net[BAR], "peers", "list").stdout
    assert f"introduced by {COORD}" in table

    # the next directory: the units are known now, nothing changes
    publish(net[COORD], tmp_path / "dir2.txt")
    again = imported(net[BAR], tmp_path / "dir2.txt")
    assert again["seq"] == 2 and again["introduced"] == []
    assert sorted(again["kept"]) == [
        f"{BEL}: already introduced by {COORD}",
        f"{ZAG}: already introduced by {COORD}",
    ]


def test_an_older_or_equal_directory_is_a_rollback(net: dict[str, Path], tmp_path: Path) -> None:
    old = tmp_path / "old.txt"
    new = tmp_path / "new.txt"
    publish(net[COORD], old, ZAG)  # seq 1 lists Zagreb
    publish(net[COORD], new, BEL)  # seq 2 lists Belgrade only
    assert imported(net[BAR], new)["introduced"] == [BEL]
    before = peers(net[BAR])
    for replayed, seq in ((old, 1), (new, 2)):
        proc = import_file(net[BAR], replayed, check=False)
        one_line_error(proc, 4, "rejected (directory_rollback)")
        assert f"directory seq {seq} of '{COORD}' is not newer than the seq 2" in proc.stderr
    assert peers(net[BAR]) == before  # Zagreb was not introduced by the replayed directory
    refusals = [e for e in audit(net[BAR], "directory.imported") if e["outcome"] != "imported"]
    assert [e["outcome"] for e in refusals] == ["directory_rollback"] * 2
    assert all(e["peer"] == COORD for e in refusals)
    assert audit(net[BAR], "peer.introduced") != [] and all(
        e["peer"] == BEL for e in audit(net[BAR], "peer.introduced")
    )


def test_only_a_coordinator_verified_by_fingerprint_introduces(
    net: dict[str, Path], tmp_path: Path
) -> None:
    # Belgrade ACCU is trusted by fingerprint, but it is no coordinator
    add(net[BAR], tmp_path, BEL, fingerprint(net[BEL]))
    forged = tmp_path / "by-accu.txt"
    forged.write_text(signed_by(net[BEL], card_file(tmp_path, ZAG), seq=1))
    proc = import_file(net[BAR], forged, check=False)
    one_line_error(proc, 4, "rejected (not_a_coordinator)")
    assert f"'{BEL}' is a ACCU, not a coordinator" in proc.stderr
    assert ZAG not in peers(net[BAR])

    # the coordinator, but trusted on first use only
    d = tmp_path / "dir.txt"
    publish(net[COORD], d)
    add(net[ZAG], tmp_path, COORD, None)
    proc = import_file(net[ZAG], d, check=False)
    one_line_error(proc, 4, "rejected (not_a_coordinator)")
    assert "trusted on first use" in proc.stderr and "peers verify skopje-coord" in proc.stderr
    assert sorted(peers(net[ZAG])) == [COORD]
    assert audit(net[ZAG], "directory.imported")[-1]["outcome"] == "not_a_coordinator"
    assert audit(net[ZAG], "peer.introduced") == []

    # a coordinator this node does not know at all
    proc = import_file(net[BEL], d, check=False)
    one_line_error(proc, 4, "rejected (unknown_coordinator)")
    assert peers(net[BEL]) == {}


def test_forged_tampered_and_expired_directories(net: dict[str, Path], tmp_path: Path) -> None:
    d = tmp_path / "dir.txt"
    text = publish(net[COORD], d)["text"]
    lines = text.splitlines()
    # the body re-signed by another key, claiming the coordinator's node id
    body = base64.b64decode("".join(lines[1:-2]))
    mallory = home_identity(net[ZAG], PASSPHRASE)
    from protocol.armor import armor
    from protocol.labels import DIRECTORY_LABEL

    forged = tmp_path / "forged.txt"
    forged.write_text(armor("DIRECTORY", [body, mallory.sign(DIRECTORY_LABEL + body)]))
    one_line_error(import_file(net[BAR], forged, check=False), 4, "rejected (bad_signature)")
    # one character of the body changed
    i = len(lines[1]) // 2
    lines[1] = lines[1][:i] + ("A" if lines[1][i] != "A" else "B") + lines[1][i + 1 :]
    tampered = tmp_path / "tampered.txt"
    tampered.write_text("\n".join(lines) + "\n")
    proc = import_file(net[BAR], tampered, check=False)
    assert proc.returncode == 4 and proc.stderr.count("\n") == 1
    assert "rejected (bad_signature)" in proc.stderr or "rejected (malformed)" in proc.stderr
    # expired: validly signed by the coordinator, but its time is over
    now = int(time.time())
    expired = tmp_path / "expired.txt"
    expired.write_text(
        signed_by(
            net[COORD], card_file(tmp_path, BEL), seq=5, issued_at=now - 7200, valid_until=now - 60
        )
    )
    one_line_error(import_file(net[BAR], expired, check=False), 4, "rejected (expired)")
    (tmp_path / "junk.txt").write_text("hello")
    one_line_error(
        import_file(net[BAR], tmp_path / "junk.txt", check=False), 4, "rejected (malformed)"
    )
    assert sorted(peers(net[BAR])) == [COORD]
    outcomes = [e["outcome"] for e in audit(net[BAR], "directory.imported")]
    assert outcomes[0] in ("bad_signature",)
    assert outcomes[-2:] == ["expired", "malformed"]
    # nothing was imported, so the genuine directory still is (no sequence number was taken)
    assert imported(net[BAR], d)["introduced"] == [BEL, ZAG]


def test_a_custodians_fingerprint_stands_against_the_directory(
    net: dict[str, Path], tmp_path: Path
) -> None:
    """Bar compared Belgrade's fingerprint itself; the coordinator then lists another key under
    Belgrade's name (a mistake, or a coordinator's key in wrong hands): Bar keeps what it verified."""
    add(net[BAR], tmp_path, BEL, fingerprint(net[BEL]))
    impostor = tmp_path / "impostor"
    init_home(impostor, BEL)
    cli(impostor, "keys", "export-card", "-o", str(tmp_path / "impostor.card"))
    d = tmp_path / "dir.txt"
    d.write_text(signed_by(net[COORD], tmp_path / "impostor.card", card_file(tmp_path, ZAG), seq=1))
    got = imported(net[BAR], d)
    assert got["introduced"] == [ZAG]
    assert len(got["kept"]) == 1 and got["kept"][0].startswith(
        f"{BEL}: verified by fingerprint, kept; the directory lists another key"
    )
    bel = peers(net[BAR])[BEL]
    assert bel["verified_by"] == "fingerprint" and bel["status"] == "trusted"
    assert bel["fingerprint"] == fingerprint(net[BEL])
    assert audit(net[BAR], "peer.key_changed") == []


def test_a_revoked_unit_listed_again_stays_revoked(net: dict[str, Path], tmp_path: Path) -> None:
    add(net[BAR], tmp_path, ZAG, fingerprint(net[ZAG]))
    cli(net[BAR], "peers", "revoke", ZAG, "--yes")
    d = tmp_path / "dir.txt"
    publish(net[COORD], d)
    proc = import_file(net[BAR], d)
    assert f"kept {ZAG}: revoked, kept" in proc.stdout.splitlines()
    zag = peers(net[BAR])[ZAG]
    assert zag["status"] == "revoked" and zag["verified_by"] == "fingerprint"
    assert zag["introduced_by"] is None
    assert [e["peer"] for e in audit(net[BAR], "peer.introduced")] == [BEL]


def test_tofu_is_upgraded_and_a_changed_key_is_blocked(
    net: dict[str, Path], tmp_path: Path
) -> None:
    add(net[BAR], tmp_path, ZAG, None)  # the genuine Zagreb, trusted on first use
    impostor = tmp_path / "impostor"
    init_home(impostor, BEL)
    cli(impostor, "keys", "export-card", "-o", str(tmp_path / "impostor.card"))
    cli(net[BAR], "peers", "add", str(tmp_path / "impostor.card"), "--trust-on-first-use")
    d = tmp_path / "dir.txt"
    publish(net[COORD], d)
    got = imported(net[BAR], d)
    assert got["upgraded"] == [ZAG] and got["introduced"] == []
    assert len(got["blocked"]) == 1 and got["blocked"][0].startswith(f"{BEL}: its key changed")
    assert f'peers verify {BEL} --fingerprint "{fingerprint(net[BEL])}"' in got["blocked"][0]
    listed = peers(net[BAR])
    assert listed[ZAG]["verified_by"] == "introduced" and listed[ZAG]["introduced_by"] == COORD
    assert listed[BEL]["status"] == "blocked"
    assert listed[BEL]["pending_fingerprint"] == fingerprint(net[BEL])
    assert listed[BEL]["fingerprint"] == fingerprint(impostor)  # the old key, until verified
    upgraded = audit(net[BAR], "peer.introduced")
    assert [(e["peer"], e["outcome"]) for e in upgraded] == [
        (ZAG, f"introduced by {COORD} (was tofu)")
    ]
    assert audit(net[BAR], "peer.key_changed")[-1]["outcome"] == "blocked"


def test_command_line_mistakes(net: dict[str, Path], tmp_path: Path) -> None:
    d = tmp_path / "dir.txt"
    publish(net[COORD], d)
    one_line_error(cli(net[BAR], "peers", "import-directory", check=False), 2, "exactly one of")
    one_line_error(
        cli(net[BAR], "peers", "import-directory", str(d), "--from", COORD, check=False),
        2,
        "exactly one of",
    )
    one_line_error(
        cli(net[BAR], "peers", "import-directory", "--from", COORD, check=False),
        3,
        "needs this node running",
    )
    # a unit is no coordinator: it publishes nothing
    one_line_error(cli(net[BAR], "peers", "publish-directory", check=False), 1, "not a coordinator")
    # only units verified by fingerprint go in a directory
    add(net[COORD], tmp_path, BAR, None)
    one_line_error(
        cli(net[COORD], "peers", "publish-directory", BAR, check=False), 4, "trusted on first use"
    )
    assert cli_json(net[COORD], "peers", "publish-directory", BEL)["units"] == 1
    # from standard input
    got = cli(net[BAR], "peers", "import-directory", "-", "--json", input=d.read_text())
    assert '"introduced"' in got.stdout


async def test_importing_from_the_coordinators_node(net: dict[str, Path], tmp_path: Path) -> None:
    """The operation as the running node runs it: the directory fetched over the peer API (the
    node's fetch hook), then the node told its peers changed."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from node.directory_ops import IMPORT_DIRECTORY, ImportDirectory
    from node.http.directory_routes import add_directory_route
    from node.operations import OperationDeps
    from node.runtime import run_inline, wall_clock
    from node.storage.sqlite import open_store

    app = web.Application()
    add_directory_route(app, net[COORD])
    async with TestClient(TestServer(app)) as client:
        missing = await client.get("/v1/directory")
        assert missing.status == 404
        assert await missing.json() == {
            "error": "not_found",
            "message": "this node publishes no directory",
        }
        publish(net[COORD], tmp_path / "dir.txt")
        served = await client.get("/v1/directory")
        assert served.status == 200 and served.content_type == "text/plain"
        text = await served.text()
    assert text == (tmp_path / "dir.txt").read_text()

    fetched: list[tuple[str, str]] = []
    changes: list[str] = []

    async def fetch(name: str, path: str) -> bytes:
        fetched.append((name, path))
        return text.encode()

    async def changed() -> None:
        changes.append("peers")

    card = parse_card((net[BAR] / "card.txt").read_text(), now=None)
    store = open_store(net[BAR] / "node.db")
    try:
        deps = OperationDeps(
            store=store,
            run_db=run_inline,
            clock=wall_clock,
            own_card=lambda: card,
            fetch=fetch,
            after_peers_changed=changed,
        )
        request = ImportDirectory(from_peer=COORD, actor="cli:test")
        answer = await IMPORT_DIRECTORY.answer(deps, msgspec.json.encode(request))
        got = IMPORT_DIRECTORY.decode_result(answer)
    finally:
        store.close()
    assert fetched == [(COORD, "/v1/directory")] and changes == ["peers"]
    assert got.coordinator == COORD and got.introduced == [BEL, ZAG]
    assert peers(net[BAR])[BEL]["introduced_by"] == COORD
