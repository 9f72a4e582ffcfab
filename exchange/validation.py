"""Parsing and validating one delinquency record: the single code path for JSON batches and bulk files.

Plain Python rather than a DRF serializer: bulk files run every row through this, so it must be
fast, and its messages must be exact. Messages never quote an identifier, a name or a reference.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from cx_client.fields import RECORD_FIELDS, SUBJECT_FIELDS
from django.conf import settings
from django.utils import timezone

from core.identifiers import ID_TYPES, IdentifierError, normalize_country, normalize_subject
from core.oprf import OUTPUT_BYTES
from core.problems import Invalid, unknown_fields_message
from core.tokens import subject_token, token_of_output
from exchange.currencies import ISO_4217
from exchange.models import PAYMENT_CODES, Product, RecordStatus

# The fields of a submitted record: the stored data fields, with the subject as sent
# (id_type + id_number become the token) and the member's own reference.
# The fields of a submitted record and of its subject are the member client's (cx_client.fields),
# so both read a record alike; tests/exchange/test_rows.py holds them equal to the stored fields.
BLIND_MESSAGE = "must be the base64 of a 64-byte VOPRF output (RFC 9497 Finalize)"
RAW_REFUSED_MESSAGE = "is refused: this exchange takes blind subjects only; send blind instead of id_number"
RAW_REFUSED_DETAIL = (
    "This exchange does not accept raw identifiers (EXCHANGE_RAW_SUBJECTS=refuse): blind each subject "
    'through /api/v1/oprf/evaluate and send it as {"id_type", "blind"}; nothing was stored.'
)
REQUIRED_DATES = ("opened_on", "delinquent_since", "as_of", "notice_sent_on")
MAX_CENTS = 10**18 - 1  # fits a signed 64-bit integer with room to sum
MAX_DAYS_PAST_DUE = 100_000
EARLIEST_DATE = date(1900, 1, 1)  # no credit record is older; year 0001 is a typo or a probe
_COUNT_RE = re.compile(r"^[0-9]{1,12}$")  # ASCII digits only: str.isdigit() also takes "²" and "٣"
_MONEY_RE = re.compile(r"^(\d{1,16})(?:\.(\d{1,2}))?$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_PRODUCTS = frozenset(Product.values)
_STATUSES = frozenset(RecordStatus.values)
_ENDED = frozenset({RecordStatus.SETTLED, RecordStatus.WRITTEN_OFF})


def latest_today() -> date:
    """The latest calendar date anywhere on earth (UTC+14): 'in the future' means after it,
    so a lender east of UTC can report today's date at any hour."""
    return (timezone.now() + timedelta(hours=14)).date()


@dataclass(slots=True)
class ParsedRecord:
    member_reference: str
    id_type: str
    subject_token: str
    name: str | None
    product: str
    currency: str
    principal: int  # minor units (cents)
    amount_overdue: int
    days_past_due: int
    status: str
    opened_on: date
    delinquent_since: date
    as_of: date
    notice_sent_on: date
    settled_on: date | None
    payment_history: str


class RecordErrors(Exception):
    def __init__(self, errors: list[tuple[str, str]]):
        super().__init__(f"{len(errors)} errors")
        self.errors = errors


def parse_money(value: Any) -> int:
    if isinstance(value, str):  # the common case first (a str is never a bool, a float or an int)
        text = value.strip()
        if text.startswith("-"):
            raise ValueError("must be 0 or more")
        match = _MONEY_RE.match(text)
        if not match:
            raise ValueError('must be a decimal string with at most 2 decimal places, such as "5000.00"')
        whole, fraction = match.groups()
        cents = int(whole) * 100 + (int(fraction.ljust(2, "0")) if fraction else 0)
    elif isinstance(value, bool) or isinstance(value, float):
        raise ValueError('must be a decimal string such as "5000.00"')
    elif isinstance(value, int):
        if value < 0:
            raise ValueError("must be 0 or more")
        cents = value * 100
    else:
        raise ValueError('must be a decimal string such as "5000.00"')
    if cents > MAX_CENTS:
        raise ValueError("is too large")
    return cents


def format_money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


# Dates repeat across the rows of a file (as_of, notice dates): valid ones are remembered.
_DATE_CACHE: dict[str, date] = {}
_DATE_CACHE_SIZE = 4096


def parse_date(value: Any) -> date:
    if type(value) is str:
        known = _DATE_CACHE.get(value)
        if known is not None:
            return known
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise ValueError("must be a date in the form YYYY-MM-DD")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise ValueError("is not a real date") from None
    if parsed < EARLIEST_DATE:
        raise ValueError("must not be before 1900-01-01")
    if type(value) is str:
        if len(_DATE_CACHE) >= _DATE_CACHE_SIZE:
            _DATE_CACHE.clear()
        _DATE_CACHE[value] = parsed
    return parsed


