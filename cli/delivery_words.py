"""How delivery stands, in words a unit operator reads at a glance: "1 retrying, next in 40 s",
"delivered 14:02:07, 12 ms after it was queued", "refused by kotor-pcu: ...", rather than a
status dictionary or an exception's class name.

Pure: the node's answers (``outbox`` entries, ``status``'s peers) and the time in, lines out.
Strings in those answers arrive escaped (:func:`cli.output.emit` escapes before a view runs), so
a peer's error text is shown safely here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

from cli.output import local_time

# Outbox states as the operator reads them (PROTOCOL.md 11.4); 'failed' is retried until the
# message expires, so it reads "retrying". 'delivering' is only in databases of older versions.
STATE_WORDS: Final = {
    "queued": "queued",
    "delivering": "queued",
    "failed": "retrying",
    "held": "held",
    "delivered": "delivered",
    "rejected": "refused",
    "expired": "expired",
}
_ORDER: Final = ("delivered", "queued", "delivering", "failed", "held", "rejected", "expired")


def span(seconds: float) -> str:
    """A duration as a person says it: ``12 ms``, ``40 s``, ``3 min``, ``5 h``, ``2 d``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))} ms"
    s = round(seconds)
    if s < 90:
        return f"{s} s"
    if s < 90 * 60:
        return f"{round(s / 60)} min"
    if s < 48 * 3600:
        return f"{round(s / 3600)} h"
    return f"{round(s / 86400)} d"


def due(at: float, now: float) -> str:
    """``in 40 s``, or ``now`` for a time already reached."""
    return "now" if at - now < 0.5 else f"in {span(at - now)}"


def summary(by_status: Mapping[str, int], next_retry: float | None, now: float) -> str:
    """``4 delivered, 1 queued, 2 retrying (next in 40 s)``, or ``empty``."""
    counts: dict[str, int] = {}
    rank = {s: i for i, s in enumerate(_ORDER)}
    for state in sorted(by_status, key=lambda s: rank.get(s, len(rank))):
        word = STATE_WORDS.get(state, state)
        counts[word] = counts.get(word, 0) + by_status[state]
    parts = [f"{n} {word}" for word, n in counts.items() if n]
    if not parts:
        return "empty"
    if next_retry is not None and counts.get("retrying"):
        i = next(i for i, p in enumerate(parts) if p.endswith(" retrying"))
        parts[i] += f" (next {due(next_retry, now)})"
    return ", ".join(parts)


def entry(r: Mapping[str, Any], now: float) -> str:
    """One recipient's delivery of one message (an ``outbox`` entry)."""
    state, tries, error = r["status"], int(r["attempts"]), r.get("last_error")
    why = f": {error}" if error else ""
    if state == "delivered":
        at = r.get("delivered_at")
        if at is None:
            return "delivered"
        return f"delivered {local_time(at)}, {span(at - r['queued_at'])} after it was queued"
    if state in ("queued", "delivering"):
        nxt = r.get("next_attempt")
        if tries == 0:
            if nxt is not None and nxt - now >= 0.5:  # its peer's link is down: it waits for it
                return f"queued, first try {due(nxt, now)} (its link is down)"
            return "queued, being sent"
        when = f", next try {due(nxt, now)}" if nxt is not None else ""
        return f"queued again after {_tries(tries)}{when}{why}"
    if state == "failed":
        nxt = r.get("next_attempt")
        when = f", next {due(nxt, now)}" if nxt is not None else ""
        return f"retrying ({_tries(tries)} so far){when}{why}"
    if state == "rejected":
        return (
            f"refused by {r['peer']}{why} (not retried: 'borderlink outbox retry {r['id']} "
            f"--to {r['peer']}' sends it again once that is fixed)"
        )
    if state == "expired":
        return f"expired undelivered after {_tries(tries)}{why}"
    if state == "held":
        return f"held, not sent{why}"
    return f"{state}{why}"


def _tries(n: int) -> str:
    return "1 try" if n == 1 else f"{n} tries"


def outbox_lines(rows: Sequence[Mapping[str, Any]], now: float) -> list[str]:
    """Entries grouped under their message (the node lists them newest message first, then by
    peer): a header line per message, then one line per recipient."""
    total = Counter(r["id"] for r in rows)
    delivered = Counter(r["id"] for r in rows if r["status"] == "delivered")
    lines: list[str] = []
    current = None
    for r in rows:
        if r["id"] != current:
            current = r["id"]
            lines.append(
                f"{r['id']}  {r['type']}, queued {local_time(r['queued_at'])}, "
                f"{delivered[current]} of {total[current]} delivered"
            )
        lines.append(f"  {r['peer']:<16} {entry(r, now)}")
    return lines


def peer_line(p: Mapping[str, Any], now: float) -> str:
    """A peer in ``status``: its link, what waits for it and, if delivery fails, since when,
    why and when it is tried next."""
    link = {"up": "up", "down": "down", "unknown": "not tried yet", "idle": "idle"}.get(
        p["link"], p["link"]
    )
    line = f"  peer {p['name']:<16} {link}"
    queued, retrying = int(p["queued"]), int(p.get("retrying") or 0)
    if queued:
        line += f", {queued} to deliver"
    if int(p.get("in_flight") or 0):
        line += f" ({p['in_flight']} being sent)"
    if retrying:
        since = p.get("failing_since")
        line += f"; {retrying} retrying"
        if since is not None:
            line += f", failing for {span(now - since)}"
        if p.get("next_retry") is not None:
            line += f", next try {due(p['next_retry'], now)}"
        if p.get("last_error"):
            line += f": {p['last_error']}"
    return line
