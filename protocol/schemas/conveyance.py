"""How the goods travelled, one Struct per mode, told apart by the ``mode`` tag on the wire.

Identifiers that carry a check digit (container, IMO, air waybill, UIC wagon, UPU S10) are checked
here, so a mistyped number is caught at the sending unit instead of sending a colleague after the
wrong box.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from protocol import validators
from protocol.schemas.common import Body, Code, CountryCode, Line, path_of


class Conveyance(Body, tag_field="mode"):
    """Base of the modes; ``check`` validates the standard identifiers of each."""

    def check(self, at: str) -> None:
        """Modes without standard identifiers have nothing beyond the schema to check."""


class Sea(Conveyance, tag="sea"):
    vessel_name: Line
    imo_number: Code | None = None  # 7 digits, no "IMO" prefix
    container_number: Code | None = None  # ISO 6346, no spaces: MWCU6059784
    bill_of_lading: Code | None = None

    def check(self, at: str) -> None:
        if self.imo_number is not None:
            validators.check_imo_number(self.imo_number, path_of(at, "imo_number"))
        if self.container_number is not None:
            validators.check_container_number(
                self.container_number, path_of(at, "container_number")
            )


class Air(Conveyance, tag="air"):
    flight: Code  # IATA designator: "JU 680" or "JU680"
    flight_date: date
    air_waybill: Code | None = None  # "020-12345675"

    def check(self, at: str) -> None:
        validators.check_flight_designator(self.flight, path_of(at, "flight"))
        if self.air_waybill is not None:
            validators.check_air_waybill(self.air_waybill, path_of(at, "air_waybill"))


class Road(Conveyance, tag="road"):
    tractor_plate: Code
    country: CountryCode  # where the tractor is registered
    trailer_plate: Code | None = None

    def check(self, at: str) -> None:
        validators.check_country(self.country, path_of(at, "country"))


class Rail(Conveyance, tag="rail"):
    train_number: Code
    wagon_number: Code | None = None  # UIC, 12 digits without spaces or dash

    def check(self, at: str) -> None:
        if self.wagon_number is not None:
            validators.check_wagon_number(self.wagon_number, path_of(at, "wagon_number"))


class Postal(Conveyance, tag="postal"):
    tracking_number: Code
    service: Literal["post", "express"]

    def check(self, at: str) -> None:
        # Posts number items in UPU S10; express carriers use their own formats, left unchecked.
        if self.service == "post":
            validators.check_s10_tracking(self.tracking_number, path_of(at, "tracking_number"))


AnyConveyance = Sea | Air | Road | Rail | Postal