def parse_datetime(value: Any) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("must be an ISO 8601 date-time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time") from None
    if timezone.is_naive(parsed):
        raise ValueError("must include a time zone offset, e.g. 2026-01-31T09:00:00+08:00")
    return parsed


def _text(value: Any, *, max_length: int, what: str = "text") -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be {what}")
    if _CONTROL_RE.search(value):
        raise ValueError("must not contain control characters")
    if not value.strip():
        raise ValueError("must not be empty")
    if len(value) > max_length:
        raise ValueError(f"must be at most {max_length} characters")
    return value


def parse_payment_history(value: Any) -> str:
    if isinstance(value, list):
        if not all(isinstance(code, str) and len(code) == 1 for code in value):
            raise ValueError("must be a string of codes or a list of one-character codes")
        value = "".join(value)
    if not isinstance(value, str):
        raise ValueError("must be a string of monthly codes, oldest first")
    value = value.upper()
    if len(value) > 24:
        raise ValueError("holds at most 24 monthly codes")
    if PAYMENT_CODES.issuperset(value):
        return value
    bad = sorted({code for code in value if code not in PAYMENT_CODES})
    if bad:
        raise ValueError(f"has unknown codes {', '.join(repr(c) for c in bad)}; use N, 1-7, C, B, D, Z or *")
    return value


def raw_subjects_refused() -> bool:
    """EXCHANGE_RAW_SUBJECTS=refuse: subjects come blind only."""
    return settings.EXCHANGE_RAW_SUBJECTS == "refuse"


def _blind_output(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) > 100:
        raise ValueError(BLIND_MESSAGE)
    try:
        output = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(BLIND_MESSAGE) from None
    if len(output) != OUTPUT_BYTES:
        raise ValueError(BLIND_MESSAGE)
    return output


def parse_subject(
    raw: Any, errors: list[tuple[str, str]], *, typed_by_staff: bool = False
) -> tuple[str, str, str | None] | None:
    """Returns (id_type, token, name) or None, appending errors as ("subject.x", message).
    `typed_by_staff`: a raw ID typed in the console is taken even on a blind-only exchange.

    A raw subject carries `id_number`, normalised and evaluated here (core.tokens.subject_token);
    a blind one carries `blind`, the 64-byte VOPRF output the member obtained through the OPRF
    endpoints. Both give the same token for one borrower."""
    if not isinstance(raw, dict):
        errors.append(("subject", "must be an object with id_type and id_number (or blind)"))
        return None
    if "id_number" in raw and not typed_by_staff and raw_subjects_refused():
        # First, whatever else is wrong: the answer is raw_identifier_refused, not a field to fix.
        errors.append(("subject.id_number", RAW_REFUSED_MESSAGE))
        return None
    if not SUBJECT_FIELDS.issuperset(raw):
        errors.append(("subject", unknown_fields_message(set(raw) - SUBJECT_FIELDS, SUBJECT_FIELDS)))
    get = raw.get
    name = get("name")
    if name is not None:
        try:
            name = _text(name, max_length=200)
        except ValueError as exc:
            name = None
            errors.append(("subject.name", str(exc)))
    id_type, id_number, blind, country = get("id_type"), get("id_number"), get("blind"), get("country")
    if id_type is None:
        errors.append(("subject.id_type", "is required"))
        return None
    if id_number is not None and blind is not None:
        errors.append(("subject", "carries both id_number and blind: send one of them"))
        return None
    if blind == "":
        errors.append(("subject.blind", "is required"))
        return None
    if blind is not None:
        return _parse_blind(id_type, blind, country, name, errors)
    if id_number is None:
        if raw_subjects_refused():
            errors.append(("subject.blind", "is required"))
        else:
            errors.append(("subject.id_number", "is required (or blind, for a blind subject)"))
        return None
    try:
        normalised, country = normalize_subject(id_type, id_number, country)
    except IdentifierError as exc:
        errors.append((f"subject.{exc.field}", exc.message))
        return None
    return id_type, subject_token(id_type, normalised, country), name


def _parse_blind(id_type: Any, blind: Any, country: Any, name: str | None, errors: list) -> tuple | None:
    if id_type not in ID_TYPES:
        errors.append(("subject.id_type", f"must be one of {', '.join(ID_TYPES)}"))
        return None
    try:
        # The country is inside the blinded input already; when sent, it is only checked.
        if normalize_country(country) and id_type != "PASSPORT":
            errors.append(("subject.country", f"only passports carry a country, not {id_type}"))
            return None
    except IdentifierError as exc:
        errors.append((f"subject.{exc.field}", exc.message))
        return None
    try:
        output = _blind_output(blind)
    except ValueError as exc:
        errors.append(("subject.blind", str(exc)))
        return None
    return id_type, token_of_output(output), name


def invalid(errors: list[dict], detail: str | None = None) -> Invalid:
    """The 422 for these errors: `raw_identifier_refused` when a raw ID was among them (the
    exchange takes blind subjects only), `validation_failed` otherwise."""
    if any(error["message"] == RAW_REFUSED_MESSAGE for error in errors):
        return Invalid(errors, detail=RAW_REFUSED_DETAIL, code="raw_identifier_refused")
    return Invalid(errors, detail=detail)


