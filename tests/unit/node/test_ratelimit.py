"""Budgets key IPv6 callers by /64, so rotating addresses in one network buys nothing."""

from __future__ import annotations

import pytest

from node.ratelimit import source_key


@pytest.mark.parametrize(
    ("remote", "key"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("::1", "::/64"),
        (None, "unknown"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_source_key(remote: str | None, key: str) -> None:
    assert source_key(remote) == key


def test_regression_ipv6_rotation_shares_one_sampler_budget() -> None:
    from node.ratelimit import Sampler

    sampler = Sampler()
    counts = [sampler.count(f"{source_key(f'2001:db8::{i:x}')}|malformed") for i in range(1, 65)]
    assert counts[-1] == 64
