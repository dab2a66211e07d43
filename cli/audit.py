"""``borderlink audit``: read, prove, verify and export this node's tamper-evident audit log.

Reading, proving and verifying are the node's operations, run by the node if it is up, else here on
its store; signing a fresh checkpoint asks the running node, or unlocks the keystore when it is
down. Verifying an export another unit sent is done here (protocol/audit_export.py): only the
question whose card this home trusts goes to the node.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import msgspec

from cli.context import Ctx
from cli.files import force_option, refuse_existing_output, write_output
from cli.options import Group, PathArg, WholeNumber
from cli.output import after_option, emit, emit_page, json_option, limit_option, note
from cli.passphrase import passphrase_options
from protocol.errors import BorderlinkError, NodeUnreachable, UsageError, os_reason


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


def _log_human(rows: list[dict[str, Any]]) -> str:
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


@audit_group.command("log")
@click.option("--since", help="Only entries newer than this: 2h, 3d, or 2026-11-24T10:00.")
@click.option("--kind", help="Only this kind (e.g. message.rejected) or prefix (message.).")
@click.option("--message", "message_id", help="Only entries about this message id.")
@limit_option(None)
@after_option
@json_option
@click.pass_obj
def log_cmd(
    ctx: Ctx,
    since: str | None,
    kind: str | None,
    message_id: str | None,
    limit: int | None,
    after: str | None,
    as_json: bool,
) -> None:
    """Show audit entries, oldest first (all that match, or a page of --limit N)."""
    from node.operations import LIST_AUDIT, ListAudit

    since_ms = _since(since) * 1000 if since else None
    request = ListAudit(
        since_ms=since_ms,
        kind=kind or None,
        message_id=message_id or None,
        limit=limit,
        after=after,
    )
    more = ["audit", "log"]
    for option, value in (("--since", since), ("--kind", kind), ("--message", message_id)):
        if value:
            more += [option, value]
    if limit is not None:
        more += ["--limit", str(limit)]
    emit_page(msgspec.to_builtins(ctx.run(LIST_AUDIT, request)), as_json, _log_human, more)


def _verify_file(ctx: Ctx, path: str) -> dict[str, Any]:
    from node.operations import FIND_SIGNER, FindSigner
    from protocol.audit_export import read_export, verify_export

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BorderlinkError(f"cannot read audit export {path}: {os_reason(exc)}") from exc
    export = read_export(data, path)
    signer = ctx.run(FIND_SIGNER, FindSigner(card=export.card))
    report = verify_export(export, signer.identity)
    return {
        "ok": True,
        "node": signer.name,
        "entries": report.entries,
        "checkpoint_size": report.checkpoint_size,
        "root": report.root.hex(),
    }


def _verify_human(d: dict[str, Any]) -> str:
    who = f" of {d['node']}" if "node" in d else ""
    line = f"ok: audit log{who} verified: {d['entries']} entries, signed checkpoint at size {d['checkpoint_size']}"
    if d.get("uncovered"):
        line += f" ({d['uncovered']} newer entries not yet in a checkpoint)"
    if d.get("cosigned_by"):
        line += f"; cosigned by {', '.join(d['cosigned_by'])}"
    return line


@audit_group.command("verify")
@click.option("--file", "file", type=PathArg(dir_okay=False), help="Verify an export instead.")
@json_option
@click.pass_obj
def verify_cmd(ctx: Ctx, file: str | None, as_json: bool) -> None:
    """Recompute the tree and check every entry, checkpoint and cosignature (exit 5 on damage)."""
    from node.operations import VERIFY_LOG, VerifyLog

    if file is not None:
        result = _verify_file(ctx, file)
    else:
        result = msgspec.to_builtins(ctx.run(VERIFY_LOG, VerifyLog()))
    emit(result, as_json, _verify_human)


def _fresh_checkpoint(ctx: Ctx, fd: int | None, file: str | None) -> str:
    """Ask the running node to sign (and give) its latest checkpoint, or sign it here."""
    from cli.admin_client import call

    try:
        return str(call(ctx.home.admin_socket, "POST", "/v1/audit/checkpoint", text=True))
    except NodeUnreachable:
        from node.local import checkpoint

        return checkpoint(ctx.home, ctx.unlock(fd, file), ctx.actor())


@audit_group.command("checkpoint")
@passphrase_options
@click.pass_obj
def checkpoint_cmd(ctx: Ctx, passphrase_fd: int | None, passphrase_file: str | None) -> None:
    """Print the latest signed checkpoint (C2SP signed note with cosignatures), signing a fresh one."""
    click.echo(_fresh_checkpoint(ctx, passphrase_fd, passphrase_file), nl=False)


def _proof_human(d: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"entry {d['index']} of {d['size']}, leaf {d['leaf_hash']}",
            "proof:",
            *[f"  {h}" for h in d["proof"]],
            "checkpoint:",
            d["checkpoint"].rstrip(),
        ]
    )


@audit_group.command("prove")
@click.argument("entry", type=WholeNumber(min=0))
@json_option
@click.pass_obj
def prove_cmd(ctx: Ctx, entry: int, as_json: bool) -> None:
    """Inclusion proof of entry ENTRY (its index) in the latest signed checkpoint."""
    from node.operations import PROVE_ENTRY, ProveEntry

    emit(msgspec.to_builtins(ctx.run(PROVE_ENTRY, ProveEntry(index=entry))), as_json, _proof_human)


@audit_group.command("export")
@click.option("-o", "--output", required=True, type=PathArg(dir_okay=False))
@force_option
@passphrase_options
@click.pass_obj
def export_cmd(
    ctx: Ctx, output: str, passphrase_fd: int | None, passphrase_file: str | None
) -> None:
    """Write entries, the signed checkpoint and inclusion proofs, verifiable offline elsewhere."""
    from node.operations import EXPORT_LOG, NOTE_EXPORT, ExportLog, NoteExport

    refuse_existing_output(output)  # before a checkpoint is signed for nothing
    _fresh_checkpoint(ctx, passphrase_fd, passphrase_file)
    exported = ctx.run(EXPORT_LOG, ExportLog())
    write_output(exported.text, output)
    ctx.run(NOTE_EXPORT, NoteExport(size=exported.size, destination=output, actor=ctx.actor()))
    note(f"exported {exported.size} audit entries and checkpoint to {output}")
