"""Text from outside (a peer, a file) made safe to show: on a terminal, in a log line, in an error.

Control characters (C0, DEL, C1), the Unicode bidi controls and isolates, and the line and
paragraph separators are written as ``\\uXXXX`` escapes, so a value cannot move the cursor,
clear the screen, forge a log line or reorder what a person reads. :func:`escaped` is the one
rule; :func:`printable`, :func:`shown`, :func:`for_terminal` (what the CLI's human output is made
from) and :func:`json_for_terminal` (a message body as JSON) apply it.
"""

from __future__ import annotations

import json
import re
from typing import Final

_MAX_SHOWN: Final = 60
# DEL, C1, the line and paragraph separators and every Unicode format character (category Cf):
# the bidi controls and isolates, and the invisible ones (zero-width space and joiners, word
# joiner, BOM, soft hyphen, tag characters, ...) that make two different names look the same
# (found by an attack review: they passed the page's and the terminal's escaping), and the other
# invisible ones a second review found: the combining grapheme joiner, the Hangul fillers and
# the variation selectors.
_UNSAFE_OTHERS: Final = (
    "\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"
    # Invisible but not Cf: the combining grapheme joiner, Hangul fillers, variation selectors.
    "\u034f\u115f\u1160\u3164\uffa0\ufe00-\ufe0f\U000e0100-\U000e01ef"
)
_UNSAFE: Final = re.compile(f"[\x00-\x1f{_UNSAFE_OTHERS}]")
# The same less the newline, which json.dumps writes only between values.
_UNSAFE_IN_JSON: Final = re.compile(f"[\x00-\x09\x0b-\x1f{_UNSAFE_OTHERS}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    if code > 0xFFFF:  # as JSON writes it: a surrogate pair
        high, low = divmod(code - 0x10000, 0x400)
        return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"
    return f"\\u{code:04x}"


def escaped(text: str, limit: int | None = None) -> str:
    """Text from outside with every unsafe character escaped; with ``limit``, at most that many
    characters of the result, a cut one ending in an ellipsis (never inside an escape)."""
    out = _UNSAFE.sub(_escape, text)
    if limit is None or len(out) <= limit:
        return out
    pieces, room = [], limit - 1
    for char in text:
        piece = _UNSAFE.sub(_escape, char)
        if len(piece) > room:
            break
        pieces.append(piece)
        room -= len(piece)
    return "".join(pieces) + "\u2026"


def escaped_lines(text: str) -> str:
    """Multi-line text from outside (a signed note): each line escaped, the newlines kept."""
    return "\n".join(escaped(line) for line in text.split("\n"))


def for_terminal(value: object) -> object:
    """JSON-like data (what an answer decodes to) with every string in it, keys too, escaped:
    what a human-readable view is made from, so no field can reach the terminal raw."""
    if isinstance(value, str):
        return escaped(value)
    if isinstance(value, dict):
        return {for_terminal(k): for_terminal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [for_terminal(v) for v in value]
    return value


def printable(text: str, limit: int = _MAX_SHOWN) -> str:
    """Text from outside, safe for a terminal or a log line: unsafe characters escaped, cut."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return _UNSAFE.sub(_escape, text)


def shown(value: object) -> str:
    """A value from outside, as a person reads it: text quoted (``'PURPLE'``), other values as
    JSON writes them (``null``, ``true``, ``12``), bytes by their length."""
    if isinstance(value, str):
        return "'" + printable(value) + "'"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float):
        return printable(str(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return f"{len(value)} bytes"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def json_text_for_terminal(text: str) -> str:
    """JSON text (as an encoder wrote it) with the unsafe characters in its strings written as
    \\u escapes: the same JSON value, exactly, that cannot move the cursor or reorder what a
    terminal shows (``--json`` output, ``monitor --json`` lines)."""
    return _UNSAFE_IN_JSON.sub(_escape, text)


def json_for_terminal(value: object) -> str:
    """Indented JSON of a message for a person: non-ASCII text kept readable, but control, bidi
    and separator characters written as JSON \\u escapes, so the output is still exact JSON
    and a peer's text cannot move the cursor or reorder what the terminal shows."""
    text = json.dumps(value, indent=2, ensure_ascii=False)  # escapes C0 inside strings
    return _UNSAFE_IN_JSON.sub(_escape, text)
