"""Filled example bodies, one per message type, for ``borderlink template`` and for tests.

They are realistic on purpose (real check digits, real codes, a Western Balkans route) so that a
clerk editing one starts from something that validates and sees what each field is for.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from msgspec.structs import replace

from protocol.schemas import SCHEMA_VERSION, Message
from protocol.schemas.codec import check_type_name
from protocol.schemas.common import Meta
from protocol.schemas.conveyance import Sea
from protocol.schemas.feedback import Feedback
from protocol.schemas.retraction import Retraction
from protocol.schemas.risk import Indicator, RiskProfile
from protocol.schemas.seizure import (
    Commodity,
    Concealment,
    IdDocument,
    Party,
    Quantity,
    Route,
    SeizureAlert,
)

# Example message ids, as the envelope would assign them.
ALERT_ID: Final = "5f2b8c0e9d4a4e6b8a1c3d7e9f0a1b2c"
PROFILE_ID: Final = "0c1d2e3f405162738495a6b7c8d9eaf0"
CORRECTION_ID: Final = "9a8b7c6d5e4f30211203f4e5d6c7b8a9"


_META: Final = Meta(
    schema_version=SCHEMA_VERSION,
    priority="urgent",
    tlp="AMBER",
    handling="H1",
    source_reliability="B",
    info_accuracy=2,
)


def _seizure_alert() -> SeizureAlert:
    return SeizureAlert(
        meta=replace(_META, priority="flash"),
        occurred_at=datetime(2024, 5, 14, 6, 42, tzinfo=UTC),
        place="MEBAR",
        detection="scanner",
        commodity=Commodity(
            category="drugs",
            type="cocaine",
            description="Bricks wrapped in black plastic, stamped with a scorpion logo.",
        ),
        quantity=Quantity(value=412.5, unit="KGM"),
        hs_code="080390",
        concealment=Concealment(
            method="in-cargo",
            description="Hidden among boxes of bananas behind the refrigeration unit.",
        ),
        conveyance=Sea(
            vessel_name="MSC ANNA",
            imo_number="9074729",
            container_number="MWCU6059784",
            bill_of_lading="MEDUEC123456",
        ),
        route=Route(origin="ECGYE", transits=("PAONX",), destination="RSBEG"),
        parties=(
            Party(
                role="driver",
                name="Example Person",
                nationality="RS",
                document=IdDocument(type="passport", number="012345678", issuing_country="RS"),
            ),
            Party(role="consignee", name="Example Fruit Import d.o.o.", nationality="RS"),
        ),
        narrative="Scanner image showed anomalies in the front third of the container.",
    )


def _risk_profile() -> RiskProfile:
    return RiskProfile(
        meta=replace(_META, priority="routine", source_reliability="A"),
        title="Cocaine in banana reefers from Ecuador via Panama",
        category="drugs",
        modality="sea",
        indicators=(
            Indicator(field="route.origin", operator="in", values=("ECGYE", "ECPBO"), weight=40),
            Indicator(field="commodity.hs_code", operator="prefix", values=("0803",), weight=30),
            Indicator(field="quantity.value", operator="gt", values=("18000",), weight=10),
            Indicator(field="consignee.age_days", operator="lt", values=("90",), weight=20),
        ),
        risk_level="high",
        valid_from=datetime(2024, 6, 1, tzinfo=UTC),
        valid_until=datetime(2024, 12, 1, tzinfo=UTC),
        rationale="Three seizures in the region this quarter matched this pattern.",
        feedback_requested=True,
        related_alerts=(ALERT_ID,),
    )


def _feedback() -> Feedback:
    return Feedback(
        meta=replace(_META, priority="routine", tlp="GREEN", in_reply_to=PROFILE_ID),
        refers_to=PROFILE_ID,
        action="seized",
        details="Container selected by the profile; 38 kg found in the reefer unit.",
        seizure_alert=ALERT_ID,
        case_reference="RS-CU-2024-00417",
    )


def _retraction() -> Retraction:
    return Retraction(
        meta=replace(_META, priority="urgent", supersedes=ALERT_ID),
        retracts=ALERT_ID,
        kind="correct",
        reason="Quantity was entered in grams instead of kilograms.",
        replacement=CORRECTION_ID,
    )


_BUILDERS: Final[dict[str, Callable[[], Message]]] = {
    "seizure-alert": _seizure_alert,
    "risk-profile": _risk_profile,
    "feedback": _feedback,
    "retraction": _retraction,
}


def template(type_name: str) -> Message:
    check_type_name(type_name)
    return _BUILDERS[type_name]()
