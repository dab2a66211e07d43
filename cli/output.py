"""How commands print: results to stdout (JSON with --json), diagnostics to stderr.

Human-readable output is made from the data with every string escaped first
(``protocol.text.for_terminal``): a peer's or a file's text cannot reach the terminal with control
or bidi characters, whatever the view prints. ``--json`` prints the data exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from cli.options import WholeNumber
from protocol.text import escaped, escaped_lines, for_terminal, json_text_for_terminal

# Top-level values shown as several lines (a signed checkpoint): escaped line by line.
MULTI_LINE = ("checkpoint",)

F = TypeVar("F", bound=Callable[..., Any])

_JSON_SCALARS = (str, int, float, bool, type(None))


def _builtins(data: Any) -> Any:
    """``data`` as plain lists, dicts and scalars. An admin API answer already is (json.loads
    made it), and is returned as it is: only a node operation's Structs need msgspec, whose
    import is a tenth of the start-up time of ``borderlink status`` (issue 12)."""
    if _is_json(data):
        return data
    import msgspec

    return msgspec.to_builtins(data)


def _is_json(value: Any) -> bool:
    kind = type(value)
    if kind in _JSON_SCALARS:
        return True
    if kind is list:
        return all(_is_json(v) for v in value)
    if kind is dict:
        return all(type(k) is str and _is_json(v) for k, v in value.items())
    return False


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(f)


def emit(
    data: Any, as_json: bool, human: Callable[[Any], str], *, exact: Sequence[str] = ("message",)
) -> None:
    """Print ``data`` as JSON (one document, stable key order) or through ``human``, which gets
    it with every string escaped but for the top-level keys in ``exact``: values a view shows
    only with ``protocol.text.json_for_terminal`` (a message body, as ``inbox show`` and
    ``open`` do), which escapes them itself and keeps the JSON exact. A signed note
    (:data:`MULTI_LINE`) is escaped line by line."""
    if as_json:
        import msgspec  # its encoder writes the JSON, exactly as the node's answers are written

        text = msgspec.json.format(msgspec.json.encode(data), indent=2).decode()
        click.echo(json_text_for_terminal(text))  # exact JSON, no raw control or bidi
        return
    raw = _builtins(data)
    safe = for_terminal(raw)
    if isinstance(safe, dict) and isinstance(raw, dict):
        for key, value in raw.items():
            if key in exact:
                safe[key] = value
            elif key in MULTI_LINE and isinstance(value, str):
                safe[key] = escaped_lines(value)
    click.echo(human(safe))


def emit_page(
    page: dict[str, Any], as_json: bool, human: Callable[[Any], str], more: Sequence[str]
) -> None:
    """A page of a listing (``{"items": [...], "next": cursor}``): its rows through ``human``,
    then, if there are more, the command that shows the next page (``more`` is the command as
    typed, without --after)."""
    if as_json:
        emit(page, True, human)
        return
    emit(page["items"], False, human)
    if page["next"] is not None:
        import shlex

        command = shlex.join(["borderlink", *more, "--after", str(page["next"])])
        click.echo(f"more: {escaped(command)}")


def limit_option(default: int | None) -> Callable[[F], F]:
    shown = f"default {default}" if default is not None else "default all"
    return click.option(
        "--limit",
        type=WholeNumber(min=1, max=1000),
        default=default,
        help=f"At most N rows ({shown}); the last line says how to see the next ones.",
    )


def after_option(f: F) -> F:
    return click.option(
        "--after", metavar="CURSOR", help="Start after this cursor (printed after 'more:')."
    )(f)


def note(text: str) -> None:
    """A diagnostic or progress line for a person: stderr, so stdout stays parseable."""
    click.echo(escaped(text), err=True)


def local_time(ts: float | None) -> str:
    """A stored time as the operator's clock shows it, '-' for none."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
