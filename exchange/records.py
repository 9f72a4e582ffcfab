"""Records: the API's record services and the one writer behind them and behind bulk files.

`records_write` stores validated records as new records or new versions, with one `record.submit`
audit event per version inserted already sealed (audit.services.insert_sealed). A JSON batch
(`records_store`) and a bulk file's chunk (exchange.bulk.worker) both go through it: COPY on
PostgreSQL, the ORM's bulk_create elsewhere, the same plan and the same events either way.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

from audit.actions import Action
from audit.services import audit_write, insert_sealed
from core.copy import NULL, copy_lines, copy_text
from core.crypto import encrypt
from core.problems import Invalid
from core.tokens import blind_index
from exchange.models import Record, RecordVersion
from exchange.services import Caller, audit_denied, owned_or_404
from exchange.validation import ParsedRecord, RecordErrors, invalid, parse_record
from members.models import Member

REFERENCE_PURPOSE = "member_reference"
MAX_BATCH = 1000  # records in one POST /records
MAX_WITHDRAW_REASON = 500  # characters
LOOKUP_BATCH = 900  # parameters per IN (...) lookup, under SQLite's limit


def reference_index(member: Member, reference: str) -> str:
    return blind_index(REFERENCE_PURPOSE, str(member.pk), reference)


# --- the API's record services -----------------------------------------------------------------


def parse_batch(raw_records: Any) -> list[ParsedRecord]:
    """Validate a whole batch; raise Invalid listing every error by index (nothing is stored)."""
    errors: list[dict] = []
    parsed: list[ParsedRecord] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_records):
        try:
            record = parse_record(raw)
        except RecordErrors as exc:
            errors += [{"index": index, "field": field or None, "message": message} for field, message in exc.errors]
            continue
        first = seen.setdefault(record.member_reference, index)
        if first != index:
            errors.append(
                {"index": index, "field": "member_reference", "message": f"repeats the reference of record {first}"}
            )
            continue
        parsed.append(record)
    if errors:
        raise invalid(errors)
    return parsed


def records_store(
    *, member: Member, actor: str, records: list[ParsedRecord], submission_id: uuid.UUID | None = None
) -> list[dict]:
    """Store validated records (new ones, or new versions by reference) with one audit event each.

    Runs in the caller's transaction; returns one result per record, in order. Written set-wise by
    `records_write`: a batch is a few statements, not one ORM save per record.
    """
    if not records:
        return []
    planned = records_write(member=member, actor=actor, records=records, submission_id=submission_id)
    return [
        {"id": str(record_id), "version": version, "created": created}
        for _index, record_id, version, created in planned
    ]


def records_submit(*, caller: Caller, raw_records: Any) -> list[dict]:
    """`POST /records`: all or nothing. Returns [{"index","id","member_reference","version","created"}]."""
    count = len(raw_records) if isinstance(raw_records, list) else None
    if count is None or not 1 <= count <= MAX_BATCH:
        audit_denied(caller, Action.RECORD_SUBMIT, "validation_failed", records=count or 0)
        shape = f"not {count}" if count is not None else "as a list"
        raise Invalid([{"index": None, "field": "records", "message": f"must hold 1 to {MAX_BATCH} records, {shape}"}])
    try:
        parsed = parse_batch(raw_records)
    except Invalid as exc:
        audit_denied(caller, Action.RECORD_SUBMIT, exc.problem_code, records=len(raw_records), errors=len(exc.errors))
        raise
    for attempt in range(2):
        try:
            with transaction.atomic():
                stored = records_store(member=caller.member, actor=caller.actor, records=parsed)
            break
        except IntegrityError:
            # A concurrent batch created one of these references first: retry once as new versions.
            if attempt == 1:
                raise
    return [
        {
            "index": i,
            "id": s["id"],
            "member_reference": r.member_reference,
            "version": s["version"],
            "created": s["created"],
        }
        for i, (r, s) in enumerate(zip(parsed, stored, strict=True))
    ]


def record_get(*, caller: Caller, record_id: Any, action: str = Action.RECORD_READ) -> Record:
    """A record of the caller's own; another member's record is 'not found', never 'forbidden'."""
    return owned_or_404(caller, Record.objects.with_disputed(), record_id, action=action, object_type="record")


def record_withdraw(*, caller: Caller, record_id: Any, reason: str) -> Record:
    # Found (or refused, with the refusal audited) before the change's transaction opens.
    record = record_get(caller=caller, record_id=record_id, action=Action.RECORD_WITHDRAW)
    reason = reason.strip() if isinstance(reason, str) else ""
    if not 1 <= len(reason) <= MAX_WITHDRAW_REASON:
        audit_denied(caller, Action.RECORD_WITHDRAW, "validation_failed", object_type="record", object_id=record.pk)
        message = "may not be blank" if not reason else f"must be at most {MAX_WITHDRAW_REASON} characters"
        raise Invalid([{"index": None, "field": "reason", "message": message}])
    with transaction.atomic():
        withdraw_locked(caller=caller, record=record, reason=reason)
    return Record.objects.with_disputed().get(pk=record.pk)


def withdraw_locked(*, caller: Caller, record: Record, reason: str, **details) -> Record:
    """Withdraw a record inside the caller's transaction (row locked), with its audit event.

    Shared by the API's withdrawal and a dispute resolved as `deleted`; `details` adds context
    (e.g. the dispute) to the event.
    """
    record = Record.objects.select_for_update().get(pk=record.pk)
    already = record.withdrawn_at is not None
    if not already:
        record.withdrawn_at = timezone.now()
        record.withdraw_reason = reason
        record.updated_at = record.withdrawn_at
        record.save(update_fields=["withdrawn_at", "withdraw_reason", "updated_at"])
    audit_write(
        action=Action.RECORD_WITHDRAW,
        actor=caller.actor,
        member_code=caller.member.code,
        object_type="record",
        object_id=record.pk,
        subject_token=record.subject_token,
        details={"already_withdrawn": already, "version": record.version, **details},
    )
    return record


# --- the writer ----------------------------------------------------------------------------------

_RECORD_UPDATE_FIELDS = (*Record.DATA_FIELDS, "name", "version", "withdrawn_at", "withdraw_reason", "updated_at")


def records_write(
    *,
    member: Member,
    actor: str,
    records: list[ParsedRecord] | None = None,
    prepared: list[tuple] | None = None,
    submission_id: uuid.UUID | None = None,
) -> list[tuple[str, str, int, bool]]:
    """Store validated records as new records or new versions (a reference seen earlier, in the
    database or in this list, gets the next version), with one `record.submit` audit event per
    version. Runs in the caller's transaction; returns, per record in order, what it became:
    (reference index, record id, version, created).

    On PostgreSQL `prepared` (from `prepare_rows`, possibly made in a bulk reader process) may
    stand for `records`; elsewhere `records` is needed."""
    if not records and not prepared:
        return []
    now = timezone.now()
    if connection.vendor == "postgresql":
        if prepared is None:
            prepared = prepare_rows(member, records or [])
        planned, existed = _plan(member, [(p[0], p[1]) for p in prepared])
        _copy_store(member, submission_id, now, prepared, planned, existed)
        tokens = [p[7] for p in prepared]
    else:
        records = records or []
        planned, existed = _plan(
            member, [(reference_index(member, r.member_reference), str(uuid.uuid4())) for r in records]
        )
        _orm_store(member, submission_id, now, records, planned, existed)
        tokens = [r.subject_token for r in records]
    submission = str(submission_id or "")
    insert_sealed(
        [
            {
                "action": Action.RECORD_SUBMIT,
                "actor": actor,
                "member_code": member.code,
                "object_type": "record",
                "object_id": record_id,
                "subject_token": token,
                "details": {"version": version, "created": created, "submission": submission},
                "occurred_at": now,
            }
            for (_index, record_id, version, created), token in zip(planned, tokens, strict=True)
        ]
    )
    return planned


def _plan(member: Member, rows: list[tuple[str, str]]) -> tuple[list[tuple[str, str, int, bool]], set[str]]:
    """Per (reference index, id of its own if new) row, in order: (index, record id, version,
    created); and the indexes that existed before. The member's records with these references
    are locked for the transaction."""
    state = _locked_versions(member, [index for index, _own in rows])
    existed = set(state)
    planned = []
    for index, own_id in rows:
        current = state.get(index)
        record_id, version = (own_id, 1) if current is None else (current[0], current[1] + 1)
        state[index] = (record_id, version)
        planned.append((index, record_id, version, version == 1 and index not in existed))
    return planned, existed


def _locked_versions(member: Member, indexes: list[str]) -> dict[str, tuple[str, int]]:
    """(record id, version) of the member's records with these reference indexes, locked."""
    unique = sorted(set(indexes))
    if not unique:
        return {}
    if connection.vendor == "postgresql":
        # One statement, the references as one array parameter.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT reference_index, id, version FROM {connection.ops.quote_name(Record._meta.db_table)} "  # noqa: S608
                "WHERE member_id = %s AND reference_index = ANY(%s) ORDER BY reference_index FOR UPDATE",
                [member.pk, unique],
            )
            return {index: (str(record_id), version) for index, record_id, version in cursor}
    found: dict[str, tuple[str, int]] = {}
    for start in range(0, len(unique), LOOKUP_BATCH):
        rows = (
            Record.objects.select_for_update()
            .filter(member=member, reference_index__in=unique[start : start + LOOKUP_BATCH])
            .values_list("reference_index", "id", "version")
        )
        for index, record_id, version in rows:
            found[index] = (str(record_id), version)
    return found


