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


def own_card(home: Home, now: int | None, *, keystore: bool = True) -> Card:
    """This node's card from the home, checked valid at ``now`` (None: not checked)."""
    if keystore:
        home.require()
    else:
        home.require_card()
    try:
        text = home.card.read_text()
    except OSError as exc:
        raise BorderlinkError(
            f"cannot read this node's card {home.card}: {os_reason(exc)}"
        ) from exc
    return parse_card(text, now=now)


@contextmanager
def _store(home: Home, *, keystore: bool = True) -> Iterator[Store]:
    if keystore:
        home.require()
    else:
        home.require_card()
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
    keystore: bool = True,
) -> Res:
    """Run ``op`` here, as the node would run it; ``identity`` if the CLI has unlocked it;
    ``keystore=False`` for a home whose keystore is gone (revoking by certificate)."""

    def card() -> Card:
        return own_card(home, int(clock()), keystore=keystore)

    with _store(home, keystore=keystore) as store:
        deps = OperationDeps(
            store=store,
            run_db=run_inline,
            clock=clock,
            own_card=card,
            identity=identity,
            home=home,
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


def deliver_notices(home: Home, clock: Clock = wall_clock) -> list[str]:
    """Send this node's queued key statements from here, once, to every peer they wait for:
    for a revocation made while the node cannot run (its keystore lost or stolen). Statements
    need no client certificate. One line per peer, saying how it went."""
    import asyncio

    from node.config import Delivery
    from node.delivery import PeerWorker
    from node.peer_client import PeerClient
    from node.peer_info import PeerInfo

    async def send(store: Store) -> list[str]:
        client = PeerClient(Delivery().request_timeout, None)
        lines = []
        try:
            waiting = {n.peer for n in store.key_notices(pending=True)}
            for rec in store.peers():
                if rec.node_id not in waiting:
                    continue
                worker = PeerWorker(
                    PeerInfo.of(rec),
                    me=own_card(home, None, keystore=False).node_id,
                    store=store,
                    run_db=run_inline,
                    client=client,
                    policy=Delivery(),
                    clock=clock,
                )
                left = await worker._send_notices()
                done = store.key_notices(rec.node_id)
                last = done[-1] if done else None
                if left is None and last is not None and last.status == "delivered":
                    lines.append(f"{rec.name}: delivered, receipt verified")
                else:
                    why = last.last_error if last is not None else "not sent"
                    lines.append(
                        f"{rec.name}: not delivered yet ({why}); run the command again later"
                    )
        finally:
            await client.close()
        return lines

    import logging

    from node.logs import configure

    configure("json", level=logging.WARNING)  # the lines returned say it; stdout stays --json's
    with _store(home, keystore=False) as store:
        return asyncio.run(send(store))
