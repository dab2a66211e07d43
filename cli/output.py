"""How commands print: results to stdout (JSON with --json), diagnostics to stderr."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
import msgspec

F = TypeVar("F", bound=Callable[..., Any])


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(f)


def emit(data: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    """Print ``data`` as JSON (one document, stable key order) or through ``human``."""
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(data), indent=2).decode())
    else:
        click.echo(human(data))


def note(text: str) -> None:
    """A diagnostic or progress line for a person: stderr, so stdout stays parseable."""
    click.echo(text, err=True)


def local_time(ts: float | None) -> str:
    """A stored time as the operator's clock shows it, '-' for none."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
