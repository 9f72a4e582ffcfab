"""Validating and normalising borrower identifiers before they are tokenised or blinded (docs/integration.md).

Error messages say exactly what is wrong but never quote any part of the identifier: at most a
length or a position. They reach API errors and the exchange's stored rejected rows, which must
never hold a national ID, nor a birth date or a character of one.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from operator import mul

ID_TYPES = ("CN_RIC", "CN_USCC", "CN_MOBILE", "PASSPORT")


class IdentifierError(ValueError):
    """A subject identifier that cannot be accepted; `field` names the input at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message

    def __repr__(self) -> str:
        return f"IdentifierError(field={self.field!r}, message={self.message!r})"


# ISO 3166-1 alpha-2: the 249 officially assigned codes.
COUNTRY_CODES = frozenset(
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

# People type identifiers on Chinese keyboards: full-width letters and digits (U+FF01-FF5E) and
# the ideographic space are the same characters to them, so they are folded to ASCII first.
_FOLD = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2212"
_DIGITS = frozenset("0123456789")
_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")

# Resident ID (GB 11643-1999): ISO 7064 MOD 11-2 over the first 17 digits.
_RIC_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_RIC_CHECK = "10X98765432"  # indexed by sum % 11
# The birth date may not be after today in China (UTC+8, no daylight saving).
_CHINA = timezone(timedelta(hours=8))

# Unified social credit code (GB 32100-2015).
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {char: value for value, char in enumerate(_USCC_CHARS)}
_USCC_SET = frozenset(_USCC_CHARS)
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


# Bulk files run every row through these, so the common cases take str methods implemented in C
# (isascii, isalnum, translate, encode) rather than a loop over characters; other input takes the
# general path, which defines the behaviour.
_ASCII_SPACE = "".join(ch for ch in map(chr, range(128)) if ch.isspace())
_ASCII_DROPS: dict[str, dict[int, None]] = {}  # `drop` -> table deleting ASCII whitespace and `drop`


def _clean(value: str, *, drop: str = "") -> str:
    """Fold full-width characters, drop whitespace (and `drop`), upper-case."""
    if value.isascii():
        # Nothing to fold (every folded character is outside ASCII).
        if not drop and value.isalnum():
            return value.upper()  # no whitespace either
        table = _ASCII_DROPS.get(drop)
        if table is None:
            table = _ASCII_DROPS[drop] = dict.fromkeys(map(ord, _ASCII_SPACE + drop))
        return value.translate(table).upper()
    value = value.translate(_FOLD)
    return "".join(ch for ch in value if not ch.isspace() and ch not in drop).upper()


_RIC_DIGITS_OFFSET = 48 * sum(_RIC_WEIGHTS)  # what the ASCII codes of the digits add over their values


def ric_check_character(first17: str) -> str:
    if len(first17) == 17 and first17.isascii() and first17.isdigit():
        total = sum(map(mul, first17.encode(), _RIC_WEIGHTS)) - _RIC_DIGITS_OFFSET
    else:
        total = sum(int(digit) * weight for digit, weight in zip(first17, _RIC_WEIGHTS, strict=True))
    return _RIC_CHECK[total % 11]


def uscc_check_character(first17: str) -> str:
    if len(first17) == 17:
        total = sum(map(mul, map(_USCC_VALUE.__getitem__, first17), _USCC_WEIGHTS))
    else:
        total = sum(_USCC_VALUE[char] * weight for char, weight in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31]


def _check_birth_date(digits: str, where: str) -> None:
    """`digits`: YYYYMMDD; `where`: the characters of the ID that hold it, for the message."""
    try:
        born = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        raise IdentifierError("id_number", f"the birth date ({where}) is not a real date") from None
    if born.year < 1900:
        raise IdentifierError("id_number", f"the birth date ({where}) is before 1900")
    if born > datetime.now(_CHINA).date():
        raise IdentifierError("id_number", f"the birth date ({where}) is in the future")


def _resident_id(raw: str) -> str:
    value = _clean(raw)
    if len(value) == 15:
        if not set(value) <= _DIGITS:
            raise IdentifierError("id_number", "a 15-character legacy resident ID must be all digits")
        # Legacy IDs (before 1999) carry a two-digit year in the 1900s and no check character.
        first17 = value[:6] + "19" + value[6:]
        _check_birth_date(first17[6:14], "characters 7-12")
        return first17 + ric_check_character(first17)
    if len(value) != 18:
        raise IdentifierError(
            "id_number", f"must be 18 characters, or 15 digits for a legacy resident ID; got {len(value)}"
        )
    first17, check = value[:17], value[17]
    if not (first17.isascii() and first17.isdigit()) or (check not in _DIGITS and check != "X"):
        raise IdentifierError("id_number", "must be 17 digits followed by a digit or X")
    _check_birth_date(first17[6:14], "characters 7-14")
    if check != ric_check_character(first17):
        raise IdentifierError("id_number", "the check character is wrong")
    return value


def _credit_code(raw: str) -> str:
    value = _clean(raw)
    if len(value) != 18:
        raise IdentifierError("id_number", f"must be 18 characters; got {len(value)}")
    if not set(value) <= _USCC_SET:
        for position, char in enumerate(value, start=1):
            if char not in _USCC_VALUE:
                raise IdentifierError(
                    "id_number",
                    f"character {position} is not allowed: credit codes use 0-9 and A-Y without I, O, S, V, Z",
                )
    if value[17] != uscc_check_character(value[:17]):
        raise IdentifierError("id_number", "the check character is wrong")
    return value


def _mobile(raw: str) -> str:
    value = _clean(raw, drop=_DASHES)
    if value.startswith("+86"):
        value = value[3:]
    elif value.startswith("0086"):
        value = value[4:]
    if len(value) != 11 or not set(value) <= _DIGITS or value[0] != "1":
        raise IdentifierError("id_number", "must be 11 digits starting with 1 (+86 or 0086 in front is allowed)")
    return value


def _passport(raw: str) -> str:
    value = _clean(raw)
    if not set(value) <= _ALNUM:
        raise IdentifierError("id_number", "a passport number holds only letters A-Z and digits")
    if not 5 <= len(value) <= 20:
        raise IdentifierError("id_number", f"a passport number has 5 to 20 letters or digits; got {len(value)}")
    return value


_NORMALISERS = {"CN_RIC": _resident_id, "CN_USCC": _credit_code, "CN_MOBILE": _mobile, "PASSPORT": _passport}


def normalize_country(country: object) -> str:
    """An ISO 3166-1 alpha-2 code, upper case; "" when none was given."""
    if country is None:
        return ""
    if not isinstance(country, str):
        raise IdentifierError("country", "must be a string")
    value = _clean(country)
    if not value:
        return ""
    if len(value) != 2 or not set(value) <= _ALNUM:
        raise IdentifierError("country", "must be a two-letter ISO 3166-1 alpha-2 code such as CN or US")
    if value not in COUNTRY_CODES:
        raise IdentifierError("country", f"{value} is not an ISO 3166-1 alpha-2 country code")
    return value


def normalize_subject(id_type: str, id_number: str, country: str | None = None) -> tuple[str, str]:
    """Validate a subject identifier; return (normalised id, normalised country, "" unless a passport).

    Raises IdentifierError naming the field at fault ("id_type", "id_number" or "country").
    """
    if not isinstance(id_type, str) or id_type not in _NORMALISERS:
        raise IdentifierError("id_type", f"must be one of {', '.join(ID_TYPES)}")
    if not isinstance(id_number, str):
        raise IdentifierError("id_number", "must be a string")
    normalised_country = normalize_country(country)
    if id_type == "PASSPORT":
        if not normalised_country:
            raise IdentifierError("country", "is required for passports (ISO 3166-1 alpha-2, such as CN or US)")
    elif normalised_country:
        raise IdentifierError("country", f"only passports carry a country, not {id_type}")
    if not _clean(id_number):
        raise IdentifierError("id_number", "is required")
    return _NORMALISERS[id_type](id_number), normalised_country
