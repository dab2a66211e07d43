"""Each field validator against published examples, and the exact rule text a clerk sees."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from protocol import validators as v
from protocol.errors import ValidationError
from protocol.schemas.codes import COUNTRY_CODES, ISO_3166_ALPHA2

Check = Callable[[str, str], None]


def rule_of(check: Check, value: str, path: str = "f.x") -> str:
    with pytest.raises(ValidationError) as info:
        check(value, path)
    assert info.value.path == path
    return info.value.rule


# ISO 6346 containers ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["MWCU6059784", "CSQU3054383"])
def test_container_number_valid(value: str) -> None:
    v.check_container_number(value, "conveyance.container_number")


def test_container_number_wrong_check_digit_names_the_right_one() -> None:
    with pytest.raises(ValidationError) as info:
        v.check_container_number("MWCU6059785", "conveyance.container_number")
    assert info.value.path == "conveyance.container_number"
    assert info.value.rule == "ISO 6346 check digit is 4, not 5"
    assert str(info.value) == "conveyance.container_number: ISO 6346 check digit is 4, not 5"


def test_container_number_remainder_ten_is_written_zero() -> None:
    # C13 S30 Q28 U32 and 3,0,5,4,3,0 weighted 1..512 sum to 2089; 2089 mod 11 = 10 -> 0.
    v.check_container_number("CSQU3054300", "conveyance.container_number")
    assert rule_of(v.check_container_number, "CSQU3054301") == "ISO 6346 check digit is 0, not 1"


@pytest.mark.parametrize(
    "value", ["MWCU605978", "MWCA6059784", "mwcu6059784", "MWCU 605978 4", "MW1U6059784", ""]
)
def test_container_number_shape(value: str) -> None:
    assert rule_of(v.check_container_number, value) == (
        f"{value!r} is not an ISO 6346 container number (4 letters, 7 digits)"
    )


# IATA air waybill -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["020-12345675", "02012345675", "020 12345675", "157-00000070"])
def test_air_waybill_valid(value: str) -> None:
    v.check_air_waybill(value, "conveyance.air_waybill")


def test_air_waybill_check_digit() -> None:
    assert rule_of(v.check_air_waybill, "020-12345676") == "air waybill check digit is 5, not 6"


@pytest.mark.parametrize("value", ["20-12345675", "020-1234567", "020--12345675", "ABC-12345675"])
def test_air_waybill_shape(value: str) -> None:
    assert rule_of(v.check_air_waybill, value) == (
        f"{value!r} is not an IATA air waybill number (e.g. 020-12345675)"
    )


# IMO ship numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["9074729", "9176187"])
def test_imo_valid(value: str) -> None:
    v.check_imo_number(value, "conveyance.imo_number")


def test_imo_check_digit() -> None:
    # 9*7 + 0*6 + 7*5 + 4*4 + 7*3 + 2*2 = 139 -> 9
    assert rule_of(v.check_imo_number, "9074728") == "IMO check digit is 9, not 8"


@pytest.mark.parametrize("value", ["IMO 9074729", "907472", "90747290"])
def test_imo_shape(value: str) -> None:
    assert rule_of(v.check_imo_number, value) == f"{value!r} is not an IMO number (7 digits)"


# UN/LOCODE, airports, places --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["MEBAR", "RSBEG", "NLRTM", "DEHAM", "XKPRN", "USNYC", "GB2AB"])
def test_unlocode_valid(value: str) -> None:
    v.check_unlocode(value, "place")


def test_unlocode_country_must_exist() -> None:
    assert rule_of(v.check_unlocode, "QQBEG") == "UN/LOCODE country 'QQ' is not an ISO 3166-1 code"


@pytest.mark.parametrize("value", ["NLRT1", "NLRT0", "NL RTM", "nlrtm", "NLRTMX", "NLRT"])
def test_unlocode_shape(value: str) -> None:
    assert rule_of(v.check_unlocode, value) == (
        f"{value!r} is not a UN/LOCODE (country code + 3 letters or digits 2-9)"
    )


def test_iata_airport() -> None:
    v.check_iata_airport("BEG", "route.origin")
    assert rule_of(v.check_iata_airport, "BE1") == "'BE1' is not an IATA airport code (3 letters)"


def test_place_takes_either_form() -> None:
    v.check_place("TGD", "route.origin")
    v.check_place("MEBAR", "route.origin")
    assert rule_of(v.check_place, "TGDX") == (
        "'TGDX' is not a UN/LOCODE (5) or IATA airport code (3)"
    )
    assert rule_of(v.check_place, "QQBAR") == "UN/LOCODE country 'QQ' is not an ISO 3166-1 code"


# Flight designators -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["JU 680", "JU680", "U21234", "2U45", "LH400A", "9W1"])
def test_flight_valid(value: str) -> None:
    v.check_flight_designator(value, "conveyance.flight")


def test_flight_airline_not_two_digits() -> None:
    assert rule_of(v.check_flight_designator, "12 345") == "airline code '12' cannot be two digits"


@pytest.mark.parametrize("value", ["JU68000", "JU", "JU  680", "JUA680", "JU 680AB", "ju680"])
def test_flight_shape(value: str) -> None:
    assert rule_of(v.check_flight_designator, value) == (
        f"{value!r} is not an IATA flight designator (e.g. JU 680)"
    )


# HS codes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0803", "080390", "08039010", "0803901000", "9701", "0101"])
def test_hs_valid(value: str) -> None:
    v.check_hs_code(value, "hs_code")


@pytest.mark.parametrize("chapter", ["00", "77", "98", "99"])
def test_hs_chapter_must_exist(chapter: str) -> None:
    assert rule_of(v.check_hs_code, chapter + "0100") == (
        f"HS chapter {chapter} does not exist (01-97, not 77)"
    )


@pytest.mark.parametrize("value", ["080", "08039", "0803901", "080390100", "08039010000", "08.03"])
def test_hs_shape(value: str) -> None:
    assert rule_of(v.check_hs_code, value) == f"{value!r} is not an HS code (4, 6, 8 or 10 digits)"


# UIC wagon numbers ------------------------------------------------------------------------------


def test_wagon_valid() -> None:
    v.check_wagon_number("218124712173", "conveyance.wagon_number")  # 21 81 2471 217-3


def test_wagon_check_digit() -> None:
    assert rule_of(v.check_wagon_number, "218124712174") == "UIC check digit is 3, not 4"


def test_wagon_shape() -> None:
    assert rule_of(v.check_wagon_number, "21 81 2471 217-3") == (
        "'21 81 2471 217-3' is not a UIC wagon number (12 digits)"
    )


# UPU S10 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "RR123456785GB",  # weighted sum 204, 11 - 204 mod 11 = 5
        "EE000000005RS",  # sum 0: 11 -> 5
        "CP700000000DE",  # sum 56, 56 mod 11 = 1: 10 -> 0
    ],
)
def test_s10_valid(value: str) -> None:
    v.check_s10_tracking(value, "conveyance.tracking_number")


def test_s10_check_digit() -> None:
    assert rule_of(v.check_s10_tracking, "RR123456786GB") == "UPU S10 check digit is 5, not 6"


def test_s10_country() -> None:
    assert rule_of(v.check_s10_tracking, "RR123456785QQ") == (
        "'QQ' is not an ISO 3166-1 alpha-2 country code"
    )


def test_s10_shape() -> None:
    assert rule_of(v.check_s10_tracking, "1Z999AA10123456784") == (
        "'1Z999AA10123456784' is not a UPU S10 item identifier (e.g. RR123456785GB)"
    )


# Countries and times ----------------------------------------------------------------------------


def test_country_list_is_iso_3166_plus_kosovo() -> None:
    assert len(ISO_3166_ALPHA2) == 249
    assert all(len(c) == 2 and c.isascii() and c.isupper() for c in ISO_3166_ALPHA2)
    assert COUNTRY_CODES - ISO_3166_ALPHA2 == {"XK"}
    assert {"RS", "ME", "BA", "MK", "AL", "HR", "NL", "DE", "SS", "CW"} <= ISO_3166_ALPHA2
    assert not {"UK", "EU", "YU", "CS", "AN"} & ISO_3166_ALPHA2  # not (or no longer) assigned


@pytest.mark.parametrize("value", ["UK", "rs", "R", "RSB", "EU"])
def test_country_rejects(value: str) -> None:
    assert rule_of(v.check_country, value) == f"{value!r} is not an ISO 3166-1 alpha-2 country code"


def test_utc() -> None:
    v.check_utc(datetime(2024, 5, 14, tzinfo=UTC), "occurred_at")
    with pytest.raises(ValidationError) as info:
        v.check_utc(datetime(2024, 5, 14, tzinfo=timezone(timedelta(hours=2))), "occurred_at")
    assert (info.value.path, info.value.rule) == ("occurred_at", "time must be in UTC (end in Z)")
