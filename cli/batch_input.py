"""The bodies of a batch send, read and checked here: each FILE is one JSON document, and ``-`` is
standard input as JSON lines, one body per line.

Every body is checked against the message type before the node is called (as ``validate`` does),
so the first bad one is refused by its file and line, and nothing is queued. Blank lines are
skipped (a trailing newline, a gap between records) but counted: line numbers are the editor's.
Standard input whose first line is no JSON value by itself but which holds several lines is one
document spread over them, as ``borderlink template`` prints it: that is what ``-`` read before
there were batches, and a JSON line is always a whole value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import NamedTuple

import msgspec

from cli.files import read_bytes
from node.batches import check_batch
from protocol.errors import UsageError, ValidationError
from protocol.schemas import decode_body

STDIN = "-"
_BOM = b"\xef\xbb\xbf"


class Piece(NamedTuple):
    """One body as read, and how an error names it: a file, or a line of standard input."""

    data: bytes
    where: str
    line: int | None = None  # its line number, for a JSON line


def pieces(files: Sequence[str], read: Callable[[str], bytes] = read_bytes) -> list[Piece]:
    """Every body of the FILE arguments, in order; the batch's bounds are checked on them."""
    if list(files).count(STDIN) > 1:
        raise UsageError("'-' (standard input) can be given once")
    out: list[Piece] = []
    for name in files:
        data = read(name)
        out.extend(json_lines(data) if name == STDIN else [Piece(data, name)])
    check_batch(len(out), sum(len(p.data) for p in out))
    return out


def json_lines(data: bytes, name: str = "standard input") -> list[Piece]:
    """The non-blank lines of ``data``, stripped and numbered from 1; one piece for a document
    spread over several lines (see the module docstring), or for an input with no line at all
    (which the check then calls empty)."""
    lines = [(n, ln.strip()) for n, ln in enumerate(data.split(b"\n"), 1) if ln.strip()]
    if not lines or (len(lines) > 1 and not _whole_value(lines[0][1])):
        return [Piece(data, name)]
    return [Piece(ln, f"{name} line {n}", n) for n, ln in lines]


def _whole_value(line: bytes) -> bool:
    try:
        msgspec.json.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return False
    return True


def checked(type_name: str, found: Sequence[Piece]) -> list[bytes]:
    """The bodies, each checked as a ``type_name`` message; the first bad one is refused with
    one line naming it: ``alerts.jsonl line 7: meta.tlp: must be one of ...``."""
    for piece in found:
        try:
            decode_body(type_name, piece.data, what=piece.where)
        except ValidationError as exc:
            raise ValidationError("", _said(piece, exc), kind=exc.kind) from exc
    return [p.data for p in found]


def _said(piece: Piece, exc: ValidationError) -> str:
    if exc.path:
        return f"{piece.where}: {exc.message}"
    if piece.line is not None and exc.kind == "syntax" and not piece.data.startswith(_BOM):
        # The parser counts lines within the one line it was given: say the column only.
        try:
            json.loads(piece.data.decode("utf-8"))
        except json.JSONDecodeError as err:
            return f"{piece.where} is not valid JSON (column {err.colno})"
        except ValueError:
            pass
    return exc.message
