"""The operations the CLI asks of a node, each defined once: a request Struct, a result Struct and
the service function that runs it.

The same operation runs in the node when it is up (the admin API, node/http/operations.py) and in
the CLI's process when it is not (node/local.py, on a store opened from the home): one definition,
so peers added either way get the same trust decision and the same audit entries. Requests carry
the CLI's actor (``cli:<user>``); the node adds nothing of its own but its storage, threads, clock
and identity (:class:`OperationDeps`). Calls services; no HTTP, no SQL.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import msgspec

from keys.card import Card, parse_card
from node import audit_ops, initialise, keychange, offline, peers
from node.audit_ops import Exported, LogReport, Proof
from node.config import load_config
from node.home import Home
from node.keychange import KeysChanged
from node.offline import OpenedFile
from node.peers import AddedPeer, PeerKeys, PeerRow, Revoked, VerifiedPeer
from node.runtime import Clock, Run, run_inline
from node.sending import cursor, from_cursor, page_limit, paged
from node.storage import Reader, Store
from protocol.decoding import Decoder
from protocol.errors import NodeError, UsageError, ValidationError
from protocol.identity import Identity


async def _nothing() -> None:
    return None


async def _no_key_change(_identity: Identity | None, _card: Card | None) -> None:
    return None


@dataclass(frozen=True, kw_only=True)
class OperationDeps:
    """What an operation may use. The daemon passes its own; node/local.py builds one per call."""

    store: Store
    run_db: Run
    clock: Clock
    own_card: Callable[[], Card]  # this node's card (read when an operation needs it)
    identity: Identity | None = None  # needed to open sealed files
    run_cpu: Run = run_inline
    # After a peer was added, updated, removed or revoked: the node refreshes what it caches
    # about peers (delivery workers, the rate limiter's known senders).
    after_peers_changed: Callable[[], Awaitable[None]] = field(default=_nothing)
    home: Home | None = None  # the keystore and card files, for the key commands
    # GET a path from a trusted peer (by name) over mutual TLS; the answer's body. Only the
    # running node can (the CLI alone has no client): None here.
    fetch: Callable[[str, str], Awaitable[bytes]] | None = None
    # After this node's keys or card changed (new identity and card; None, None: only key
    # statements were queued): the node takes the new keys at once and wakes delivery.
    after_keys_changed: Callable[[Identity | None, Card | None], Awaitable[None]] = field(
        default=_no_key_change
    )
    # Where the audit log's listing and verification read: the node's reader connection on its
    # own thread (never behind deliveries); None: the store on ``run_db``.
    reader: Reader | None = None
    run_read: Run | None = None

    def reads(self) -> tuple[Reader, Run]:
        if self.reader is not None and self.run_read is not None:
            return self.reader, self.run_read
        return self.store, self.run_db

    def my_home(self) -> Home:
        if self.home is None:
            raise NodeError("internal error: this operation needs the node's home")
        return self.home

    def me(self) -> Identity:
        if self.identity is None:
            raise NodeError("internal error: this operation needs the node's unlocked identity")
        return self.identity


Req = TypeVar("Req", bound=msgspec.Struct)
Res = TypeVar("Res", bound=msgspec.Struct)


@dataclass(frozen=True)
class Operation(Generic[Req, Res]):
    """One operation: its name on the admin API (POST /v1/ops/NAME), its request and result
    Structs (JSON on the wire), and the service function both the node and the CLI run."""

    name: str
    request: type[Req]
    result: type[Res]
    run: Callable[[OperationDeps, Req], Coroutine[object, object, Res]]

    @functools.cached_property
    def _requests(self) -> Decoder[Req]:
        return Decoder[Req](self.request, what="admin request")

    def decode_request(self, data: bytes) -> Req:
        """The CLI sent something this node does not understand: a usage error, in our words."""
        try:
            return self._requests.decode(data)
        except ValidationError as exc:
            raise UsageError(f"bad admin request: {exc.message}") from exc

    def decode_result(self, data: bytes) -> Res:
        try:
            return msgspec.json.decode(data, type=self.result)
        except msgspec.DecodeError as exc:
            raise NodeError(
                f"the node's answer to {self.name} is not what this borderlink expects",
                hint="the node may run another version of borderlink: restart it",
            ) from exc

    async def answer(self, deps: OperationDeps, body: bytes) -> bytes:
        """Run on a request as the admin API received it; the result as the API sends it."""
        return msgspec.json.encode(await self.run(deps, self.decode_request(body)))


class Answering(Protocol):
    """Any operation, as the admin API serves it."""

    @property
    def name(self) -> str: ...

    async def answer(self, deps: OperationDeps, body: bytes) -> bytes: ...


class _Request(msgspec.Struct, forbid_unknown_fields=True):
    pass


class Done(msgspec.Struct, frozen=True):
    """The result of an operation that only changes something."""


# -- peers ---------------------------------------------------------------------------------------


class AddPeer(_Request):
    card: str  # armored contact card
    actor: str
    fingerprint: str | None = None
    trust_on_first_use: bool = False


async def _add_peer(deps: OperationDeps, req: AddPeer) -> AddedPeer:
    now = deps.clock()
    card = await deps.run_cpu(parse_card, req.card, now=int(now))
    added = await deps.run_db(
        peers.add,
        deps.store,
        card,
        me=deps.own_card().identity.node_id,
        own_pin=deps.own_card().tls_pin,
        fingerprint=req.fingerprint,
        trust_on_first_use=req.trust_on_first_use,
        actor=req.actor,
        now=now,
    )
    if added.outcome != "unchanged":
        await deps.after_peers_changed()
    return added


class ListPeers(_Request):
    pass


class PeerList(msgspec.Struct, frozen=True):
    peers: list[PeerRow]


async def _list_peers(deps: OperationDeps, req: ListPeers) -> PeerList:
    return PeerList(await deps.run_db(peers.listing, deps.store))


class RemovePeer(_Request):
    name: str
    actor: str


async def _remove_peer(deps: OperationDeps, req: RemovePeer) -> Done:
    await deps.run_db(peers.remove, deps.store, req.name, actor=req.actor, now=deps.clock())
    await deps.after_peers_changed()
    return Done()


class RevokePeer(_Request):
    name: str
    actor: str


async def _revoke_peer(deps: OperationDeps, req: RevokePeer) -> Revoked:
    revoked = await deps.run_db(
        peers.revoke, deps.store, req.name, actor=req.actor, now=deps.clock()
    )
    if not revoked.already:
        await deps.after_peers_changed()
    return revoked


class VerifyPeer(_Request):
    name: str
    fingerprint: str
    actor: str


async def _verify_peer(deps: OperationDeps, req: VerifyPeer) -> VerifiedPeer:
    verified = await deps.run_db(
        peers.verify, deps.store, req.name, req.fingerprint, actor=req.actor, now=deps.clock()
    )
    if verified.outcome != "unchanged":
        await deps.after_peers_changed()
    return verified


ADD_PEER = Operation("peers.add", AddPeer, AddedPeer, _add_peer)
VERIFY_PEER = Operation("peers.verify", VerifyPeer, VerifiedPeer, _verify_peer)
LIST_PEERS = Operation("peers.list", ListPeers, PeerList, _list_peers)
REMOVE_PEER = Operation("peers.remove", RemovePeer, Done, _remove_peer)
REVOKE_PEER = Operation("peers.revoke", RevokePeer, Revoked, _revoke_peer)


# -- the offline flow ----------------------------------------------------------------------------


class FindRecipients(_Request):
    names: list[str]


class Recipients(msgspec.Struct, frozen=True):
    recipients: list[PeerKeys]


async def _find_recipients(deps: OperationDeps, req: FindRecipients) -> Recipients:
    return Recipients(await deps.run_db(offline.recipients, deps.store, req.names))


class OpenSealed(_Request):
    envelope: bytes
    source: str  # where it came from, for the audit entry: file:PATH
    actor: str


async def _open_sealed(deps: OperationDeps, req: OpenSealed) -> OpenedFile:
    return await offline.open_sealed(
        req.envelope,
        me=deps.me(),
        store=deps.store,
        run_db=deps.run_db,
        run_cpu=deps.run_cpu,
        clock=deps.clock,
        source=req.source,
        actor=req.actor,
    )


FIND_RECIPIENTS = Operation("seal.recipients", FindRecipients, Recipients, _find_recipients)
OPEN_SEALED = Operation("open", OpenSealed, OpenedFile, _open_sealed)


# -- the audit log -------------------------------------------------------------------------------


class ListAudit(_Request):
    since_ms: float | None = None
    kind: str | None = None
    message_id: str | None = None
    limit: int | None = None  # None: every matching entry
    after: str | None = None  # the cursor of the previous page


class AuditLog(msgspec.Struct, frozen=True):
    """A page of entries, as the inbox and outbox listings page (node/sending.py ``Page``)."""

    items: list[dict[str, object]]
    next: str | None


_AUDIT = "a"


async def _list_audit(deps: OperationDeps, req: ListAudit) -> AuditLog:
    limit = None if req.limit is None else page_limit(req.limit)
    start = 0 if req.after is None else from_cursor(_AUDIT, req.after, int) + 1
    reader, run_read = deps.reads()
    entries = await run_read(
        audit_ops.log_entries,
        reader,
        since_ms=req.since_ms,
        kind=req.kind,
        message_id=req.message_id,
        start=start,
        limit=None if limit is None else limit + 1,
    )
    items, nxt = paged(entries, len(entries) if limit is None else limit, _audit_cursor)
    return AuditLog(items, nxt)


def _audit_cursor(entry: dict[str, object]) -> str:
    return cursor(_AUDIT, entry["index"])


class VerifyLog(_Request):
    pass


async def _verify_log(deps: OperationDeps, req: VerifyLog) -> LogReport:
    me = deps.own_card().identity
    reader, run_read = deps.reads()
    snapshot = await run_read(audit_ops.log_snapshot_of, reader)
    return await deps.run_cpu(audit_ops.verify_snapshot, snapshot, me)


class ProveEntry(_Request):
    index: int


async def _prove_entry(deps: OperationDeps, req: ProveEntry) -> Proof:
    log = await deps.run_db(audit_ops.covered, deps.store, req.index)
    return await deps.run_cpu(audit_ops.prove, log, req.index)


class ExportLog(_Request):
    pass


async def _export_log(deps: OperationDeps, req: ExportLog) -> Exported:
    card = deps.own_card()
    log, note = await deps.run_db(audit_ops.export_snapshot, deps.store)
    return await deps.run_cpu(audit_ops.export, log, note, card)


class NoteExport(_Request):
    size: int
    destination: str
    actor: str


async def _note_export(deps: OperationDeps, req: NoteExport) -> Done:
    await deps.run_db(
        audit_ops.exported,
        deps.store,
        size=req.size,
        destination=req.destination,
        actor=req.actor,
        now=deps.clock(),
    )
    return Done()


class FindSigner(_Request):
    card: str  # the card inside an export file


async def _find_signer(deps: OperationDeps, req: FindSigner) -> PeerKeys:
    own = deps.own_card()
    return await deps.run_db(audit_ops.export_signer, deps.store, own, req.card)


LIST_AUDIT = Operation("audit.log", ListAudit, AuditLog, _list_audit)
VERIFY_LOG = Operation("audit.verify", VerifyLog, LogReport, _verify_log)
PROVE_ENTRY = Operation("audit.prove", ProveEntry, Proof, _prove_entry)
EXPORT_LOG = Operation("audit.export", ExportLog, Exported, _export_log)
NOTE_EXPORT = Operation("audit.exported", NoteExport, Done, _note_export)
FIND_SIGNER = Operation("audit.signer", FindSigner, PeerKeys, _find_signer)


# -- this node's keys ----------------------------------------------------------------------------


class NoteCardExport(_Request):
    destination: str
    actor: str


class NoteKeyBackup(_Request):
    restored: bool  # False: a backup was written to ``where``; True: restored from it
    where: str
    seq: int
    actor: str


async def _note_key_backup(deps: OperationDeps, req: NoteKeyBackup) -> Done:
    await deps.run_db(
        initialise.backup_noted,
        deps.store,
        restored=req.restored,
        where=req.where,
        seq=req.seq,
        actor=req.actor,
        now=deps.clock(),
    )
    return Done()


async def _note_card_export(deps: OperationDeps, req: NoteCardExport) -> Done:
    await deps.run_db(
        initialise.card_exported,
        deps.store,
        destination=req.destination,
        actor=req.actor,
        now=deps.clock(),
    )
    return Done()


class NotePassphraseChange(_Request):
    actor: str


async def _note_passphrase_change(deps: OperationDeps, req: NotePassphraseChange) -> Done:
    await deps.run_db(initialise.passphrase_changed, deps.store, actor=req.actor, now=deps.clock())
    return Done()


# -- this node's keys (PROTOCOL.md 13) -------------------------------------------------------------


class RotateKeys(_Request):
    passphrase: bytes  # the keystore is sealed again with the new keys
    actor: str
    overlap_days: int | None = None  # None: the home's config, [keys] overlap_days


class RenewCard(_Request):
    passphrase: bytes
    actor: str
    valid_days: int = 365


class RevokeKey(_Request):
    reason: str
    actor: str
    passphrase: bytes | None = None
    certificate: str | None = None  # a revocation certificate's text: no keystore needed
    since: int | None = None


async def _rotate_keys(deps: OperationDeps, req: RotateKeys) -> KeysChanged:
    overlap = req.overlap_days
    if overlap is None:
        overlap = load_config(deps.my_home().config).keys.overlap_days
    if not 0 <= overlap <= 90:
        raise UsageError("--overlap-days must be between 0 and 90")
    changed, identity, card = await deps.run_db(
        keychange.rotate_own,
        deps.my_home(),
        deps.store,
        req.passphrase,
        now=int(deps.clock()),
        overlap_days=overlap,
        actor=req.actor,
    )
    await deps.after_keys_changed(identity, card)
    return changed


async def _renew_card(deps: OperationDeps, req: RenewCard) -> KeysChanged:
    changed, identity, card = await deps.run_db(
        keychange.renew_own,
        deps.my_home(),
        deps.store,
        req.passphrase,
        now=int(deps.clock()),
        valid_days=req.valid_days,
        actor=req.actor,
    )
    await deps.after_keys_changed(identity, card)
    return changed


async def _revoke_key(deps: OperationDeps, req: RevokeKey) -> KeysChanged:
    changed = await deps.run_db(
        keychange.revoke_own,
        deps.my_home(),
        deps.store,
        now=int(deps.clock()),
        actor=req.actor,
        reason=req.reason,
        passphrase=req.passphrase,
        certificate=req.certificate,
        since=req.since,
    )
    await deps.after_keys_changed(None, None)
    return changed


ROTATE_KEYS = Operation("keys.rotate", RotateKeys, KeysChanged, _rotate_keys)
RENEW_CARD = Operation("keys.renew", RenewCard, KeysChanged, _renew_card)
REVOKE_KEY = Operation("keys.revoke", RevokeKey, KeysChanged, _revoke_key)

NOTE_CARD_EXPORT = Operation("keys.card_exported", NoteCardExport, Done, _note_card_export)
NOTE_KEY_BACKUP = Operation("keys.backup_noted", NoteKeyBackup, Done, _note_key_backup)
NOTE_PASSPHRASE_CHANGE = Operation(
    "keys.passphrase_changed", NotePassphraseChange, Done, _note_passphrase_change
)


OPERATIONS: dict[str, Answering] = {
    op.name: op
    for op in (
        ADD_PEER,
        VERIFY_PEER,
        ROTATE_KEYS,
        RENEW_CARD,
        REVOKE_KEY,
        LIST_PEERS,
        REMOVE_PEER,
        REVOKE_PEER,
        FIND_RECIPIENTS,
        OPEN_SEALED,
        LIST_AUDIT,
        VERIFY_LOG,
        PROVE_ENTRY,
        EXPORT_LOG,
        NOTE_EXPORT,
        FIND_SIGNER,
        NOTE_CARD_EXPORT,
        NOTE_KEY_BACKUP,
        NOTE_PASSPHRASE_CHANGE,
    )
}
