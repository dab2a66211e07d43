"""Transcripts pinning bugs a review found in ``peers`` and ``send``: each one is a person at the
terminal doing what used to go wrong, and now gets one line and the right exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from keys.card import make_card, parse_card
from keys.keystore import open_keystore, read_keystore_file
from protocol.identity import Identity
from tests.integration.harness import PASSPHRASE, cli, cli_json, init_home, one_line_error


@pytest.fixture
def homes(tmp_path: Path) -> dict[str, Path]:
    """Bar PCU trusts Belgrade ACCU's card, fingerprint compared."""
    h = {"bar": tmp_path / "bar", "bel": tmp_path / "bel"}
    init_home(h["bar"], "bar-pcu")
    init_home(h["bel"], "belgrade-accu", "--endpoint", "https://127.0.0.1:7443")
    cli(h["bel"], "keys", "export-card", "-o", str(tmp_path / "bel.card"))
    fp = cli_json(h["bel"], "keys", "show")["fingerprint"]
    cli(h["bar"], "peers", "add", str(tmp_path / "bel.card"), "--fingerprint", fp)
    return h


def test_regression_revoked_peer_could_be_removed_then_trusted_again(
    homes: dict[str, Path], tmp_path: Path
) -> None:
    bar, card = homes["bar"], str(tmp_path / "bel.card")
    fp = cli_json(homes["bel"], "keys", "show")["fingerprint"]
    cli(bar, "peers", "revoke", "belgrade-accu", "--yes")
    one_line_error(
        cli(bar, "peers", "remove", "belgrade-accu", check=False),
        4,
        "borderlink: error: peer 'belgrade-accu' is revoked and revocation is permanent: "
        "its record is kept so its key is never trusted again",
    )
    # the tombstone is still there, so the key cannot come back by either route
    assert [(p["name"], p["status"]) for p in cli_json(bar, "peers", "list")] == [
        ("belgrade-accu", "revoked")
    ]
    for how in (["--fingerprint", fp], ["--trust-on-first-use"]):
        one_line_error(cli(bar, "peers", "add", card, *how, check=False), 4, "was revoked")
    refused = cli_json(bar, "audit", "log", "--kind", "peer.removed")["items"]
    assert [(e["outcome"], e["peer"]) for e in refused] == [("refused", "belgrade-accu")]
    # (removing a trusted peer still works: see test_offline_flow.py test_attacks_on_open)
    one_line_error(cli(bar, "peers", "remove", "nobody", check=False), 4, "no peer named 'nobody'")


def _recard(home: Path, *, valid_from_shift: int, endpoint: str) -> str:
    """The peer re-signs its card with another endpoint and a shifted validity start."""
    identity = Identity.from_secret_bytes(
        open_keystore(read_keystore_file(home / "keystore.json"), PASSPHRASE.encode())
    )
    body = parse_card((home / "card.txt").read_text(), now=None).body
    return make_card(
        identity,
        name=body.name,
        unit_type=body.unit_type,
        country=body.country,
        location=body.location,
        endpoints=[endpoint],
        valid_from=body.valid_from + valid_from_shift,
        valid_until=body.valid_until,
    ).armored()


def test_regression_older_card_repointed_a_trusted_peer(
    homes: dict[str, Path], tmp_path: Path
) -> None:
    bar, bel = homes["bar"], homes["bel"]
    stale = tmp_path / "stale.card"
    stale.write_text(_recard(bel, valid_from_shift=-86_400, endpoint="https://10.9.9.9:7443"))
    one_line_error(
        cli(bar, "peers", "add", str(stale), "--trust-on-first-use", check=False),
        4,
        "card for 'belgrade-accu' is not newer than the one already trusted (valid from ",
    )
    [peer] = cli_json(bar, "peers", "list")
    assert (peer["endpoints"], peer["verified_by"]) == (["https://127.0.0.1:7443"], "fingerprint")
    added = cli_json(bar, "audit", "log", "--kind", "peer.added")["items"]
    assert added[-1]["outcome"] == "refused"
    # a newer card from the same, already verified key is taken, and stays fingerprint-verified
    newer = tmp_path / "newer.card"
    newer.write_text(_recard(bel, valid_from_shift=1, endpoint="https://127.0.0.1:7444"))
    added = cli(bar, "peers", "add", str(newer), "--trust-on-first-use")
    assert added.stdout.startswith("updated peer belgrade-accu (fingerprint): ")
    [peer] = cli_json(bar, "peers", "list")
    assert (peer["endpoints"], peer["verified_by"]) == (["https://127.0.0.1:7444"], "fingerprint")


def test_regression_deeply_nested_send_file_gave_a_recursion_traceback(
    homes: dict[str, Path], tmp_path: Path
) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    one_line_error(
        cli(
            homes["bar"],
            "send",
            "--to",
            "belgrade-accu",
            "--type",
            "seizure-alert",
            str(deep),
            check=False,
        ),
        1,
        f"borderlink: error: {deep} is nested too deeply",
    )
