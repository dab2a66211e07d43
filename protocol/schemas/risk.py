"""The risk profile: a set of weighted indicators another unit can load into its targeting.

Operators are deliberately plain comparisons: no regular expressions, so a profile from a peer can
never make a receiving node spend unbounded time matching (ReDoS).
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

import msgspec

from protocol import validators
from protocol.errors import ValidationError
from protocol.schemas.common import (
    FIELD_PATH_PATTERN,
    Body,
    Category,
    Line,
    MessageId,
    Meta,
    Modality,
    Text,
    UtcTime,
    path_of,
)

# Plain ASCII decimals only, so every receiver parses the threshold the same way.
_NUMBER: Final = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,15})?")

Operator = Literal["eq", "ne", "contains", "prefix", "in", "gt", "lt"]


class Indicator(Body):
    """One test on a declaration field; ``in`` takes a list, every other operator one value."""

    field: Annotated[str, msgspec.Meta(max_length=64, pattern=FIELD_PATH_PATTERN)]
    operator: Operator
    values: Annotated[tuple[Line, ...], msgspec.Meta(min_length=1, max_length=50)]
    weight: Annotated[int, msgspec.Meta(ge=1, le=100)]  # contribution to the score, in percent

    def check(self, at: str) -> None:
        if self.operator != "in" and len(self.values) != 1:
            raise ValidationError(
                path_of(at, "values"), f"operator {self.operator!r} takes exactly one value"
            )
        if self.operator in ("gt", "lt") and _NUMBER.fullmatch(self.values[0]) is None:
            raise ValidationError(
                f"{path_of(at, 'values')}[0]",
                f"operator {self.operator!r} takes a decimal number such as 18000 or 2.5",
            )


class RiskProfile(Body):
    meta: Meta
    title: Line
    category: Category
    modality: Modality
    indicators: Annotated[tuple[Indicator, ...], msgspec.Meta(min_length=1, max_length=50)]
    risk_level: Literal["low", "medium", "high", "critical"]
    valid_from: UtcTime
    valid_until: UtcTime
    rationale: Text
    feedback_requested: bool
    related_alerts: Annotated[tuple[MessageId, ...], msgspec.Meta(max_length=100)] = ()

    def check(self, at: str) -> None:
        for i, indicator in enumerate(self.indicators):
            indicator.check(f"{path_of(at, 'indicators')}[{i}]")
        validators.check_utc(self.valid_from, path_of(at, "valid_from"))
        validators.check_utc(self.valid_until, path_of(at, "valid_until"))
        if self.valid_until <= self.valid_from:
            raise ValidationError(path_of(at, "valid_until"), "must be later than valid_from")