def _data(record: ParsedRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in Record.DATA_FIELDS}


def _orm_store(member, submission_id, now: datetime, records, planned, existed: set[str]) -> None:
    """bulk_create: the fields encrypt in pre_save, bound to the row they are saved in."""
    final: dict[str, tuple[ParsedRecord, str, int]] = {}  # record id -> its last version here
    for record, (index, record_id, version, _created) in zip(records, planned, strict=True):
        final[record_id] = (record, index, version)
    new: list[Record] = []
    changed: list[Record] = []
    for record_id, (record, index, version) in final.items():
        row = Record(
            id=record_id,
            member=member,
            reference_index=index,
            member_reference=record.member_reference,
            name=record.name,
            version=version,
            created_at=now,
            updated_at=now,
            **_data(record),
        )
        (changed if index in existed else new).append(row)
    if new:
        Record.objects.bulk_create(new, batch_size=1000)
    if changed:
        Record.objects.bulk_create(
            changed,
            batch_size=1000,
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=list(_RECORD_UPDATE_FIELDS),
        )
    RecordVersion.objects.bulk_create(
        [
            RecordVersion(
                record_id=record_id,
                member=member,
                version=version,
                submission_id=submission_id,
                name=record.name,
                created_at=now,
                **_data(record),
            )
            for record, (_index, record_id, version, _created) in zip(records, planned, strict=True)
        ],
        batch_size=1000,
    )


