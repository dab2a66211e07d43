"""Message ids as a person types them: the full 32 hex digits, or a unique prefix of at least
:data:`MIN_PREFIX`, like git's abbreviated commits.

:func:`prefix_of` checks what was typed (a usage error if it is not hex or too short);
:func:`resolve` picks the one id a prefix means among the ids a store found for it (a usage error
naming how many match when it is ambiguous, an error when none does). Pure: the caller reads the
candidates (``Reads.inbox_ids`` / ``Reads.outbox_ids``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from protocol.errors import BorderlinkError, UsageError
from protocol.text import shown

MIN_PREFIX: Final = 4
FULL: Final = 32  # hex digits of a 128-bit message id
_HEX: Final = frozenset("0123456789abcdef")


def prefix_of(text: str) -> str:
    """``text`` as a lowercase hex prefix of a message id, or a usage error in one line."""
    typed = text.strip().lower()
    if not typed or not set(typed) <= _HEX or len(typed) > FULL:
        raise UsageError(
            f"{shown(text)} is not a message id: give its 32 hex digits, or at least the first "
            f"{MIN_PREFIX}"
        )
    if len(typed) < MIN_PREFIX:
        raise UsageError(
            f"message id {shown(text)} is too short: give at least {MIN_PREFIX} hex digits"
        )
    return typed


def resolve(text: str, candidates: Callable[[str], list[bytes]], where: str) -> bytes:
    """The one message id ``text`` means: a full id as it is (whether or not it exists, the
    caller says so in its own words), a prefix by the ids ``candidates(prefix)`` finds in
    ``where`` ("the inbox", "the outbox")."""
    prefix = prefix_of(text)
    if len(prefix) == FULL:
        return bytes.fromhex(prefix)
    found = candidates(prefix)
    if not found:
        raise BorderlinkError(
            f"no message in {where} has an id starting with {prefix}",
            hint=f"list them with 'borderlink {where.split()[-1]}'",
        )
    if len(found) > 1:
        many = f"{len(found)}" if len(found) < 1000 else "1000 or more"
        raise UsageError(
            f"message id {prefix} is ambiguous: {many} messages in {where} start with it; "
            "give more of its characters"
        )
    return found[0]
