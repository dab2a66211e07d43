"""Seizure alert rules: each field refused with the path and rule a clerk would see."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from protocol.schemas import SeizureAlert, decode_body, encode_body, template
from protocol.schemas.conveyance import Air, Postal, Rail, Road, Sea
from tests.unit.protocol.test_schemas import body, edit, rule_for

T = "seizure-alert"


def accepts(data: Any) -> SeizureAlert:
    msg = decode_body(T, msgspec.json.encode(data))
    assert isinstance(msg, SeizureAlert)
    return msg


@pytest.mark.parametrize(
    ("path", "value", "where", "rule"),
    [
        (
            "occurred_at",
            "2024-05-14T06:42:00",
            "occurred_at",
            "must be in UTC (end in Z)",
        ),
        (
            "occurred_at",
            "2024-05-14T08:42:00+02:00",
            "occurred_at",
            "time must be in UTC (end in Z)",
        ),
        ("occurred_at", "yesterday", "occurred_at", "must be a time such as 2026-12-02T08:30:00Z"),
        ("place", "QQBAR", "place", "UN/LOCODE country 'QQ' is not an ISO 3166-1 code"),
        ("place", "ME BAR", "place", "must be at most 5 characters long (this is 6)"),
        (
            "detection",
            "x-ray",
            "detection",
            "must be one of scanner, sniffer-dog, document-check, risk-profile, intelligence, physical-search, random, other (not 'x-ray')",
        ),
        (
            "commodity.category",
            "weapons",
            "commodity.category",
            "must be one of drugs, environment, ipr-health-safety, revenue, security, cultural-heritage (not 'weapons')",
        ),
        (
            "commodity.type",
            "Cocaine",
            "commodity.type",
            "must be lowercase letters, digits, spaces and hyphens",
        ),
        (
            "commodity.description",
            "a\x00b",
            "commodity.description",
            "must be text without control characters other than tab and newline",
        ),
        ("quantity.value", 0, "quantity.value", "must be greater than 0 (this is 0)"),
        ("quantity.value", -3, "quantity.value", "must be greater than 0 (this is -3)"),
        (
            "quantity.value",
            2e9,
            "quantity.value",
            "must be at most 1000000000 (this is 2000000000)",
        ),
        ("quantity.value", "412.5", "quantity.value", "must be a number, not text"),
        (
            "quantity.unit",
            "PCE",
            "quantity.unit",
            "'PCE' is not an accepted UN/ECE Rec 20 unit (C62, DZN, GRM, H87, KGM, LTR, MGM, MIL, MLT, "
            "MTK, MTQ, MTR, NAR, NPR, PR, SET, TNE)",
        ),
        (
            "quantity.unit",
            "kgm",
            "quantity.unit",
            "'kgm' is not an accepted UN/ECE Rec 20 unit (C62, DZN, GRM, H87, KGM, LTR, MGM, MIL, MLT, "
            "MTK, MTQ, MTR, NAR, NPR, PR, SET, TNE)",
        ),
        ("hs_code", "7701", "hs_code", "HS chapter 77 does not exist (01-97, not 77)"),
        ("hs_code", "08039", "hs_code", "'08039' is not an HS code (4, 6, 8 or 10 digits)"),
        (
            "concealment.method",
            "hidden",
            "concealment.method",
            "must be one of none, in-cargo, false-declaration, structure, luggage, on-body, in-body, postal-item, other (not 'hidden')",
        ),
        (
            "route.origin",
            "GYEX",
            "route.origin",
            "'GYEX' is not a UN/LOCODE (5) or IATA airport code (3)",
        ),
        (
            "route.transits.0",
            "PAON1",
            "route.transits[0]",
            "'PAON1' is not a UN/LOCODE (country code + 3 letters or digits 2-9)",
        ),
        (
            "route.destination",
            "QQBEG",
            "route.destination",
            "UN/LOCODE country 'QQ' is not an ISO 3166-1 code",
        ),
        (
            "route.transits",
            ["PAONX"] * 17,
            "route.transits",
            "must hold at most 16 items (this holds 17)",
        ),
        (
            "parties.1.nationality",
            "YU",
            "parties[1].nationality",
            "'YU' is not an ISO 3166-1 alpha-2 country code",
        ),
        (
            "parties.0.document.issuing_country",
            "SRB",
            "parties[0].document.issuing_country",
            "must be at most 2 characters long (this is 3)",
        ),
        (
            "parties.0.document.issuing_country",
            "XX",
            "parties[0].document.issuing_country",
            "'XX' is not an ISO 3166-1 alpha-2 country code",
        ),
        (
            "parties.0.document.type",
            "visa",
            "parties[0].document.type",
            "must be one of passport, id-card, driving-licence, residence-permit, other (not 'visa')",
        ),
        (
            "parties.0.role",
            "smuggler",
            "parties[0].role",
            "must be one of driver, consignor, consignee, passenger, courier, carrier, owner, other (not 'smuggler')",
        ),
        (
            "parties.1.name",
            "Evil\x1b[2JCorp",
            "parties[1].name",
            "must be one line of text without control characters",
        ),
        (
            "parties.1.name",
            "Two\nlines",
            "parties[1].name",
            "must be one line of text without control characters",
        ),
        ("parties.1.name", "", "parties[1].name", "must not be empty"),
        ("parties.0.name", 7, "parties[0].name", "must be text, not a whole number"),
        (
            "parties.0.passport",
            "x",
            "parties[0].passport",
            "is not a field here (known fields: role, name, nationality, document)",
        ),
        (
            "narrative",
            "x" * 4001,
            "narrative",
            "must be at most 4000 characters long (this is 4001)",
        ),
    ],
)
def test_field_rules(path: str, value: Any, where: str, rule: str) -> None:
    assert rule_for(T, edit(T, path, value)) == (where, rule)


def test_narrative_may_span_lines() -> None:
    assert (
        accepts(edit(T, "narrative", "Line one.\n\tLine two.")).narrative
        == "Line one.\n\tLine two."
    )


def test_at_most_fifty_parties() -> None:
    data = body(T)
    data["parties"] = data["parties"][:1] * 51
    assert rule_for(T, data) == ("parties", "must hold at most 50 items (this holds 51)")
    data["parties"] = data["parties"][:50]
    accepts(data)


@pytest.mark.parametrize("unit", ["H87", "NAR", "MIL"])
def test_counts_are_whole_numbers(unit: str) -> None:
    data = edit(T, "quantity.unit", unit)
    assert rule_for(T, data) == ("quantity.value", f"a count in {unit} is a whole number")
    data["quantity"]["value"] = 12000
    assert accepts(data).quantity.value == 12000


def test_optional_sections_may_be_absent() -> None:
    data = body(T)
    for name in ("hs_code", "route", "parties", "narrative"):
        del data[name]
    for name in ("description",):
        del data["commodity"][name]
        del data["concealment"][name]
    msg = accepts(data)
    assert msg.parties is None and msg.route is None and msg.hs_code is None


def test_place_may_be_an_airport() -> None:
    assert accepts(edit(T, "place", "BEG")).place == "BEG"


# Conveyance, by mode ----------------------------------------------------------------------------


def conveyance(value: dict[str, Any]) -> Any:
    return edit(T, "conveyance", value)


SEA = {
    "mode": "sea",
    "vessel_name": "MSC ANNA",
    "imo_number": "9074729",
    "container_number": "MWCU6059784",
    "bill_of_lading": "MEDUEC123456",
}
AIR = {
    "mode": "air",
    "flight": "JU 680",
    "flight_date": "2024-05-13",
    "air_waybill": "020-12345675",
}
ROAD = {"mode": "road", "tractor_plate": "BG 123-AB", "trailer_plate": "BG 456-CD", "country": "RS"}
RAIL = {"mode": "rail", "train_number": "45872", "wagon_number": "218124712173"}
POST = {"mode": "postal", "tracking_number": "RR123456785GB", "service": "post"}
EXPRESS = {"mode": "postal", "tracking_number": "1Z999AA10123456784", "service": "express"}


@pytest.mark.parametrize(
    ("value", "cls"),
    [(SEA, Sea), (AIR, Air), (ROAD, Road), (RAIL, Rail), (POST, Postal), (EXPRESS, Postal)],
)
def test_each_mode_decodes_to_its_struct(value: dict[str, Any], cls: type) -> None:
    msg = accepts(conveyance(value))
    assert type(msg.conveyance) is cls
    assert decode_body(T, encode_body(msg)) == msg


def test_only_the_vessel_name_is_required_at_sea() -> None:
    assert accepts(conveyance({"mode": "sea", "vessel_name": "FISHER 7"})).conveyance == Sea(
        vessel_name="FISHER 7"
    )


@pytest.mark.parametrize(
    ("value", "where", "rule"),
    [
        (
            {**SEA, "container_number": "MWCU6059785"},
            "conveyance.container_number",
            "ISO 6346 check digit is 4, not 5",
        ),
        ({**SEA, "imo_number": "9074728"}, "conveyance.imo_number", "IMO check digit is 9, not 8"),
        (
            {**SEA, "flight": "JU 680"},
            "conveyance.flight",
            "is not a field here (known fields: vessel_name, imo_number, container_number, bill_of_lading)",
        ),
        (
            {**AIR, "flight": "12 680"},
            "conveyance.flight",
            "airline code '12' cannot be two digits",
        ),
        (
            {**AIR, "air_waybill": "020-12345670"},
            "conveyance.air_waybill",
            "air waybill check digit is 5, not 0",
        ),
        (
            {**AIR, "flight_date": "13.05.2024"},
            "conveyance.flight_date",
            "must be a date such as 2026-12-02",
        ),
        (
            {**ROAD, "country": "SRB"},
            "conveyance.country",
            "must be at most 2 characters long (this is 3)",
        ),
        (
            {**ROAD, "country": "EU"},
            "conveyance.country",
            "'EU' is not an ISO 3166-1 alpha-2 country code",
        ),
        (
            {**RAIL, "wagon_number": "218124712170"},
            "conveyance.wagon_number",
            "UIC check digit is 3, not 0",
        ),
        (
            {**POST, "tracking_number": "RR123456784GB"},
            "conveyance.tracking_number",
            "UPU S10 check digit is 5, not 4",
        ),
        (
            {**EXPRESS, "service": "post"},
            "conveyance.tracking_number",
            "'1Z999AA10123456784' is not a UPU S10 item identifier (e.g. RR123456785GB)",
        ),
        (
            {**POST, "service": "courier"},
            "conveyance.service",
            "must be one of post, express (not 'courier')",
        ),
        (
            {**SEA, "mode": "boat"},
            "conveyance.mode",
            "must be one of sea, air, road, rail, postal (not 'boat')",
        ),
        (
            {k: x for k, x in SEA.items() if k != "mode"},
            "conveyance.mode",
            "is required (one of sea, air, road, rail, postal)",
        ),
    ],
)
def test_conveyance_rules(value: dict[str, Any], where: str, rule: str) -> None:
    assert rule_for(T, conveyance(value)) == (where, rule)


def test_template_is_the_realistic_one() -> None:
    msg = template(T)
    assert isinstance(msg, SeizureAlert) and isinstance(msg.conveyance, Sea)
    assert msg.conveyance.container_number == "MWCU6059784"
    assert msg.meta.schema_version == 1
