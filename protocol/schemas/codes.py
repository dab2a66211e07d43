"""Code lists the schemas check against, kept as constants so validation never reads a file.

Each list names its source. They change rarely (a new country, a new Rec 20 unit); a change here
is a schema change and is reviewed as one (see PROTOCOL.md, message bodies).
"""

from __future__ import annotations

from typing import Final

# ISO 3166-1 alpha-2, the 249 officially assigned codes (ISO 3166 Maintenance Agency, 2024).
ISO_3166_ALPHA2: Final[frozenset[str]] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ
    BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
    CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET
    FI FJ FK FM FO FR
    GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY
    HK HM HN HR HT HU
    ID IE IL IM IN IO IQ IR IS IT
    JE JM JO JP
    KE KG KH KI KM KN KP KR KW KY KZ
    LA LB LC LI LK LR LS LT LU LV LY
    MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
    NA NC NE NF NG NI NL NO NP NR NU NZ
    OM
    PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA
    RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
    TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ
    UA UG UM US UY UZ
    VA VC VE VG VI VN VU
    WF WS
    YE YT
    ZA ZM ZW
    """.split()
)

# XK is user-assigned in ISO 3166 but is what the EU, Europol, Frontex and UN/LOCODE use for Kosovo;
# a Western Balkans unit that cannot name it cannot report a Kosovo-registered truck.
COUNTRY_CODES: Final[frozenset[str]] = ISO_3166_ALPHA2 | {"XK"}

# UN/ECE Recommendation 20 unit codes that make sense for a seized quantity. Whole-number units
# (pieces, articles, pairs, sets, dozens, thousands) are listed separately: their value must be an
# integer, so "2.5 pieces" is refused.
REC20_MEASURE_UNITS: Final[frozenset[str]] = frozenset(
    {
        "KGM",  # kilogram
        "GRM",  # gram
        "MGM",  # milligram
        "TNE",  # tonne (metric ton)
        "LTR",  # litre
        "MLT",  # millilitre
        "MTQ",  # cubic metre
        "MTR",  # metre
        "MTK",  # square metre
    }
)
REC20_COUNT_UNITS: Final[frozenset[str]] = frozenset(
    {
        "H87",  # piece
        "C62",  # one (unit)
        "NAR",  # number of articles
        "NPR",  # number of pairs
        "PR",  # pair
        "SET",  # set
        "DZN",  # dozen
        "MIL",  # thousand (e.g. cigarettes)
    }
)