def parse_record(raw: Any, *, today: date | None = None) -> ParsedRecord:
    """Validate one record; raise RecordErrors listing every problem as (field, message).

    Bulk files run every row through this: the fields are checked in a loop over _FIELDS (in the
    order their errors are listed) rather than through per-call closures, and `today` is best
    passed in once per batch."""
    if not isinstance(raw, dict):
        raise RecordErrors([("", "must be an object")])
    today = today or latest_today()
    errors: list[tuple[str, str]] = []
    values: dict[str, Any] = {}

    if not RECORD_FIELDS.issuperset(raw):
        errors.append(("", unknown_fields_message(set(raw) - RECORD_FIELDS, RECORD_FIELDS)))

    get = raw.get
    subject = None
    for name, parse, required, default in _FIELDS:
        if parse is None:  # the subject's place in the order of errors
            if "subject" in raw:
                subject = parse_subject(get("subject"), errors)
            else:
                errors.append(("subject", "is required"))
            continue
        value = get(name)
        if value is None:
            if required:
                errors.append((name, "is required"))
            else:
                values[name] = default
            continue
        try:
            values[name] = parse(value)
        except ValueError as exc:
            errors.append((name, str(exc)))

    opened, since, as_of = values.get("opened_on"), values.get("delinquent_since"), values.get("as_of")
    notice, settled_on = values.get("notice_sent_on"), values.get("settled_on")
    for name, value in (
        ("opened_on", opened),
        ("delinquent_since", since),
        ("as_of", as_of),
        ("notice_sent_on", notice),
        ("settled_on", settled_on),
    ):
        if value and value > today:
            errors.append((name, "must not be in the future"))
    if opened and since and opened > since:
        errors.append(("delinquent_since", "must be on or after opened_on"))
    if since and as_of and since > as_of:
        errors.append(("as_of", "must be on or after delinquent_since"))
    if notice and as_of and notice > as_of:
        errors.append(("notice_sent_on", "must be on or before as_of: the borrower is told before reporting"))
    status = values.get("status")
    if (
        status in _ENDED
        and "settled_on" in values
        and settled_on is None
        and "settled_on" not in {e[0] for e in errors}
    ):
        errors.append(("settled_on", f"is required when status is {status}"))
    if status and status not in _ENDED and get("settled_on") is not None:
        errors.append(("settled_on", f"must be absent when status is {status}"))

    if errors:
        raise RecordErrors(errors)
    id_type, token, name = subject
    return ParsedRecord(
        member_reference=values["member_reference"],
        id_type=id_type,
        subject_token=token,
        name=name,
        product=values["product"],
        currency=values["currency"],
        principal=values["principal"],
        amount_overdue=values["amount_overdue"],
        days_past_due=values["days_past_due"],
        status=status,
        opened_on=opened,
        delinquent_since=since,
        as_of=as_of,
        notice_sent_on=notice,
        settled_on=settled_on,
        payment_history=values["payment_history"],
    )


def _member_reference(value: Any) -> str:
    return _text(value, max_length=64, what="a string of 1 to 64 characters")


def _product(value: Any) -> str:
    return _choice(value, _PRODUCTS)


def _status(value: Any) -> str:
    return _choice(value, _STATUSES)


def _choice(value: Any, allowed: frozenset) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"must be one of {', '.join(sorted(allowed))}")
    return value


def _currency(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in ISO_4217:
        raise ValueError("must be an ISO 4217 currency code such as CNY")
    return value.upper()


def _non_negative_int(value: Any) -> int:
    """A count as a JSON number or as a string of digits (a CSV cell is always a string): the
    same bounds either way, so the JSON API and bulk files accept exactly the same values."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("-") and _COUNT_RE.match(text[1:]):
            raise ValueError("must be 0 or more")
        if not _COUNT_RE.match(text):
            raise ValueError("must be a whole number, 0 or more")
        value = int(text)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number, 0 or more")
    if value < 0:
        raise ValueError("must be 0 or more")
    if value > MAX_DAYS_PAST_DUE:
        raise ValueError("is implausibly large")
    return value


# (field, parser, required, default when absent) in the order parse_record checks them; the
# parser None marks where the subject is checked.
_FIELDS: tuple[tuple[str, Any, bool, Any], ...] = (
    ("member_reference", _member_reference, True, None),
    ("subject", None, True, None),
    ("product", _product, True, None),
    ("currency", _currency, False, "CNY"),
    ("principal", parse_money, True, None),
    ("amount_overdue", parse_money, True, None),
    ("days_past_due", _non_negative_int, True, None),
    ("status", _status, True, None),
    *((name, parse_date, True, None) for name in REQUIRED_DATES),
    ("settled_on", parse_date, False, None),
    ("payment_history", parse_payment_history, False, ""),
)
