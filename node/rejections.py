"""The audit trail of refused input, bounded so that anonymous traffic cannot grow it at will.

Rejections by an authenticated sender are always audited, but for those it can repeat at will
(replays: anyone can re-post a validly signed envelope; over quota; a foreign reference), which
are sampled per (sender, reason). Unauthenticated junk is sampled per (source, reason). Sampled
means the 1st, 2nd, 4th, 8th... with the running count in the entry (PROTOCOL.md 12.1). One instance serves the peer routes'
refusals before decoding and the receiver's refusals after, so both count against one budget.
Writes audit entries through a storage unit; no HTTP.
"""

from __future__ import annotations

from node.auditing import record
from node.ratelimit import Sampler, sampled, source_key
from node.runtime import Clock, Run
from node.storage import Store, Unit


class Rejections:
    def __init__(self, store: Store, run_db: Run, clock: Clock) -> None:
        self.store = store
        self.run_db = run_db
        self.clock = clock
        self.sampler = Sampler()

    def sample(self, source: str | None, reason: str, *, sender: str | None = None) -> int | None:
        """The running count for this source (or, given, this verified sender) and reason if
        this one is to be audited, else None."""
        who = f"peer {sender}" if sender is not None else source_key(source)
        n = self.sampler.count(f"{who}|{reason}")
        return n if sampled(n) else None

    def note(
        self,
        unit: Unit,
        reason: str,
        detail: str,
        *,
        source: str | None,
        claimed_sender: str | None,
        message_id: str | None = None,
        authenticated: bool,
        sender: str | None = None,
    ) -> None:
        """Audit one rejection inside ``unit`` (the receiver's), sampled unless authenticated:
        per ``sender`` (node id hex) for an envelope whose signature verified, which it may
        re-post from any address, else per source address."""
        if not authenticated:
            n = self.sample(source, reason, sender=sender)
            if n is None:
                return
            whose = "sender" if sender is not None else "source"
            detail = f"{n} so far from this {whose}; last: {detail}"
        record(
            unit,
            "message.rejected",
            outcome=reason,
            detail=detail,
            peer_id=claimed_sender,
            source=source,
            message_id=message_id,
        )
        if reason == "retired_key" and claimed_sender is not None:
            # Signed by a key the peer replaced or revoked (the signature verified): a key
            # event, so 'status' shows it next to the rotation or revocation it follows.
            rec = unit.peer_by_id(bytes.fromhex(claimed_sender))
            if rec is not None:
                unit.add_key_event(rec.name, "envelope", reason, detail)

    async def refused(
        self, reason: str, detail: str, *, source: str | None, claimed: str | None
    ) -> None:
        """A refusal before anything was decoded (rate, size, time): sampled, in its own unit."""
        n = self.sample(source, reason)
        if n is None:
            return
        text = f"{n} so far from this source; last: {detail}"
        await self.run_db(self._write, reason, text, str(source), claimed)

    def _write(self, reason: str, detail: str, source: str, claimed: str | None) -> None:
        with self.store.unit(self.clock()) as u:
            record(
                u, "message.rejected", outcome=reason, detail=detail, peer_id=claimed, source=source
            )
