"""File arguments: reading an input ('-' is standard input) and writing an output ('-' or none is
standard output), with errors that name the file in our words."""

from __future__ import annotations

import sys

import click

from protocol.errors import BorderlinkError, os_reason


def input_name(path: str) -> str:
    """How errors name a file argument: '-' is standard input."""
    return "standard input" if path == "-" else path


def read_bytes(path: str) -> bytes:
    """A file's bytes, or standard input's for '-': decoding is the parser's job, so a file
    that is not UTF-8 gets the parser's exact error rather than the locale's guess."""
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise BorderlinkError(f"cannot read {path}: {os_reason(exc)}") from exc


def read_text(path: str) -> str:
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BorderlinkError(
            f"cannot read {input_name(path)}: not UTF-8 text (byte {exc.start})"
        ) from exc


def write_output(text: str, output: str | None) -> None:
    """``text`` to the file ``output``, or to standard output for None or '-'."""
    if output is None or output == "-":
        click.echo(text, nl=False)
        return
    try:
        with open(output, "w") as fh:
            fh.write(text)
    except OSError as exc:
        raise BorderlinkError(f"cannot write {output}: {os_reason(exc)}") from exc
