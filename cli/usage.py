"""Command-line mistakes in borderlink's words: click's usage exceptions, translated by their type
and the parameter they carry, never by their message (STYLE.md habit 3).

Every usage error is one line, ``borderlink: usage: WHAT (see 'borderlink CMD --help')``, exit 2.
Messages of ``BadParameter`` are ours: every parameter type borderlink uses (cli/options.py) fails
in our words, and cli/options.Command / Group refuse extra words and unknown subcommands
themselves. A plain ``click.UsageError`` from elsewhere in click would keep its own text.
"""

from __future__ import annotations

import click


def _name(param: click.Parameter | None) -> str:
    if param is None:
        return "a value"
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return param.human_readable_name


def _choices(param: click.Parameter | None) -> str:
    if param is not None and isinstance(param.type, click.Choice):
        return " (one of " + ", ".join(str(c) for c in param.type.choices) + ")"
    return ""


def _command_of(root: click.Group, argv: list[str]) -> tuple[click.Command, str]:
    """The (sub)command ``argv`` reaches and its path, for errors click raises without a context
    (its option parser does): the words before the first option name the commands."""
    command: click.Command = root
    path = ["borderlink"]
    ctx = click.Context(root, info_name="borderlink")
    for word in argv:
        if word.startswith("-") or not isinstance(command, click.Group):
            break
        try:
            sub = command.get_command(ctx, word)
        except click.UsageError:
            break
        if sub is None:
            break
        command, path = sub, [*path, word]
    return command, " ".join(path)


def _option(command: click.Command, name: str) -> click.Option | None:
    for param in command.params:
        if isinstance(param, click.Option) and name in (*param.opts, *param.secondary_opts):
            return param
    return None


def usage_line(exc: click.UsageError, root: click.Group, argv: list[str]) -> str:
    if exc.ctx is not None:
        command, command_path = exc.ctx.command, exc.ctx.command_path
    else:
        command, command_path = _command_of(root, argv)
    if isinstance(exc, click.NoSuchOption):
        what = f"there is no option {exc.option_name}"
        if exc.possibilities:
            what += "; did you mean " + " or ".join(sorted(exc.possibilities)) + "?"
    elif isinstance(exc, click.MissingParameter):
        what = f"{_name(exc.param)} is missing{_choices(exc.param)}"
    elif isinstance(exc, click.BadParameter):
        name = _name(exc.param) if exc.param is not None else exc.param_hint or "a value"
        what = f"{name}: {exc.message}" if exc.param is None else f"{name} {exc.message}"
    elif isinstance(exc, click.BadOptionUsage):
        option = _option(command, exc.option_name)
        if option is not None and option.is_flag:
            what = f"{exc.option_name} takes no value"
        elif option is not None:
            what = f"{exc.option_name} needs a value"
        else:
            what = exc.message
    else:
        what = exc.message
    return f"borderlink: usage: {what} (see '{command_path} --help')"
