"""node/initialise.with_tls: a pre-TLS card re-issued with a pinned certificate must be newer
than the old one, or peers keep the old card (a home started in the second it was made got the
same valid_from: a flaky test found it)."""

from __future__ import annotations

from keys.card import make_card
from node.initialise import with_tls
from tests.conftest import NOW, fixed_identity


def test_the_reissued_card_is_newer_even_within_the_same_second() -> None:
    me = fixed_identity("bar-pcu")
    old = make_card(
        me, name="bar-pcu", unit_type="PCU", country="ME", location="MEBAR",
        endpoints=["http://127.0.0.1:7443"], valid_from=int(NOW), valid_until=int(NOW) + 86400,
    )  # fmt: skip
    for now in (int(NOW), int(NOW) - 5, int(NOW) + 60):
        new = with_tls(old, me, now=now)
        assert new.body.valid_from > old.body.valid_from
        assert new.body.valid_from == max(now, int(NOW) + 1)
        assert new.body.endpoints == ["https://127.0.0.1:7443"] and new.tls_pin is not None
