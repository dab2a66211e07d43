"""``borderlink audit``: read, prove, verify and export this node's tamper-evident audit log.

Reading and verifying work on the database directly, node running or not; signing a fresh
checkpoint asks the running node, or unlocks the keystore when the node is down.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import click
import msgspec

from cli.context import Ctx
from cli.options import Group, PathArg, WholeNumber
from cli.output import emit, json_option, note
from cli.passphrase import passphrase_options
from protocol.decoding import convert, decode_json
from protocol.errors import (
    AuditError,
    BorderlinkError,
    NodeUnreachable,
    UsageError,
    ValidationError,
    os_reason,
)

EXPORT_FORMAT = "borderlink-audit-export"


@click.group("audit", cls=Group)
def audit_group() -> None:
    """Read, prove, verify and export the tamper-evident audit log."""


def _since(text: str) -> float:
    """'2h', '3d' ago, or an ISO date/time (UTC)."""
    from cli.options import parse_duration

    try:
        return time.time() - parse_duration(text)
    except click.BadParameter:
        pass
    from datetime import UTC, datetime

    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(
            f"--since takes a duration like 2h or a date like 2026-11-24, not '{text}'"
        ) from exc
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


@audit_group.command("log")
@click.option("--since", help="Only entries newer than this: 2h, 3d, or 2026-11-24T10:00.")
@click.option("--kind", help="Only this kind (e.g. message.rejected) or prefix (message.).")
@click.option("--message", "message_id", help="Only entries about this message id.")
@json_option
@click.pass_obj
def log_cmd(
    ctx: Ctx, since: str | None, kind: str | None, message_id: str | None, as_json: bool
) -> None:
    """Show audit entries, oldest first."""
    from node.audit_store import entries_json

    rows = entries_json(ctx.store().audit_rows())
    if since:
        cutoff = _since(since) * 1000
        rows = [r for r in rows if r["time"] >= cutoff]
    if kind:
        rows = [
            r
            for r in rows
            if r["kind"] == kind or (kind.endswith(".") and r["kind"].startswith(kind))
        ]
    if message_id:
        rows = [r for r in rows if r.get("message_id") == message_id.lower()]

    def human(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return "no audit entries match"
        out = []
        for r in rows:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["time"] / 1000))
            extra = " ".join(
                f"{k}={r[k]}"
                for k in ("message_id", "peer", "peer_id", "outcome", "source", "detail")
                if r.get(k)
            )
            out.append(f"{r['index']:>6} {when}Z {r['actor']:<12} {r['kind']:<24} {extra}")
        return "\n".join(out)

    emit(rows, as_json, human)


def _verify_local(ctx: Ctx) -> dict[str, Any]:
    from keys.card import parse_card
    from protocol.audit import origin_of, verify_log
    from protocol.checkpoint import CosignatureVerifier, open_checkpoint, verify_cosignature
    from protocol.signednote import Verifier

    store = ctx.store()
    me = ctx.card().identity
    origin = origin_of(me.node_id)
    verifier = Verifier(origin, me.sign_key)
    checkpoints = [open_checkpoint(n, [verifier]) for _, _, n in store.own_checkpoints()]
    for (size, root, _), cp in zip(store.own_checkpoints(), checkpoints, strict=True):
        if cp.size != size or cp.root_hash != root or cp.origin != origin:
            raise AuditError(f"stored checkpoint of size {size} does not match its signed note")
    rows = store.audit_rows()
    report = verify_log([e for _, e, _ in rows], [r for _, _, r in rows], checkpoints)
    cosigned = []
    latest = store.latest_checkpoint()
    if latest is not None:
        for witness, line, _ts in store.cosignatures(latest[0]):
            rec = store.peer_by_id(witness)
            if rec is None:
                continue
            key = parse_card(rec.card, now=None).body.sign_key
            verify_cosignature(latest[2] + line, CosignatureVerifier(origin_of(witness), key))
            cosigned.append(rec.name)
    return {
        "ok": True,
        "entries": report.size,
        "checkpoints": len(checkpoints),
        "checkpoint_size": report.checkpoint_size,
        "root": report.root.hex(),
        "uncovered": report.size - report.checkpoint_size,
        "cosigned_by": cosigned,
    }


class _ExportEntry(msgspec.Struct):
    index: int
    entry: bytes  # base64 in the file
    proof: list[bytes]


class _Export(msgspec.Struct):
    """The shape of an export file (PROTOCOL.md 12.4), checked before anything in it is used."""

    format: str
    card: str
    checkpoint: str
    entries: list[_ExportEntry]


def _read_export(path: str) -> _Export:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BorderlinkError(f"cannot read audit export {path}: {os_reason(exc)}") from exc
    try:
        doc = decode_json(data, what="the file")
    except ValidationError as exc:
        raise BorderlinkError(f"cannot read audit export {path}: {exc.message}") from exc
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise AuditError(f"{path} is not a borderlink audit export")
    try:
        return convert(doc, _Export, what="the export")
    except ValidationError as exc:
        raise AuditError(f"{path} is not a well-formed audit export: {exc.message}") from exc


def _verify_file(ctx: Ctx, path: str) -> dict[str, Any]:
    from keys.card import parse_card
    from protocol.audit import decode_entry, origin_of
    from protocol.checkpoint import open_checkpoint
    from protocol.merkle import leaf_hash, root_from_leaf_hashes, verify_inclusion
    from protocol.signednote import Verifier

    doc = _read_export(path)
    card = parse_card(doc.card, now=None)
    node_id = card.identity.node_id
    own = ctx.card().identity
    if node_id != own.node_id:
        rec = ctx.store().peer_by_id(node_id)
        if rec is None or parse_card(rec.card, now=None).identity != card.identity:
            raise AuditError(
                f"the export is from {card.name}, whose card this home does not trust",
                hint="add the node's card with 'borderlink peers add' first",
            )
    origin = origin_of(node_id)
    cp = open_checkpoint(doc.checkpoint, [Verifier(origin, card.identity.sign_key)])
    entries = [(e.index, e.entry, e.proof) for e in doc.entries]
    if len(entries) > cp.size:
        raise AuditError(f"export has entries beyond the signed checkpoint (size {cp.size})")
    for expected, (index, _, _) in enumerate(entries):
        if index != expected:
            raise AuditError(f"audit entry {expected} is missing from the export (or out of order)")
    if len(entries) < cp.size:
        raise AuditError(f"audit entry {len(entries)} is missing from the export")
    for index, data, proof in entries:
        try:
            decode_entry(data)
            verify_inclusion(leaf_hash(data), index, cp.size, proof, cp.root_hash)
        except AuditError as exc:
            raise AuditError(f"audit entry {index} is damaged: {exc.message}") from exc
    if root_from_leaf_hashes([leaf_hash(d) for _, d, _ in entries]) != cp.root_hash:
        raise AuditError("the exported entries do not make the signed root")
    return {
        "ok": True,
        "node": card.name,
        "entries": len(entries),
        "checkpoint_size": cp.size,
        "root": cp.root_hash.hex(),
    }


@audit_group.command("verify")
@click.option("--file", "file", type=PathArg(dir_okay=False), help="Verify an export instead.")
@json_option
@click.pass_obj
def verify_cmd(ctx: Ctx, file: str | None, as_json: bool) -> None:
    """Recompute the tree and check every entry, checkpoint and cosignature (exit 5 on damage)."""
    result = _verify_file(ctx, file) if file is not None else _verify_local(ctx)

    def human(d: dict[str, Any]) -> str:
        who = f" of {d['node']}" if "node" in d else ""
        line = f"ok: audit log{who} verified: {d['entries']} entries, signed checkpoint at size {d['checkpoint_size']}"
        if d.get("uncovered"):
            line += f" ({d['uncovered']} newer entries not yet in a checkpoint)"
        if d.get("cosigned_by"):
            line += f"; cosigned by {', '.join(d['cosigned_by'])}"
        return line

    emit(result, as_json, human)


def _fresh_checkpoint(ctx: Ctx, fd: int | None, file: str | None) -> str:
    """Ask the running node to sign (and give) its latest checkpoint, or sign it here."""
    from cli.admin_client import call

    try:
        return str(call(ctx.home.admin_socket, "POST", "/v1/audit/checkpoint", text=True))
    except NodeUnreachable:
        from node.audit_store import cli_actor

        identity = ctx.unlock(fd, file)
        ctx.store().sign_checkpoint(identity, cli_actor(), force=True)
        return str(ctx.store().cosigned_note())


@audit_group.command("checkpoint")
@passphrase_options
@click.pass_obj
def checkpoint_cmd(ctx: Ctx, passphrase_fd: int | None, passphrase_file: str | None) -> None:
    """Print the latest signed checkpoint (C2SP signed note with cosignatures), signing a fresh one."""
    click.echo(_fresh_checkpoint(ctx, passphrase_fd, passphrase_file), nl=False)


@audit_group.command("prove")
@click.argument("entry", type=WholeNumber(min=0))
@json_option
@click.pass_obj
def prove_cmd(ctx: Ctx, entry: int, as_json: bool) -> None:
    """Inclusion proof of entry ENTRY (its index) in the latest signed checkpoint."""
    from protocol.merkle import MerkleTree

    store = ctx.store()
    latest = store.latest_checkpoint()
    if latest is None or not 0 <= entry < latest[0]:
        raise UsageError(
            f"entry {entry} is not covered by a signed checkpoint yet",
            hint="run 'borderlink audit checkpoint' first",
        )
    leaves = store.leaf_hashes(latest[0])
    proof = MerkleTree(leaves).inclusion_proof(entry, latest[0])
    data = {
        "index": entry,
        "size": latest[0],
        "leaf_hash": leaves[entry].hex(),
        "proof": [h.hex() for h in proof],
        "checkpoint": latest[2],
    }
    emit(
        data,
        as_json,
        lambda d: "\n".join(
            [
                f"entry {d['index']} of {d['size']}, leaf {d['leaf_hash']}",
                "proof:",
                *[f"  {h}" for h in d["proof"]],
                "checkpoint:",
                d["checkpoint"].rstrip(),
            ]
        ),
    )


@audit_group.command("export")
@click.option("-o", "--output", required=True, type=PathArg(dir_okay=False))
@passphrase_options
@click.pass_obj
def export_cmd(
    ctx: Ctx, output: str, passphrase_fd: int | None, passphrase_file: str | None
) -> None:
    """Write entries, the signed checkpoint and inclusion proofs, verifiable offline elsewhere."""
    from node.audit_store import cli_actor, event
    from protocol.merkle import MerkleTree

    checkpoint = _fresh_checkpoint(ctx, passphrase_fd, passphrase_file)
    store = ctx.store()
    latest = store.latest_checkpoint()
    assert latest is not None
    size = latest[0]
    rows = store.audit_rows()[:size]
    tree = MerkleTree(store.leaf_hashes(size))
    doc = {
        "format": EXPORT_FORMAT,
        "card": ctx.card().armored(),
        "checkpoint": checkpoint,
        "entries": [
            {
                "index": i,
                "entry": base64.b64encode(e).decode(),
                "proof": [base64.b64encode(h).decode() for h in tree.inclusion_proof(i, size)],
            }
            for i, e, _ in rows
        ],
    }
    try:
        Path(output).write_text(json.dumps(doc, indent=1) + "\n")
    except OSError as exc:
        raise BorderlinkError(f"cannot write {output}: {os_reason(exc)}") from exc
    store.audit(event("audit.exported", cli_actor(), outcome=f"size {size}", detail=output))
    note(f"exported {size} audit entries and checkpoint to {output}")
