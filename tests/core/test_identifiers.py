"""Validating and normalising subject identifiers: check characters, birth dates, spellings, errors."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.identifiers import COUNTRY_CODES, ID_TYPES, IdentifierError, normalize_subject

RIC_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
DIGITS = "0123456789"
MOBILE_MESSAGE = "must be 11 digits starting with 1 (+86 or 0086 in front is allowed)"


# Check characters computed here straight from the standards' definitions, independently of
# the code under test.
def ric_check(first17: str) -> str:
    total = sum(int(d) * w for d, w in zip(first17, RIC_WEIGHTS, strict=True))
    return "10X98765432"[total % 11]


def uscc_check(first17: str) -> str:
    total = sum(USCC_CHARS.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARS[(31 - total % 31) % 31]


def error_of(*args) -> IdentifierError:
    with pytest.raises(IdentifierError) as info:
        normalize_subject(*args)
    return info.value


# --- strategies -------------------------------------------------------------------------------

regions = st.text(DIGITS, min_size=6, max_size=6)
sequences = st.text(DIGITS, min_size=3, max_size=3)
birth_dates = st.dates(min_value=date(1900, 1, 1), max_value=date.today() - timedelta(days=1))


@st.composite
def resident_ids(draw, dates=birth_dates):
    first17 = draw(regions) + draw(dates).strftime("%Y%m%d") + draw(sequences)
    return first17 + ric_check(first17)


@st.composite
def credit_codes(draw):
    first17 = draw(st.text(USCC_CHARS, min_size=17, max_size=17))
    return first17 + uscc_check(first17)


mobiles = st.text(DIGITS, min_size=10, max_size=10).map(lambda rest: "1" + rest)
passports = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=5, max_size=20)
countries = st.sampled_from(sorted(COUNTRY_CODES))


@st.composite
def spaced(draw, value: str) -> str:
    """`value` with spaces (and a tab) put between random characters."""
    out = []
    for char in value:
        out.append(draw(st.sampled_from(["", "", " ", "  ", "\t"])))
        out.append(char)
    return " " + "".join(out) + " "


def fullwidth(value: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) for c in value)


# --- published examples ----------------------------------------------------------------------


def test_it_accepts_the_resident_id_example_of_gb_11643():
    assert normalize_subject("CN_RIC", "11010519491231002X") == ("11010519491231002X", "")


def test_it_upgrades_the_legacy_form_of_the_gb_11643_example():
    assert normalize_subject("CN_RIC", "110105491231002") == ("11010519491231002X", "")


def test_it_accepts_a_published_credit_code():
    assert normalize_subject("CN_USCC", "91350100M000100Y43") == ("91350100M000100Y43", "")


def test_the_independent_check_functions_agree_with_the_published_examples():
    # Guards the oracle the property tests rely on.
    assert ric_check("11010519491231002") == "X"
    assert uscc_check("91350100M000100Y4") == "3"


def test_it_knows_every_officially_assigned_country_code_and_nothing_else():
    assert len(COUNTRY_CODES) == 249
    assert {"CN", "US", "HK", "MO", "TW", "GB", "DE", "SS", "BQ"} <= COUNTRY_CODES
    assert not {"UK", "EU", "XK", "ZZ"} & COUNTRY_CODES


# --- properties: every spelling of a valid identifier normalises to it ------------------------


@given(resident_ids(), st.data())
def test_every_spelling_of_a_valid_resident_id_normalises_to_it(ric, data):
    assert normalize_subject("CN_RIC", ric) == (ric, "")
    assert normalize_subject("CN_RIC", ric.lower()) == (ric, "")
    assert normalize_subject("CN_RIC", data.draw(spaced(ric.lower()))) == (ric, "")
    assert normalize_subject("CN_RIC", fullwidth(ric)) == (ric, "")


@given(resident_ids(dates=st.dates(min_value=date(1900, 1, 1), max_value=date(1999, 12, 31))), st.data())
def test_the_15_digit_form_of_a_resident_id_born_in_the_1900s_upgrades_to_it(ric, data):
    legacy = ric[:6] + ric[8:17]
    assert normalize_subject("CN_RIC", legacy) == (ric, "")
    assert normalize_subject("CN_RIC", data.draw(spaced(legacy))) == (ric, "")


@given(credit_codes(), st.data())
def test_every_spelling_of_a_valid_credit_code_normalises_to_it(code, data):
    assert normalize_subject("CN_USCC", code) == (code, "")
    assert normalize_subject("CN_USCC", code.lower()) == (code, "")
    assert normalize_subject("CN_USCC", data.draw(spaced(code.lower()))) == (code, "")


@given(mobiles, st.data())
def test_every_spelling_of_a_valid_mobile_normalises_to_it(mobile, data):
    dashed = f"{mobile[:3]}-{mobile[3:7]}-{mobile[7:]}"
    prefix = data.draw(st.sampled_from(["", "+86", "+86 ", "0086", "0086 ", "+86-"]))
    for spelling in (mobile, dashed, f"{mobile[:3]} {mobile[3:7]} {mobile[7:]}", prefix + dashed):
        assert normalize_subject("CN_MOBILE", spelling) == (mobile, "")
    assert normalize_subject("CN_MOBILE", data.draw(spaced(prefix + mobile))) == (mobile, "")


@given(passports, countries, st.data())
def test_every_spelling_of_a_valid_passport_normalises_to_it(number, country, data):
    assert normalize_subject("PASSPORT", number, country) == (number, country)
    assert normalize_subject("PASSPORT", number.lower(), country.lower()) == (number, country)
    assert normalize_subject("PASSPORT", data.draw(spaced(number)), f" {country} ") == (number, country)


# --- properties: a single wrong character is always caught -----------------------------------


@given(resident_ids())
def test_every_single_character_change_of_a_valid_resident_id_is_rejected(ric):
    for position, original in enumerate(ric):
        for replacement in DIGITS + "X":
            if replacement != original:
                changed = ric[:position] + replacement + ric[position + 1 :]
                with pytest.raises(IdentifierError):
                    normalize_subject("CN_RIC", changed)


@given(credit_codes())
def test_every_single_character_change_of_a_valid_credit_code_is_rejected(code):
    for position, original in enumerate(code):
        for replacement in USCC_CHARS + "IOSVZ":
            if replacement != original:
                changed = code[:position] + replacement + code[position + 1 :]
                with pytest.raises(IdentifierError):
                    normalize_subject("CN_USCC", changed)


# --- every error, and what it says ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        (("CN_PASSPORT", "E1234567"), "id_type", "must be one of CN_RIC, CN_USCC, CN_MOBILE, PASSPORT"),
        ((None, "E1234567"), "id_type", "must be one of CN_RIC, CN_USCC, CN_MOBILE, PASSPORT"),
        (("CN_RIC", 11010519491231002), "id_number", "must be a string"),
        (("CN_RIC", None), "id_number", "must be a string"),
        (("CN_RIC", "   "), "id_number", "is required"),
        (
            ("CN_RIC", "1101051949123100"),
            "id_number",
            "must be 18 characters, or 15 digits for a legacy resident ID; got 16",
        ),
        (("CN_RIC", "11010549123100X"), "id_number", "a 15-character legacy resident ID must be all digits"),
        (("CN_RIC", "1101051949123100XX"), "id_number", "must be 17 digits followed by a digit or X"),
        (("CN_RIC", "110105194912310021"), "id_number", "the check character is wrong"),
        (("CN_RIC", "110105194913310021"), "id_number", "the birth date (characters 7-14) is not a real date"),
        (("CN_RIC", "110105190002290021"), "id_number", "the birth date (characters 7-14) is not a real date"),
        (("CN_RIC", "110105189912310021"), "id_number", "the birth date (characters 7-14) is before 1900"),
        (("CN_RIC", "110105491331002"), "id_number", "the birth date (characters 7-12) is not a real date"),
        (("CN_USCC", "91350100M000100Y4"), "id_number", "must be 18 characters; got 17"),
        (
            ("CN_USCC", "91350100O000100Y43"),
            "id_number",
            "character 9 is not allowed: credit codes use 0-9 and A-Y without I, O, S, V, Z",
        ),
        (
            ("CN_USCC", "91350100M000100Y4#"),
            "id_number",
            "character 18 is not allowed: credit codes use 0-9 and A-Y without I, O, S, V, Z",
        ),
        (("CN_USCC", "91350100M000100Y44"), "id_number", "the check character is wrong"),
        (("CN_MOBILE", "2381234567"), "id_number", MOBILE_MESSAGE),
        (("CN_MOBILE", "23812345678"), "id_number", MOBILE_MESSAGE),
        (("CN_MOBILE", "+1 138 1234 5678"), "id_number", MOBILE_MESSAGE),
        (("CN_MOBILE", "1381234567a"), "id_number", MOBILE_MESSAGE),
        (("PASSPORT", "E123", "CN"), "id_number", "a passport number has 5 to 20 letters or digits; got 4"),
        (("PASSPORT", "E" * 21, "CN"), "id_number", "a passport number has 5 to 20 letters or digits; got 21"),
        (("PASSPORT", "E1234-567", "CN"), "id_number", "a passport number holds only letters A-Z and digits"),
        (("PASSPORT", "Ä1234567", "DE"), "id_number", "a passport number holds only letters A-Z and digits"),
        (("PASSPORT", "E1234567"), "country", "is required for passports (ISO 3166-1 alpha-2, such as CN or US)"),
        (("PASSPORT", "E1234567", " "), "country", "is required for passports (ISO 3166-1 alpha-2, such as CN or US)"),
        (("PASSPORT", "E1234567", "XX"), "country", "XX is not an ISO 3166-1 alpha-2 country code"),
        (("PASSPORT", "E1234567", "UK"), "country", "UK is not an ISO 3166-1 alpha-2 country code"),
        (("PASSPORT", "E1234567", "CHN"), "country", "must be a two-letter ISO 3166-1 alpha-2 code such as CN or US"),
        (("PASSPORT", "E1234567", 86), "country", "must be a string"),
        (("CN_RIC", "11010519491231002X", "CN"), "country", "only passports carry a country, not CN_RIC"),
        (("CN_MOBILE", "13812345678", "CN"), "country", "only passports carry a country, not CN_MOBILE"),
    ],
)
def test_it_says_exactly_what_is_wrong(args, field, message):
    error = error_of(*args)
    assert (error.field, error.message) == (field, message)
    assert str(error) == message


def test_it_rejects_a_birth_date_in_the_future():
    future = (date.today() + timedelta(days=2)).strftime("%Y%m%d")
    first17 = "110105" + future + "002"
    error = error_of("CN_RIC", first17 + ric_check(first17))
    assert (error.field, error.message) == ("id_number", "the birth date (characters 7-14) is in the future")


def test_it_accepts_passport_numbers_of_5_and_20_characters():
    assert normalize_subject("PASSPORT", "E1234", "CN") == ("E1234", "CN")
    assert normalize_subject("PASSPORT", "E" * 20, "CN") == ("E" * 20, "CN")


def test_it_accepts_a_resident_id_of_someone_born_on_1900_01_01():
    first17 = "110105" + "19000101" + "002"
    assert normalize_subject("CN_RIC", first17 + ric_check(first17))[0] == first17 + ric_check(first17)


def test_it_does_not_accept_a_bare_86_prefix_as_a_country_code():
    # "86138..." is 13 digits; only "+86" and "0086" are unambiguous prefixes.
    assert error_of("CN_MOBILE", "8613812345678").field == "id_number"


def test_a_country_given_as_none_or_empty_is_no_country_for_other_types():
    assert normalize_subject("CN_MOBILE", "13812345678", None) == ("13812345678", "")
    assert normalize_subject("CN_MOBILE", "13812345678", "") == ("13812345678", "")


def test_the_id_types_are_the_contracts():
    assert ID_TYPES == ("CN_RIC", "CN_USCC", "CN_MOBILE", "PASSPORT")


@given(
    st.sampled_from(ID_TYPES),
    st.text(min_size=8, max_size=40).filter(lambda s: len(s.strip()) >= 8),
    st.one_of(st.none(), countries),
)
def test_no_error_message_ever_quotes_the_identifier(id_type, id_number, country):
    try:
        normalize_subject(id_type, id_number, country)
    except IdentifierError as error:
        assert id_number.strip() not in error.message
        assert id_number.strip().upper() not in error.message


@given(
    st.sampled_from(ID_TYPES),
    st.text(alphabet="0123456789XABCDEFGHJKLMNOPQRTUWYZIS#-", min_size=5, max_size=22),
)
@example("CN_RIC", "110105194913310021")
@example("CN_RIC", "110105189912310021")
@example("CN_RIC", "110105491331002")
@example("CN_RIC", "110105209912310021")
def test_an_error_message_never_holds_part_of_the_id(id_type, id_number):
    """Messages reach API errors and the exchange's stored rejected rows: never a birth date, a
    check character or any other piece of the ID (review 22)."""
    try:
        normalize_subject(id_type, id_number, "CN" if id_type == "PASSPORT" else None)
    except IdentifierError as exc:
        message = exc.message
    else:
        return
    assert not any(id_number[i : i + 5] in message for i in range(len(id_number) - 4)), message
    assert "should be" not in message and "(" + id_number[-1] + ")" not in message


@pytest.mark.parametrize("id_type", ["CN_RIC", "CN_USCC"])
def test_a_wrong_check_character_is_named_but_not_the_right_one(id_type):
    valid = "11010519491231002X" if id_type == "CN_RIC" else "91350100M000100Y43"
    for check in "0123456789X":
        if check != valid[-1]:
            assert error_of(id_type, valid[:-1] + check).message == "the check character is wrong"
