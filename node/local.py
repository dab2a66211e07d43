"""The CLI's operations run in the CLI's own process, for when the node is not running: the same
services the admin API calls, on a store opened from the home for one call and closed after it.

The node's database is the node's: the CLI reaches it only through here (and here only when the
admin socket does not answer), so a trust decision or an audit entry is made by one piece of code,
whichever process runs it. Opens the SQLite store; no HTTP.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import TypeVar

import msgspec

from keys.card import Card, parse_card
from node import audit_ops
from node import initialise as init
from node.home import Home
from node.operations import Operation, OperationDeps
from node.runtime import Clock, run_inline, wall_clock
from node.storage import Store
from node.storage.sqlite import open_store
from protocol.errors import BorderlinkError, NodeError, os_reason
from protocol.identity import Identity

Req = TypeVar("Req", bound=msgspec.Struct)
Res = TypeVar("Res", bound=msgspec.Struct)


def own_card(home: Home, now: int | None) -> Card:
    """This node's card from the home, checked valid at ``now`` (None: not checked)."""
    home.require()
    try:
        text = home.card.read_text()
    except OSError as exc:
        raise BorderlinkError(
            f"cannot read this node's card {home.card}: {os_reason(exc)}"
        ) from exc
    return parse_card(text, now=now)


@contextmanager
def _store(home: Home) -> Iterator[Store]:
    home.require()
    store = open_store(home.database)
    try:
        yield store
    finally:
        store.close()


def run(
    home: Home,
    op: Operation[Req, Res],
    request: Req,
    *,
    identity: Identity | None = None,
    clock: Clock = wall_clock,
) -> Res:
    """Run ``op`` here, as the node would run it; ``identity`` if the CLI has unlocked it."""

    def card() -> Card:
        return own_card(home, int(clock()))

    with _store(home) as store:
        deps = OperationDeps(
            store=store, run_db=run_inline, clock=clock, own_card=card, identity=identity
        )
        return _inline(op.run(deps, request))


def _inline(step: Coroutine[object, object, Res]) -> Res:
    """Run an operation to its end here. Every await in it is an inline call (``run_inline``,
    no hook), so it finishes without suspending and needs no event loop: the CLI may be called
    where one already runs (tests call it from async code)."""
    try:
        step.send(None)
    except StopIteration as done:
        result: Res = done.value
        return result
    step.close()
    raise NodeError("internal error: an operation run in-process waited for something")


def checkpoint(home: Home, identity: Identity, actor: str, clock: Clock = wall_clock) -> str:
    """Sign a checkpoint of the whole log (recomputed, O(n)) and return it with its cosignatures:
    what the running node answers to POST /v1/audit/checkpoint."""
    with _store(home) as store:
        signed = audit_ops.sign_checkpoint(store, identity, clock(), actor=actor, force=True)
        return audit_ops.cosigned_note(store) or signed.note


def initialise(
    home: Home,
    identity: Identity,
    card: Card,
    *,
    passphrase: bytes,
    kdf_profile: str,
    actor: str,
    clock: Clock = wall_clock,
) -> None:
    """Create the home (keystore, card) and open its log with the creation entries."""
    init.write_home(home, identity, card, passphrase, kdf_profile)
    with _store(home) as store:
        init.initialised(store, card, kdf_profile=kdf_profile, actor=actor, now=clock())
