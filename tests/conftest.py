"""Shared fixtures: deterministic identities for the pure core, throwaway homes for the CLI."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from protocol.errors import UnknownSender
from protocol.identity import Identity, PublicIdentity

NOW = 1_790_000_000  # a fixed "now" (2026-09-21): the core never reads the clock


def fixed_identity(name: str) -> Identity:
    seed = hashlib.sha512(b"borderlink test identity " + name.encode()).digest()
    return Identity.from_secret_bytes(seed)


@pytest.fixture
def alice() -> Identity:
    return fixed_identity("alice")


@pytest.fixture
def bob() -> Identity:
    return fixed_identity("bob")


@pytest.fixture
def carol() -> Identity:
    return fixed_identity("carol")


@pytest.fixture
def mallory() -> Identity:
    return fixed_identity("mallory")


def directory(*trusted: Identity) -> Callable[[bytes], PublicIdentity]:
    """A ``sender_of`` that knows exactly the given identities."""
    known = {i.node_id: i.public for i in trusted}

    def sender_of(node_id: bytes) -> PublicIdentity:
        if node_id not in known:
            raise UnknownSender("sender is not a trusted peer")
        return known[node_id]

    return sender_of
