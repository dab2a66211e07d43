"""Retraction: take back a message already sent, either outright or in favour of a correction.

Messages are never edited in place (they are signed and logged), so a correction is a new message
plus a retraction naming it.
"""

from __future__ import annotations

from typing import Literal

from protocol.errors import ValidationError
from protocol.schemas.common import Body, MessageId, Meta, Text, path_of


class Retraction(Body):
    meta: Meta
    retracts: MessageId
    kind: Literal["withdraw", "correct"]
    reason: Text
    replacement: MessageId | None = None

    def check(self, at: str) -> None:
        path = path_of(at, "replacement")
        if self.kind == "correct" and self.replacement is None:
            raise ValidationError(path, "a correction names its replacement message")
        if self.kind == "withdraw" and self.replacement is not None:
            raise ValidationError(path, "a withdrawal has no replacement; use kind 'correct'")
        if self.replacement == self.retracts:
            raise ValidationError(path, "a message cannot replace itself")
