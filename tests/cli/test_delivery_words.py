"""cli/delivery_words.py: each outbox state and duration as an operator reads it (the views are
pure: rows and the time in, words out)."""

from __future__ import annotations

from typing import Any

import pytest

from cli.delivery_words import due, entry, outbox_lines, peer_line, span, summary

NOW = 1_800_000_000.0


def row(status: str, **kw: Any) -> dict[str, Any]:
    base = {
        "id": "ab" * 16,
        "type": "seizure-alert",
        "peer": "kotor-pcu",
        "status": status,
        "attempts": 0,
        "queued_at": NOW - 60,
        "next_attempt": None,
        "last_error": None,
        "delivered_at": None,
    }
    return base | kw


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(0.0123, "12 ms"), (-3, "0 ms"), (1, "1 s"), (89, "89 s"), (90, "2 min"),
     (5399, "90 min"), (5400, "2 h"), (47 * 3600, "47 h"), (3 * 86400, "3 d")],
)  # fmt: skip
def test_span(seconds: float, words: str) -> None:
    assert span(seconds) == words


def test_due_is_now_once_reached() -> None:
    assert (due(NOW - 5, NOW), due(NOW + 0.2, NOW), due(NOW + 40, NOW)) == ("now", "now", "in 40 s")


def test_summary_orders_states_and_says_when_the_next_retry_is() -> None:
    counts = {"failed": 1, "delivered": 5, "expired": 2, "queued": 1, "delivering": 1}
    assert summary(counts, NOW + 40, NOW) == (
        "5 delivered, 2 queued, 1 retrying (next in 40 s), 2 expired"
    )
    assert summary({}, None, NOW) == summary({"failed": 0}, NOW, NOW) == "empty"
    assert summary({"rejected": 1, "held": 3}, None, NOW) == "3 held, 1 refused"


@pytest.mark.parametrize(
    ("r", "words"),
    [
        (row("delivered", attempts=1, delivered_at=NOW - 59.988), "after it was queued"),
        (row("queued"), "queued, being sent"),
        (row("queued", next_attempt=NOW - 1), "queued, being sent"),
        (row("queued", next_attempt=NOW + 40), "queued, first try in 40 s (its link is down)"),
        (
            row("queued", attempts=2, next_attempt=NOW, last_error="no answer"),
            "queued again after 2 tries, next try now: no answer",
        ),
        (
            row("failed", attempts=1, next_attempt=NOW + 40, last_error="connection refused"),
            "retrying (1 try so far), next in 40 s: connection refused",
        ),
        (
            row("rejected", attempts=1, last_error="rejected (expired): too old"),
            "refused by kotor-pcu: rejected (expired): too old (not retried: 'borderlink outbox "
            f"retry {'ab' * 16} --to kotor-pcu' sends it again once that is fixed)",
        ),
        (row("expired", attempts=7), "expired undelivered after 7 tries"),
        (row("held", last_error="peer blocked"), "held, not sent: peer blocked"),
    ],
    ids=[
        "delivered",
        "queued",
        "queued-due",
        "queued-link-down",
        "queued-again",
        "failed",
        "rejected",
        "expired",
        "held",
    ],
)
def test_each_state_in_words(r: dict[str, Any], words: str) -> None:
    assert entry(r, NOW).endswith(words)
    if r["status"] == "delivered":
        assert entry(r, NOW).endswith(", 12 ms after it was queued")


def test_outbox_lines_group_a_messages_recipients_under_it() -> None:
    rows = [
        row("delivered", peer="belgrade-accu", attempts=1, delivered_at=NOW - 59),
        row("failed", attempts=3, next_attempt=NOW + 4, last_error="connection refused"),
        row("queued", id="cd" * 16, peer="belgrade-accu"),
    ]
    lines = outbox_lines(rows, NOW)
    assert [line.split("  ")[0] for line in lines] == ["ab" * 16, "", "", "cd" * 16, ""]
    assert lines[0].endswith(", 1 of 2 delivered") and lines[3].endswith(", 0 of 1 delivered")
    assert (
        lines[2] == "  kotor-pcu        retrying (3 tries so far), next in 4 s: connection refused"
    )


def test_a_peer_line_says_how_long_it_fails_why_and_when_it_is_tried_next() -> None:
    down = {"name": "kotor-pcu", "link": "down", "in_flight": 1, "queued": 4, "retrying": 3,
            "failing_since": NOW - 125, "next_retry": NOW + 40, "last_error": "connection refused"}  # fmt: skip
    assert peer_line(down, NOW) == (
        "  peer kotor-pcu        down, 4 to deliver (1 being sent); 3 retrying, failing for "
        "2 min, next try in 40 s: connection refused"
    )
    idle = {"name": "bar-pcu", "link": "unknown", "in_flight": 0, "queued": 0}
    assert peer_line(idle, NOW) == "  peer bar-pcu          not tried yet"
