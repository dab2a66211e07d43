"""A pin belongs to one peer (PROTOCOL.md 3.5, 11.0; attack9 F2), on a real SQLite store: `peers
add` refuses, and audits, a card pinning a stored peer's certificate or this node's own; and if
two trusted peers share a pin anyway (a table filled before certificates were bound to cards),
their calls are nobody's, with one error line, instead of the last one read taking the other's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from keys.card import parse_card
from keys.tls import make_certificate, pin_text
from node import peers
from node.admission import Admission
from node.config import Limits
from node.runtime import run_inline
from node.storage import Store
from node.storage.sqlite import open_store
from protocol.audit import AuditEntry
from protocol.errors import TrustError
from tests.conftest import NOW, fixed_identity
from tests.hostile_cards import card_pinning, stored_record
from tests.peering import peer_record

ME, BELGRADE, ZAGREB = fixed_identity("bar"), fixed_identity("belgrade"), fixed_identity("zagreb")
BELGRADE_CERT = make_certificate(BELGRADE, now=NOW)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "bar.db")
    with s.unit(NOW) as u:
        u.put_peer(peer_record(BELGRADE, "belgrade-accu"))
    yield s
    s.close()


def entries(store: Store) -> list[AuditEntry]:
    return [msgspec.json.decode(r.entry, type=AuditEntry) for r in store.audit_rows()]


def test_adding_a_card_that_pins_a_stored_peers_certificate_is_refused_and_audited(
    store: Store,
) -> None:
    card = parse_card(card_pinning(ZAGREB, "zagreb-jaitf", BELGRADE_CERT), now=None)
    with pytest.raises(TrustError) as caught:
        peers.add(
            store,
            card,
            me=ME.node_id,
            fingerprint=ZAGREB.public.fingerprint,
            trust_on_first_use=False,
            actor="test",
            now=NOW,
        )
    assert "of peer 'belgrade-accu'" in caught.value.message
    assert store.peer_by_name("zagreb-jaitf") is None
    last = entries(store)[-1]
    assert (last.kind, last.outcome, last.peer) == ("peer.added", "refused", "zagreb-jaitf")


def test_adding_a_card_that_pins_this_nodes_certificate_is_refused(store: Store) -> None:
    own = make_certificate(ME, now=NOW)
    card = parse_card(card_pinning(ZAGREB, "zagreb-jaitf", own), now=None)
    with pytest.raises(TrustError, match="this node's own TLS certificate"):
        peers.add(
            store,
            card,
            me=ME.node_id,
            fingerprint=None,
            trust_on_first_use=True,
            actor="test",
            now=NOW,
            own_pin=pin_text(own),
        )
    assert store.peer_by_name("zagreb-jaitf") is None


async def test_a_pin_two_trusted_peers_share_is_nobodys_and_logged_once(store: Store) -> None:
    clock = [0.0]
    gate = Admission(Limits(), store, run_inline, lambda: clock[0])
    assert (await gate.caller(BELGRADE_CERT, "10.0.0.1")).name == "belgrade-accu"
    with store.unit(NOW) as u:  # an old table: the copy went in before 3.5 refused it
        u.put_peer(
            stored_record(
                ZAGREB, "zagreb-jaitf", card_pinning(ZAGREB, "zagreb-jaitf", BELGRADE_CERT)
            )
        )
    gate.forget_peers()
    with capture_logs() as logs:
        for _ in range(3):
            assert (await gate.caller(BELGRADE_CERT, "10.0.0.1")).peer is None
            clock[0] += 10.0  # every call re-reads the table
    shared = [e for e in logs if e["event"] == "peer.pin_shared"]
    assert len(shared) == 1
    assert shared[0]["log_level"] == "error"
    assert shared[0]["peers"] == ["belgrade-accu", "zagreb-jaitf"]
    with store.unit(NOW) as u:
        u.delete_peer("zagreb-jaitf")
    gate.forget_peers()
    assert (await gate.caller(BELGRADE_CERT, "10.0.0.1")).name == "belgrade-accu"
