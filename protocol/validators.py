"""Field validators: identifiers with real check digits and code lists.

Each function takes the value and the dotted ``path`` to report, returns None when the value is
good, and raises ``ValidationError(path, rule)`` when it is not. The rule names the standard and,
for a check digit, the digit expected, so a clerk can tell a typo from a wrong format. Pure: no
I/O, no clock.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Final

from protocol.errors import ValidationError
from protocol.schemas.codes import COUNTRY_CODES


def _iso6346_letter_values() -> dict[str, int]:
    """A=10 upwards, skipping 11, 22 and 33 (multiples of 11), as ISO 6346 Annex A tabulates."""
    values: dict[str, int] = {}
    value = 10
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        value += value % 11 == 0
        values[letter] = value
        value += 1
    return values


_ISO6346_LETTERS: Final = _iso6346_letter_values()

_CONTAINER_RE: Final = re.compile(r"[A-Z]{3}[UJZ][0-9]{7}")
_AWB_RE: Final = re.compile(r"([0-9]{3})[- ]?([0-9]{7})([0-9])")
_IMO_RE: Final = re.compile(r"[0-9]{7}")
_LOCODE_RE: Final = re.compile(r"([A-Z]{2})[A-Z2-9]{3}")
_AIRPORT_RE: Final = re.compile(r"[A-Z]{3}")
_FLIGHT_RE: Final = re.compile(r"([A-Z0-9]{2}) ?([0-9]{1,4})[A-Z]?")
_HS_RE: Final = re.compile(r"[0-9]{4}(?:[0-9]{2}){0,3}")
_WAGON_RE: Final = re.compile(r"[0-9]{12}")
_S10_RE: Final = re.compile(r"[A-Z]{2}([0-9]{8})([0-9])([A-Z]{2})")
_S10_WEIGHTS: Final = (8, 6, 4, 2, 3, 5, 9, 7)


def _shape(value: str, pattern: re.Pattern[str], path: str, what: str) -> re.Match[str]:
    """Match the whole value or raise; every validator starts here so shape errors read alike."""
    match = pattern.fullmatch(value)
    if match is None:
        raise ValidationError(path, f"{value!r} is not {what}")
    return match


def check_country(value: str, path: str) -> None:
    if value not in COUNTRY_CODES:
        raise ValidationError(path, f"{value!r} is not an ISO 3166-1 alpha-2 country code")


def check_container_number(value: str, path: str) -> None:
    """ISO 6346: owner code, category U/J/Z, 6-digit serial, check digit (e.g. MWCU6059784)."""
    _shape(value, _CONTAINER_RE, path, "an ISO 6346 container number (4 letters, 7 digits)")
    total = sum(
        (_ISO6346_LETTERS[c] if c.isalpha() else int(c)) << i for i, c in enumerate(value[:10])
    )
    expected = total % 11 % 10
    if int(value[10]) != expected:
        raise ValidationError(path, f"ISO 6346 check digit is {expected}, not {value[10]}")


def check_air_waybill(value: str, path: str) -> None:
    """IATA air waybill: 3-digit airline prefix, 7-digit serial, check digit = serial mod 7."""
    match = _shape(value, _AWB_RE, path, "an IATA air waybill number (e.g. 020-12345675)")
    expected = int(match[2]) % 7
    if int(match[3]) != expected:
        raise ValidationError(path, f"air waybill check digit is {expected}, not {match[3]}")


def check_imo_number(value: str, path: str) -> None:
    """IMO ship number: 7 digits, the last is sum(digit * weight 7..2) mod 10."""
    _shape(value, _IMO_RE, path, "an IMO number (7 digits)")
    expected = sum(int(d) * w for d, w in zip(value[:6], range(7, 1, -1), strict=True)) % 10
    if int(value[6]) != expected:
        raise ValidationError(path, f"IMO check digit is {expected}, not {value[6]}")


def check_unlocode(value: str, path: str) -> None:
    """UN/LOCODE without the space: ISO country + 3 characters from A-Z and 2-9 (e.g. NLRTM)."""
    match = _shape(value, _LOCODE_RE, path, "a UN/LOCODE (country code + 3 letters or digits 2-9)")
    if match[1] not in COUNTRY_CODES:
        raise ValidationError(path, f"UN/LOCODE country {match[1]!r} is not an ISO 3166-1 code")


def check_iata_airport(value: str, path: str) -> None:
    _shape(value, _AIRPORT_RE, path, "an IATA airport code (3 letters)")


def check_place(value: str, path: str) -> None:
    """A route point: a UN/LOCODE, or an IATA airport code as air routes are reported."""
    if len(value) == 3:
        check_iata_airport(value, path)
    elif len(value) == 5:
        check_unlocode(value, path)
    else:
        raise ValidationError(path, f"{value!r} is not a UN/LOCODE (5) or IATA airport code (3)")


def check_flight_designator(value: str, path: str) -> None:
    """IATA flight: 2-character airline code (not two digits), 1-4 digit number, optional suffix."""
    what = "an IATA flight designator (e.g. JU 680)"
    match = _shape(value, _FLIGHT_RE, path, what)
    if match[1].isdigit():
        raise ValidationError(path, f"airline code {match[1]!r} cannot be two digits")


def check_hs_code(value: str, path: str) -> None:
    """Harmonized System code of 4, 6, 8 or 10 digits in a chapter that exists (01-97, not 77)."""
    _shape(value, _HS_RE, path, "an HS code (4, 6, 8 or 10 digits)")
    chapter = int(value[:2])
    if not 1 <= chapter <= 97 or chapter == 77:
        raise ValidationError(path, f"HS chapter {value[:2]} does not exist (01-97, not 77)")


def check_wagon_number(value: str, path: str) -> None:
    """UIC wagon number: 12 digits, the last a Luhn check digit over the first 11."""
    _shape(value, _WAGON_RE, path, "a UIC wagon number (12 digits)")
    total = 0
    for i, d in enumerate(reversed(value[:11])):
        product = int(d) * (2 if i % 2 == 0 else 1)
        total += product // 10 + product % 10
    expected = -total % 10
    if int(value[11]) != expected:
        raise ValidationError(path, f"UIC check digit is {expected}, not {value[11]}")


def looks_like_s10(value: str) -> bool:
    return _S10_RE.fullmatch(value) is not None


def check_s10_tracking(value: str, path: str) -> None:
    """UPU S10 item id: 2 letters, 8-digit serial, check digit, ISO country (e.g. RR123456785GB)."""
    match = _shape(value, _S10_RE, path, "a UPU S10 item identifier (e.g. RR123456785GB)")
    remainder = 11 - sum(int(d) * w for d, w in zip(match[1], _S10_WEIGHTS, strict=True)) % 11
    expected = {10: 0, 11: 5}.get(remainder, remainder)
    if int(match[2]) != expected:
        raise ValidationError(path, f"UPU S10 check digit is {expected}, not {match[2]}")
    check_country(match[3], path)


def check_utc(value: datetime, path: str) -> None:
    """Times on the wire are UTC so two units never disagree about when something happened."""
    if value.utcoffset() != timedelta(0):
        raise ValidationError(path, "time must be in UTC (end in Z)")
