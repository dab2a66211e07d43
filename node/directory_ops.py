"""The directory operations (PROTOCOL.md 13.8), defined as node/operations.py defines the others:
a coordinator publishes a signed directory of its units, a unit imports one from a file's text or
from its coordinator's node (``GET /v1/directory``, which only a running node can fetch).

Publishing also leaves the text in ``HOME/directory.txt``, which the peer API serves
(node/http/directory_routes.py). Calls services; no HTTP, no SQL.
"""

from __future__ import annotations

import pathlib

import msgspec

from node import directory
from node.directory import Imported, Published
from node.home import write_private
from node.operations import Answering, Operation, OperationDeps
from protocol.errors import NodeError, StatementRefused, UsageError, os_reason

SERVED_NAME = "directory.txt"  # in the home: what GET /v1/directory answers
DIRECTORY_PATH = "/v1/directory"


class _Req(msgspec.Struct, forbid_unknown_fields=True):
    pass


class PublishDirectory(_Req):
    actor: str
    names: list[str] | None = None  # None: every peer verified by fingerprint
    valid_days: int = 30


class ImportDirectory(_Req):
    actor: str
    text: str | None = None  # the armored directory, read from a file
    from_peer: str | None = None  # or: fetched from this trusted peer's node


def write_served(path: pathlib.Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once (a reader sees the old directory or the new)."""
    try:
        write_private(path, text)
    except OSError as exc:
        raise NodeError(
            f"the directory is signed but cannot be written to {path}: {os_reason(exc)}"
        ) from exc


async def _publish(deps: OperationDeps, req: PublishDirectory) -> Published:
    home = deps.my_home()
    published = await deps.run_db(
        directory.publish_directory,
        deps.store,
        deps.me(),
        deps.own_card(),
        names=req.names,
        valid_days=req.valid_days,
        now=deps.clock(),
        actor=req.actor,
    )
    await deps.run_db(write_served, home.root / SERVED_NAME, published.text)
    return published


async def _import(deps: OperationDeps, req: ImportDirectory) -> Imported:
    if (req.text is None) == (req.from_peer is None):
        raise UsageError("give exactly one of FILE (a directory file, - for stdin) or --from NAME")
    text = req.text
    if req.from_peer is not None:
        if deps.fetch is None:
            raise NodeError(
                "importing from a coordinator's node needs this node running: start it with "
                "'borderlink serve'",
                hint="or import the directory from a file: 'borderlink peers import-directory "
                "FILE'",
            )
        raw = await deps.fetch(req.from_peer, DIRECTORY_PATH)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise StatementRefused(
                "malformed",
                f"what {req.from_peer} serves at {DIRECTORY_PATH} is not a directory",
                peer=req.from_peer,
            ) from exc
    assert text is not None
    imported = await deps.run_db(
        directory.import_directory,
        deps.store,
        text,
        me=deps.own_card().node_id,
        now=deps.clock(),
        actor=req.actor,
    )
    await deps.after_peers_changed()
    return imported


PUBLISH_DIRECTORY = Operation("directory.publish", PublishDirectory, Published, _publish)
IMPORT_DIRECTORY = Operation("directory.import", ImportDirectory, Imported, _import)

DIRECTORY_OPERATIONS: dict[str, Answering] = {
    op.name: op for op in (PUBLISH_DIRECTORY, IMPORT_DIRECTORY)
}
