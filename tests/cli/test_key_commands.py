"""A key custodian's commands, node not running (PROTOCOL.md 13): rotate, renew, revoke, backup and
restore, and a peer's changed key blocked until ``peers verify``. Each mistake is one line in our
words with its exit code, and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.harness import cli, cli_json, env, init_home, one_line_error

BACKUP = {"BORDERLINK_BACKUP_PASSPHRASE": "backup words kept elsewhere"}


@pytest.fixture
def homes(tmp_path: Path) -> dict[str, Path]:
    h = {n: tmp_path / n for n in ("bar", "bel")}
    init_home(h["bar"], "bar-pcu")
    init_home(h["bel"], "belgrade-accu")
    for n, home in h.items():
        cli(home, "keys", "export-card", "-o", str(tmp_path / f"{n}.card"))
    fp = cli_json(h["bar"], "keys", "show")["fingerprint"]
    cli(h["bel"], "peers", "add", str(tmp_path / "bar.card"), "--fingerprint", fp)
    cli(h["bar"], "peers", "add", str(tmp_path / "bel.card"), "--trust-on-first-use")
    return h


def test_init_writes_a_revocation_certificate_and_says_where(tmp_path: Path) -> None:
    home = tmp_path / "new"
    proc = cli(
        home,
        "init",
        "--name",
        "kotor-pcu",
        "--unit-type",
        "PCU",
        "--country",
        "ME",
        "--location",
        "MEKOT",
        "--kdf-profile",
        "interactive",
        "--json",
    )
    path = json.loads(proc.stdout)["revocation_certificate"]
    assert path == str(home / "revocation.txt")
    assert f"revocation certificate: {path}" in proc.stderr
    assert "store it away from the node" in proc.stderr
    text = Path(path).read_text()
    assert text.count("-----BEGIN BORDERLINK REVOCATION-----") == 3
    assert (Path(path).stat().st_mode & 0o777) == 0o600


def test_rotate_while_down_queues_the_statement_and_shows_the_history(
    homes: dict[str, Path], tmp_path: Path
) -> None:
    before = cli_json(homes["bar"], "keys", "show")
    done = cli_json(homes["bar"], "keys", "rotate", "--overlap-days", "3")
    assert (done["kind"], done["seq"], done["peers_notified"]) == ("rotated", 1, 1)
    after = cli_json(homes["bar"], "keys", "show")
    assert after["node_id"] == before["node_id"] and after["fingerprint"] != before["fingerprint"]
    assert after["tls_pin"] != before["tls_pin"]
    [h] = after["history"]
    assert (h["seq"], h["replaced"], h["by"]) == (1, before["fingerprint"], after["fingerprint"])
    assert h["old_key_accepted_until"] - h["at"] == 3 * 86400
    # The rotated card imported by hand is a rotation like any other: verified stays verified.
    cli(homes["bar"], "keys", "export-card", "-o", str(tmp_path / "bar2.card"))
    added = cli_json(
        homes["bel"],
        "peers",
        "add",
        str(tmp_path / "bar2.card"),
        "--fingerprint",
        after["fingerprint"],
    )
    assert added["outcome"] == "updated"
    [row] = cli_json(homes["bel"], "peers", "list")
    assert (row["fingerprint"], row["verified_by"], row["key_seq"]) == (
        after["fingerprint"],
        "fingerprint",
        1,
    )
    # The original card again is older: refused with its reason, nothing changed.
    one_line_error(
        cli(
            homes["bel"],
            "peers",
            "add",
            str(tmp_path / "bar.card"),
            "--fingerprint",
            before["fingerprint"],
            check=False,
        ),
        4,
        "older than the 1 this node holds",
    )
    # The keystore opens with the same passphrase and holds the new keys (the card agrees).
    renewed = cli_json(homes["bar"], "keys", "renew", "--valid-days", "800")
    assert renewed["seq"] == 2 and renewed["fingerprint"] == after["fingerprint"]


def test_renew_must_end_later_and_a_wrong_passphrase_changes_nothing(
    homes: dict[str, Path],
) -> None:
    one_line_error(
        cli(homes["bar"], "keys", "renew", "--valid-days", "1", check=False),
        2,
        "a renewal must end later",
    )
    before = (homes["bar"] / "card.txt").read_text()
    wrong = env(BORDERLINK_PASSPHRASE="not the passphrase")
    one_line_error(cli(homes["bar"], "keys", "rotate", env=wrong, check=False), 1, "passphrase")
    assert (homes["bar"] / "card.txt").read_text() == before


def test_13_2_the_overlap_comes_from_the_config_unless_given(homes: dict[str, Path]) -> None:
    bar = homes["bar"]
    (bar / "config.toml").write_text("[keys]\noverlap_days = 91\n")
    one_line_error(cli(bar, "keys", "rotate", check=False), 1, "overlap_days")
    assert cli_json(bar, "keys", "show")["history"] == []  # nothing rotated
    (bar / "config.toml").write_text("[keys]\noverlap_days = 2\n")
    cli_json(bar, "keys", "rotate")
    cli_json(bar, "keys", "rotate", "--overlap-days", "0")
    first, second = cli_json(bar, "keys", "show")["history"]
    assert first["old_key_accepted_until"] - first["at"] == 2 * 86400
    assert second["old_key_accepted_until"] == second["at"]


def test_backup_and_restore_into_a_new_home_and_over_a_lost_keystore(
    homes: dict[str, Path], tmp_path: Path
) -> None:
    bar = homes["bar"]
    said = cli(bar, "keys", "rotate")
    # The old certificate's 'compromised' revocation still revokes the whole node (13.3).
    assert "destroy the old certificate" in said.stdout + said.stderr
    out = tmp_path / "bar.backup"
    cli(bar, "keys", "backup", "-o", str(out), env=env(**BACKUP))
    assert (out.stat().st_mode & 0o777) == 0o600
    assert b"borderlink-key-backup" in out.read_bytes()
    one_line_error(
        cli(
            tmp_path / "x",
            "keys",
            "restore",
            str(out),
            env=env(BORDERLINK_BACKUP_PASSPHRASE="wrong"),
            check=False,
        ),
        1,
        "wrong passphrase",
    )
    shown = cli_json(bar, "keys", "show")
    fresh = tmp_path / "fresh"
    restored = json.loads(
        cli(
            fresh,
            "keys",
            "restore",
            str(out),
            "--kdf-profile",
            "interactive",
            "--json",
            env=env(**BACKUP, BORDERLINK_NEW_PASSPHRASE="new keystore words"),
        ).stdout
    )
    assert restored["fingerprint"] == shown["fingerprint"] and restored["seq"] == 1
    again = cli_json(fresh, "keys", "show")
    assert again["history"] == shown["history"]
    # The restored keystore opens under its new passphrase with the rotated keys.
    renewed = cli(
        fresh,
        "keys",
        "renew",
        "--valid-days",
        "900",
        "--json",
        env=env(BORDERLINK_PASSPHRASE="new keystore words"),
    )
    assert json.loads(renewed.stdout)["fingerprint"] == shown["fingerprint"]
    # Over a home whose keystore was lost; never over another node's home.
    (bar / "keystore.json").unlink()
    cli(
        bar,
        "keys",
        "restore",
        str(out),
        "--kdf-profile",
        "interactive",
        env=env(**BACKUP, BORDERLINK_NEW_PASSPHRASE="words"),
    )
    assert cli_json(bar, "keys", "show")["fingerprint"] == shown["fingerprint"]
    noted = [
        (e["kind"], e["outcome"], e["detail"])
        for e in cli_json(bar, "audit", "log")["items"]
        if e["kind"] in ("key.backup_written", "key.restored")
    ]
    assert noted == [
        ("key.backup_written", "key seq 1", str(out)),
        ("key.restored", "key seq 1", str(out)),
    ]
    fresh_kinds = [e["kind"] for e in cli_json(fresh, "audit", "log")["items"]]
    assert "key.restored" in fresh_kinds
    one_line_error(
        cli(homes["bel"], "keys", "restore", str(out), env=env(**BACKUP), check=False),
        2,
        "holds another node",
    )


def test_a_changed_key_blocks_the_peer_until_verified(
    homes: dict[str, Path], tmp_path: Path
) -> None:
    impostor = tmp_path / "impostor"
    init_home(impostor, "bar-pcu")  # bar re-initialised (or an impostor): another key
    cli(impostor, "keys", "export-card", "-o", str(tmp_path / "new.card"))
    new_fp = cli_json(impostor, "keys", "show")["fingerprint"]
    one_line_error(
        cli(
            homes["bel"],
            "peers",
            "add",
            str(tmp_path / "new.card"),
            "--trust-on-first-use",
            check=False,
        ),
        4,
        f'then run: borderlink peers verify bar-pcu --fingerprint "{new_fp}"',
    )
    [row] = cli_json(homes["bel"], "peers", "list")
    assert (row["status"], row["pending_fingerprint"]) == ("blocked", new_fp)
    listing = cli(homes["bel"], "peers", "list").stdout
    assert "BLOCKED: key changed" in listing
    old_fp = row["fingerprint"]
    one_line_error(
        cli(homes["bel"], "peers", "verify", "bar-pcu", "--fingerprint", old_fp, check=False),
        4,
        "not the one given; nothing changed",
    )
    assert cli_json(homes["bel"], "peers", "list")[0]["status"] == "blocked"
    done = cli_json(homes["bel"], "peers", "verify", "bar-pcu", "--fingerprint", new_fp)
    assert (done["outcome"], done["was"]) == ("verified", "blocked")
    [row] = cli_json(homes["bel"], "peers", "list")
    assert (row["status"], row["fingerprint"], row["verified_by"]) == (
        "trusted",
        new_fp,
        "fingerprint",
    )
    kinds = [e["kind"] for e in cli_json(homes["bel"], "audit", "log")["items"]]
    assert "peer.key_changed" in kinds and "peer.verified" in kinds


def test_verify_upgrades_a_tofu_peer(homes: dict[str, Path]) -> None:
    [row] = cli_json(homes["bar"], "peers", "list")
    assert row["verified_by"] == "tofu"
    fp = cli_json(homes["bel"], "keys", "show")["fingerprint"]
    done = cli_json(homes["bar"], "peers", "verify", "belgrade-accu", "--fingerprint", fp)
    assert (done["outcome"], done["was"]) == ("verified", "tofu")
    assert cli_json(homes["bar"], "peers", "list")[0]["verified_by"] == "fingerprint"
    again = cli_json(homes["bar"], "peers", "verify", "belgrade-accu", "--fingerprint", fp)
    assert again["outcome"] == "unchanged"


def test_revoking_asks_for_confirmation(homes: dict[str, Path]) -> None:
    one_line_error(
        cli(homes["bar"], "peers", "revoke", "belgrade-accu", check=False),
        2,
        "confirm with --yes",
    )
    assert cli_json(homes["bar"], "peers", "list")[0]["status"] == "trusted"
    one_line_error(
        cli(homes["bar"], "keys", "revoke", "--reason", "retired", check=False),
        2,
        "confirm with --yes",
    )
    cli(homes["bar"], "peers", "revoke", "belgrade-accu", "--yes")
    assert cli_json(homes["bar"], "peers", "list")[0]["status"] == "revoked"


def test_own_revocation_with_the_keystore_stops_rotation(homes: dict[str, Path]) -> None:
    done = cli_json(homes["bar"], "keys", "revoke", "--reason", "superseded", "--yes")
    assert (done["kind"], done["reason"], done["peers_notified"]) == ("revoked", "superseded", 1)
    one_line_error(cli(homes["bar"], "keys", "rotate", check=False), 4, "revoked (superseded)")
    one_line_error(
        cli(homes["bar"], "keys", "revoke", "--reason", "retired", "--yes", check=False),
        2,
        "already revoked",
    )
