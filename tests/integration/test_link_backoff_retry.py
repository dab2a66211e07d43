"""``outbox retry`` while the link to a peer is backed off (issue 12: a peer that is down gets
one try per backoff step): the retried delivery goes at once, not at the link's next step, which
could be up to ``backoff_max`` away (attack review of h12, F1: it waited for the old step)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.harness import make_network, stop_all
from tests.integration.waiting import wait_until

BACKOFF = "600"  # the link's next step is far beyond the test's patience


def test_outbox_retry_tries_a_backed_off_link_now(tmp_path: Path) -> None:
    nodes = make_network(
        tmp_path,
        ["bar-pcu", "belgrade-accu"],
        extra_env={
            "BORDERLINK_DELIVERY_BACKOFF_BASE": BACKOFF,
            "BORDERLINK_DELIVERY_BACKOFF_MAX": BACKOFF,
        },
    )
    bar, bel = nodes["bar-pcu"], nodes["belgrade-accu"]
    try:
        assert bel.stop() == 0
        alert = tmp_path / "alert.json"
        alert.write_text(bar.cli("template", "seizure-alert").stdout)
        sent = bar.json("send", "--to", "belgrade-accu", "--type", "seizure-alert", str(alert))
        wait_until(
            lambda: all(r["attempts"] >= 1 for r in bar.json("outbox")["items"]),
            "the first try failed while the receiver was down",
        )
        bel.start()
        retried = bar.cli("outbox", "retry", sent["id"])
        assert retried.returncode == 0, retried.stderr
        wait_until(
            lambda: [r["status"] for r in bar.json("outbox")["items"]] == ["delivered"],
            lambda: f"delivered after the retry: {bar.json('outbox')['items']}",
        )
        assert [m["id"] for m in bel.json("inbox")["items"]] == [sent["id"]]
    finally:
        stop_all(nodes)
