"""The seizure alert: what was found, where, how it travelled and, optionally, who carried it.

Modelled on the WCO CENcomm seizure template. The ``parties`` section is the only personal data in
any body, kept in one place so ``strip_personal_data`` can drop it before a message leaves a unit
that may not share it.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from protocol import validators
from protocol.errors import ValidationError
from protocol.schemas.codes import REC20_COUNT_UNITS, REC20_MEASURE_UNITS
from protocol.schemas.common import (
    SLUG_PATTERN,
    Body,
    Category,
    Code,
    CountryCode,
    Line,
    Meta,
    PlaceCode,
    Text,
    UtcTime,
    path_of,
)
from protocol.schemas.conveyance import AnyConveyance

Detection = Literal[
    "scanner",  # X-ray / non-intrusive inspection
    "sniffer-dog",
    "document-check",
    "risk-profile",
    "intelligence",
    "physical-search",
    "random",
    "other",
]

ConcealmentMethod = Literal[
    "none",
    "in-cargo",  # mixed into or hidden among legitimate goods
    "false-declaration",  # declared as something else
    "structure",  # built into the vehicle, container or packaging (false walls, floors, tanks)
    "luggage",
    "on-body",
    "in-body",
    "postal-item",
    "other",
]


class Commodity(Body):
    category: Category
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=SLUG_PATTERN)]
    description: Text | None = None


class Quantity(Body):
    value: Annotated[float, msgspec.Meta(gt=0, le=1e9)]
    unit: Annotated[str, msgspec.Meta(min_length=2, max_length=3)]  # UN/ECE Rec 20

    def check(self, at: str) -> None:
        if self.unit in REC20_COUNT_UNITS:
            if not self.value.is_integer():
                raise ValidationError(
                    path_of(at, "value"), f"a count in {self.unit} is a whole number"
                )
        elif self.unit not in REC20_MEASURE_UNITS:
            units = ", ".join(sorted(REC20_MEASURE_UNITS | REC20_COUNT_UNITS))
            raise ValidationError(
                path_of(at, "unit"),
                f"{self.unit!r} is not an accepted UN/ECE Rec 20 unit ({units})",
            )


class Concealment(Body):
    method: ConcealmentMethod
    description: Text | None = None


class Route(Body):
    """Each point is a UN/LOCODE, or an IATA airport code for air legs."""

    origin: PlaceCode
    destination: PlaceCode
    transits: Annotated[tuple[PlaceCode, ...], msgspec.Meta(max_length=16)] = ()

    def check(self, at: str) -> None:
        validators.check_place(self.origin, path_of(at, "origin"))
        for i, point in enumerate(self.transits):
            validators.check_place(point, f"{path_of(at, 'transits')}[{i}]")
        validators.check_place(self.destination, path_of(at, "destination"))


class IdDocument(Body):
    type: Literal["passport", "id-card", "driving-licence", "residence-permit", "other"]
    number: Code
    issuing_country: CountryCode

    def check(self, at: str) -> None:
        validators.check_country(self.issuing_country, path_of(at, "issuing_country"))


class Party(Body):
    """A person or company involved: personal data, dropped by ``strip_personal_data``."""

    role: Literal[
        "driver", "consignor", "consignee", "passenger", "courier", "carrier", "owner", "other"
    ]
    name: Line
    nationality: CountryCode | None = None
    document: IdDocument | None = None

    def check(self, at: str) -> None:
        if self.nationality is not None:
            validators.check_country(self.nationality, path_of(at, "nationality"))
        if self.document is not None:
            self.document.check(path_of(at, "document"))


class SeizureAlert(Body):
    meta: Meta
    occurred_at: UtcTime
    place: PlaceCode  # UN/LOCODE of the seizure (an IATA code is accepted for airports)
    detection: Detection
    commodity: Commodity
    quantity: Quantity
    concealment: Concealment
    conveyance: AnyConveyance
    hs_code: Annotated[str, msgspec.Meta(min_length=1, max_length=10)] | None = None
    route: Route | None = None
    parties: Annotated[tuple[Party, ...], msgspec.Meta(max_length=50)] | None = None
    narrative: Text | None = None

    def check(self, at: str) -> None:
        validators.check_utc(self.occurred_at, path_of(at, "occurred_at"))
        validators.check_place(self.place, path_of(at, "place"))
        self.quantity.check(path_of(at, "quantity"))
        if self.hs_code is not None:
            validators.check_hs_code(self.hs_code, path_of(at, "hs_code"))
        self.conveyance.check(path_of(at, "conveyance"))
        if self.route is not None:
            self.route.check(path_of(at, "route"))
        for i, party in enumerate(self.parties or ()):
            party.check(f"{path_of(at, 'parties')}[{i}]")
