"""Option types shared by several commands."""

from __future__ import annotations

import os
import re
from typing import Any

import click

from protocol.text import printable, shown

# The message types a person may name (--type), in the order errors list them.
TYPE_NAMES = ["seizure-alert", "risk-profile", "feedback", "retraction"]

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """'90s', '15m', '12h', '3d' -> seconds."""
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise click.BadParameter(f"{shown(text)} is not a duration like 90s, 15m, 12h or 3d")
    return int(m.group(1)) * _UNIT[m.group(2)]


class Duration(click.ParamType[int]):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


def split_names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise click.BadParameter("name at least one peer")
    return names


def _listing(values: Any) -> str:
    return ", ".join(str(v) for v in values)


class OneOf(click.Choice):  # type: ignore[type-arg]
    """click.Choice (help, completion) that refuses in our words, listing every valid value."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value in self.choices:
            return value
        self.fail(f"must be one of {_listing(self.choices)} (not {shown(value)})", param, ctx)


class WholeNumber(click.ParamType[int]):
    """An integer option or argument, optionally bounded, refused in our words."""

    name = "integer"

    def __init__(self, min: int | None = None, max: int | None = None) -> None:
        self.min, self.max = min, max

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                text = str(value).strip()
                if not text.isascii():  # int() also reads Arabic-Indic and other digits
                    raise ValueError(text)
                number = int(text, 10)
            except ValueError:
                self.fail(f"must be a whole number (not {shown(value)})", param, ctx)
        if (self.min is not None and number < self.min) or (
            self.max is not None and number > self.max
        ):
            if self.max is None:
                bounds = f"at least {self.min}"
            elif self.min is None:
                bounds = f"at most {self.max}"
            else:
                bounds = f"from {self.min} to {self.max}"
            self.fail(f"must be {bounds} (not {number})", param, ctx)
        return number


class Group(click.Group):
    """A command group whose unknown subcommand is refused in our words, listing the real ones."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = self.lookup(ctx, cmd_name)
        if cmd is None and not ctx.resilient_parsing:
            known = ", ".join(self.listed_in_errors(ctx))
            raise click.UsageError(
                f"there is no command {shown(cmd_name)}; the commands are {known}", ctx
            )
        return cmd

    def lookup(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name)

    def listed_in_errors(self, ctx: click.Context) -> list[str]:
        return self.list_commands(ctx)


class PathArg(click.Path):
    """A file path (``dir_okay=False``) or directory path (``file_okay=False``) that need not
    exist yet, refused in our words when it names the other kind."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = os.fspath(value)
        if not text:
            self.fail("must not be empty", param, ctx)
        quoted = "'" + printable(text, limit=4096) + "'"
        if not self.dir_okay and os.path.isdir(text):
            self.fail(f"{quoted} is a directory; give a file name", param, ctx)
        if not self.file_okay and os.path.exists(text) and not os.path.isdir(text):
            self.fail(f"{quoted} is not a directory", param, ctx)
        return text


class Command(click.Command):
    """A command that refuses words it does not take in our words, naming the first one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        allowed, ctx.allow_extra_args = ctx.allow_extra_args, True
        rest = super().parse_args(ctx, args)
        ctx.allow_extra_args = allowed
        if ctx.args and not allowed:
            raise click.UsageError(f"{shown(ctx.args[0])} is more than this command takes", ctx)
        return rest


Group.command_class = Command
