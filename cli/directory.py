"""``borderlink peers publish-directory`` / ``import-directory``: a coordinator vouches for its units
in a signed directory; a unit that verified its coordinator trusts them as introduced by it."""

from __future__ import annotations

from typing import Any

import click
import msgspec

from cli.context import Ctx
from cli.files import force_option, read_text, refuse_existing_output, write_output
from cli.options import Command, PathArg, WholeNumber
from cli.output import emit, json_option, note
from cli.passphrase import passphrase_options
from protocol.errors import UsageError


def _import_lines(d: dict[str, Any]) -> str:
    coordinator = d["coordinator"]
    lines = [f"introduced {name} (introduced by {coordinator})" for name in d["introduced"]]
    lines += [f"upgraded {name} (TOFU -> introduced by {coordinator})" for name in d["upgraded"]]
    lines += [f"updated {name} (its newer card)" for name in d["updated"]]
    lines += [f"kept {entry}" for entry in d["kept"]]
    lines += [f"BLOCKED {entry}" for entry in d["blocked"]]
    lines += [f"skipped {entry}" for entry in d["skipped"]]
    counts = ", ".join(
        f"{len(d[key])} {key}"
        for key in ("introduced", "upgraded", "updated", "kept", "blocked", "skipped")
    )
    lines.append(f"imported directory seq {d['seq']} of {coordinator}: {counts}")
    return "\n".join(lines)


@click.command("import-directory", cls=Command)
@click.argument("file", metavar="[FILE]", required=False)
@click.option(
    "--from",
    "from_peer",
    metavar="NAME",
    help="Fetch the directory from this coordinator's node (this node must be running).",
)
@json_option
@click.pass_obj
def import_directory_cmd(ctx: Ctx, file: str | None, from_peer: str | None, as_json: bool) -> None:
    """Trust the units a verified coordinator lists in its signed directory (FILE, - for stdin,
    or --from NAME) as introduced by it. Peers verified by fingerprint and revoked peers are
    kept as they are; a known name under another key is blocked."""
    from node.directory_ops import IMPORT_DIRECTORY, ImportDirectory

    if (file is None) == (from_peer is None):
        raise UsageError("give exactly one of FILE (a directory file, - for stdin) or --from NAME")
    text = read_text(file) if file is not None else None
    imported = ctx.run(
        IMPORT_DIRECTORY, ImportDirectory(text=text, from_peer=from_peer, actor=ctx.actor())
    )
    emit(msgspec.to_builtins(imported), as_json, _import_lines)


@click.command("publish-directory", cls=Command)
@click.argument("names", metavar="[NAME]...", nargs=-1)
@click.option(
    "-o", "--output", type=PathArg(dir_okay=False), help="File to write (default stdout)."
)
@force_option
@click.option(
    "--valid-days",
    type=WholeNumber(min=1, max=365),
    default=30,
    show_default=True,
    help="Days the directory is valid from now.",
)
@passphrase_options
@json_option
@click.pass_obj
def publish_directory_cmd(
    ctx: Ctx,
    names: tuple[str, ...],
    output: str | None,
    valid_days: int,
    passphrase_fd: int | None,
    passphrase_file: str | None,
    as_json: bool,
) -> None:
    """Sign a directory of the units this coordinator verified by fingerprint (all, or the NAMEs
    given), under the next sequence number; the node serves it at GET /v1/directory."""
    from node.directory_ops import PUBLISH_DIRECTORY, PublishDirectory

    refuse_existing_output(output)  # before the passphrase is asked for nothing
    # Signing is a custodian's act, node running or not: the passphrase is asked either way.
    identity = ctx.unlock(passphrase_fd, passphrase_file)
    published = ctx.run(
        PUBLISH_DIRECTORY,
        PublishDirectory(names=list(names) or None, valid_days=valid_days, actor=ctx.actor()),
        identity=identity,
    )
    for line in published.left_out:
        note(f"left out {line}")
    if as_json:
        if output is not None and output != "-":
            write_output(published.text, output)
        emit(msgspec.to_builtins(published), True, str)
        return
    write_output(published.text, output)
    note(
        f"published directory seq {published.seq} listing {published.units} unit(s); "
        "served at GET /v1/directory while the node runs"
    )