# --- COPY (PostgreSQL) ---------------------------------------------------------------------------
#
# The rows are formatted here as COPY text, without a per-value adapter: the costly per-row work
# (reference index, ids, three AES-GCM encryptions, the text of the data fields) is done by
# `prepare_rows` ahead of the transaction, possibly in a bulk reader process; the transaction then
# only looks the references up, numbers the versions and sends the text. Every value formatted here
# is validated (enumerations, ISO dates, integers, hex) or made here (ids, ciphertexts as bytea
# hex); text that is not is escaped with copy_text.

# Columns of the COPY text, in the order prepare_rows and _copy_store write them.
_RECORD_COPY_COLUMNS = (
    *Record.DATA_FIELDS,
    "name",
    "id",
    "member_id",
    "reference_index",
    "member_reference",
    "version",
    "withdrawn_at",
    "withdraw_reason",
    "created_at",
    "updated_at",
)
_VERSION_COPY_COLUMNS = (
    *Record.DATA_FIELDS,
    "name",
    "id",
    "record_id",
    "member_id",
    "version",
    "submission_id",
    "created_at",
)
for _model, _columns in ((Record, _RECORD_COPY_COLUMNS), (RecordVersion, _VERSION_COPY_COLUMNS)):
    # A field added to the model must be added here too (rather than silently left NULL).
    if sorted(_columns) != sorted(f.attname for f in _model._meta.concrete_fields):
        raise RuntimeError(f"exchange.records: the COPY columns of {_model.__name__} do not match its fields")


def _aad_prefix(model: type[models.Model], name: str) -> str:
    # field_aad(model, field, pk) for a UUID pk, the prefix computed once: "<table>|<column>|".
    return f"{model._meta.db_table}|{model._meta.get_field(name).column}|"


