"""Feedback: what a receiving unit did with an alert or profile (CENcomm feedback template).

Feedback is what turns a risk profile from a guess into a measured one, so it is kept small enough
to send from a control lane.
"""

from __future__ import annotations

from typing import Literal

from protocol.errors import ValidationError
from protocol.schemas.common import Body, Code, MessageId, Meta, Text, path_of


class Feedback(Body):
    meta: Meta
    refers_to: MessageId
    action: Literal["controlled", "seized", "nothing-found", "not-applicable"]
    details: Text | None = None
    seizure_alert: MessageId | None = None  # the SeizureAlert this unit sent about the seizure
    case_reference: Code | None = None  # the national case or seizure record number

    def check(self, at: str) -> None:
        if self.action != "seized":
            for name in ("seizure_alert", "case_reference"):
                if getattr(self, name) is not None:
                    raise ValidationError(
                        path_of(at, name), "a seizure reference needs action 'seized'"
                    )
