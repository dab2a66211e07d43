"""Entry point: a click group whose subcommands are imported only when called.

Keeping imports lazy is what keeps ``borderlink --help`` instant: cryptography, aiohttp and the node
are loaded by the command that needs them, never at start-up. Errors are caught once, here, and
printed as one line (``borderlink: error: ...``) with the exit code the error class carries.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from cli.options import Group, PathArg
from protocol.errors import BorderlinkError, Rejected, UsageError

# name -> (module:attribute, one-line help). Help lives here so listing commands imports nothing.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("cli.init:init_cmd", "Create this node's identity and keystore in --home."),
    "keys": ("cli.keys:keys_group", "Show and export this node's keys and contact card."),
    "peers": ("cli.peers:peers_group", "Add, list and remove trusted peers (contact cards)."),
    "template": ("cli.templates:template_cmd", "Print a filled example message of a type."),
    "validate": ("cli.templates:validate_cmd", "Check a message JSON file against its schema."),
    "seal": ("cli.sealing:seal_cmd", "Sign and encrypt a message file for offline transfer."),
    "open": ("cli.sealing:open_cmd", "Verify and decrypt a sealed file addressed to this node."),
    "serve": ("cli.serve:serve_cmd", "Run the node: peer API, admin socket, delivery."),
    "send": ("cli.send:send_cmd", "Queue a message for delivery by the running node."),
    "outbox": ("cli.send:outbox_cmd", "Delivery status per message and recipient."),
    "inbox": ("cli.inbox:inbox_group", "List, show and acknowledge received messages."),
    "status": ("cli.status:status_cmd", "Node health, peers, queue depths."),
    "audit": ("cli.audit:audit_group", "Read, prove, verify and export the audit log."),
    "dashboard": ("cli.flow:dashboard_cmd", "Print the dashboard's one-time login link."),
    "monitor": ("cli.flow:monitor_cmd", "Watch the region's message flow live in the terminal."),
}


class LazyGroup(Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def listed_in_errors(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)  # in the order a unit works through them

    def lookup(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, _, attr = entry[0].partition(":")
        cmd = getattr(importlib.import_module(module_name), attr)
        assert isinstance(cmd, click.Command)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    envvar="BORDERLINK_HOME",
    type=PathArg(file_okay=False),
    help="Node home directory [env BORDERLINK_HOME; default $XDG_DATA_HOME/borderlink].",
)
@click.version_option(package_name="borderlink", prog_name="borderlink")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """borderlink: signed, encrypted seizure alerts and risk profiles between border-control units."""
    from cli.context import Ctx

    ctx.obj = Ctx.from_option(home)


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="borderlink", standalone_mode=False)
    except BorderlinkError as exc:
        line = f"borderlink: error: {exc.message}"
        if isinstance(exc, UsageError):
            line = f"borderlink: usage: {exc.message}"
        if isinstance(exc, Rejected):
            line = f"borderlink: rejected ({exc.reason}): {exc.message}"
        if exc.hint:
            line += f" (hint: {exc.hint})"
        click.echo(line, err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:  # a group run without its subcommand
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        from cli.usage import usage_line

        click.echo(usage_line(exc, cli, sys.argv[1:] if argv is None else argv), err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("borderlink: aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("borderlink: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # the reader went away (| head): nothing more to say
        sys.stderr.close()
        sys.exit(0)
    except OSError as exc:  # writing the output failed (disk full, closed stdout)
        from protocol.errors import os_reason

        click.echo(f"borderlink: error: cannot write the output: {os_reason(exc)}", err=True)
        sys.exit(3)


if __name__ == "__main__":
    sys.exit(main())