def _sealed(value: str | None, aad_prefix: str, pk: str) -> str:
    """COPY text of `value` encrypted for its row (bytea hex), as EncryptedTextField.pre_save would."""
    if value is None:
        return NULL
    return "\\\\x" + encrypt(value, aad=(aad_prefix + pk).encode()).hex()


def prepare_rows(member: Member, records: list[ParsedRecord]) -> list[tuple]:
    """Per record, everything of its COPY rows that does not depend on the database, as if its
    reference were new: (reference index, record id, version id, data fields as COPY text, sealed
    member_reference, sealed record name, sealed version name, subject token, member_reference,
    name). Picklable, so a reader process can make it; plaintext stays in memory only."""
    reference_aad = _aad_prefix(Record, "member_reference")
    name_aad = _aad_prefix(Record, "name")
    version_name_aad = _aad_prefix(RecordVersion, "name")
    text = copy_text
    rows = []
    for r in records:
        record_id, version_id = str(uuid.uuid4()), str(uuid.uuid4())
        settled_on = r.settled_on.isoformat() if r.settled_on is not None else NULL
        data = (
            f"{text(r.subject_token)}\t{text(r.id_type)}\t{text(r.product)}\t{text(r.currency)}\t"
            f"{int(r.principal)}\t{int(r.amount_overdue)}\t{int(r.days_past_due)}\t{text(r.status)}\t"
            f"{r.opened_on.isoformat()}\t{r.delinquent_since.isoformat()}\t{r.as_of.isoformat()}\t"
            f"{r.notice_sent_on.isoformat()}\t{settled_on}\t{text(r.payment_history)}"
        )
        rows.append(
            (
                reference_index(member, r.member_reference),
                record_id,
                version_id,
                data,
                _sealed(r.member_reference, reference_aad, record_id),
                _sealed(r.name, name_aad, record_id),
                _sealed(r.name, version_name_aad, version_id),
                r.subject_token,
                r.member_reference,
                r.name,
            )
        )
    return rows


def _copy_store(member, submission_id, now: datetime, prepared, planned, existed: set[str]) -> None:
    """New records by COPY, changed records through a COPY-filled staging table and one UPDATE,
    and every version by COPY."""
    quote = connection.ops.quote_name
    table = quote(Record._meta.db_table)
    reference_aad = _aad_prefix(Record, "member_reference")
    name_aad = _aad_prefix(Record, "name")
    now_text = now.isoformat()
    member_text = str(member.pk)
    submission_text = str(submission_id) if submission_id else NULL
    final: dict[str, tuple[tuple, int]] = {}  # record id -> (prepared row, version) of its last version here
    versions: list[str] = []
    for p, (_index, record_id, version, _created) in zip(prepared, planned, strict=True):
        final[record_id] = (p, version)
        versions.append(
            f"{p[3]}\t{p[6]}\t{p[2]}\t{record_id}\t{member_text}\t{version}\t{submission_text}\t{now_text}\n"
        )
    new: list[str] = []
    changed: list[str] = []
    for record_id, (p, version) in final.items():
        index, own_id, _vid, data, reference, name = p[:6]
        if record_id != own_id:  # stored under another row's id: seal for that row instead
            reference = _sealed(p[8], reference_aad, record_id)
            name = _sealed(p[9], name_aad, record_id)
        line = (
            f"{data}\t{name}\t{record_id}\t{member_text}\t{index}\t{reference}\t{version}\t"
            f"{NULL}\t{NULL}\t{now_text}\t{now_text}\n"
        )
        (changed if index in existed else new).append(line)
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor
        if new:
            copy_lines(cursor, Record, _RECORD_COPY_COLUMNS, new)
        if changed:
            stage = "exchange_bulk_record_stage"
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            copy_lines(cursor, Record, _RECORD_COPY_COLUMNS, changed, table=stage)
            columns = [Record._meta.get_field(name).column for name in _RECORD_UPDATE_FIELDS]
            updates = ", ".join(f"{quote(c)} = s.{quote(c)}" for c in columns)
            cursor.execute(f"UPDATE {table} AS r SET {updates} FROM {stage} AS s WHERE r.id = s.id")  # noqa: S608
            cursor.execute(f"TRUNCATE {stage}")
        copy_lines(cursor, RecordVersion, _VERSION_COPY_COLUMNS, versions)
