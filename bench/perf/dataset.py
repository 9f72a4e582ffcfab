"""The harness's data set: N records over N/3 borrowers from 20 members, loaded through the
product's bulk path (`import_records`, COPY on PostgreSQL), plus consents and past inquiries.

Records go through `manage.py import_records` (validation, tokens, encryption, versions, audit
events, sealing), one CSV file per member, two imports at a time. Consents (one per borrower) and
past inquiries (N/2, spread over the last 120 days) are not what is measured, so they are written
with plain COPY for speed; their subject tokens come from `core.tokens.subject_token`, as the API's.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = 20
CSV_COLUMNS = (
    "member_reference,id_type,id_number,name,country,product,currency,principal,amount_overdue,"
    "days_past_due,status,opened_on,delinquent_since,as_of,notice_sent_on,settled_on,payment_history"
)
PRODUCTS = ("consumer_loan", "credit_line", "credit_card", "mortgage", "auto_loan", "business_loan", "bnpl")
# Status mix of a delinquency register: mostly open, some settled or written off.
STATUSES = ("delinquent",) * 6 + ("restructured",) + ("settled",) * 2 + ("written_off",)
HISTORY_CODES = "NNNNNN1234567C*"
_RIC_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_RIC_CHECK = "10X98765432"


def ric(n: int) -> str:
    """A valid, unique 18-character resident ID for borrower number n (n < 20 million)."""
    born = date(1940, 1, 1) + timedelta(days=n // 1000)
    body = f"110105{born:%Y%m%d}{n % 1000:03d}"
    return body + _RIC_CHECK[sum(int(c) * w for c, w in zip(body, _RIC_WEIGHTS, strict=True)) % 11]


def record_row(rng: random.Random, reference: str, borrower: int, today: date) -> str:
    status = rng.choice(STATUSES)
    as_of = today - timedelta(days=rng.randrange(0, 90))
    since = as_of - timedelta(days=rng.randrange(0, 720))
    opened = since - timedelta(days=rng.randrange(30, 1500))
    settled_on = as_of.isoformat() if status in ("settled", "written_off") else ""
    overdue = rng.randrange(10_000, 5_000_000)
    history = "".join(rng.choice(HISTORY_CODES) for _ in range(rng.randrange(6, 25)))
    return (
        f"{reference},CN_RIC,{ric(borrower)},Borrower {borrower % 99991},,{rng.choice(PRODUCTS)},CNY,"
        f"{overdue * 4 // 100}.00,{overdue // 100}.{overdue % 100:02d},{rng.randrange(1, 400)},{status},"
        f"{opened},{since},{as_of},{since},{settled_on},{history}\n"
    )


def record_json(rng: random.Random, reference: str, borrower: int, today: date) -> dict:
    cells = record_row(rng, reference, borrower, today).rstrip("\n").split(",")
    raw = {k: v for k, v in zip(CSV_COLUMNS.split(","), cells, strict=True) if v}
    raw["subject"] = {k: raw.pop(k) for k in ("id_type", "id_number", "name", "country") if k in raw}
    return raw


def write_csvs(folder: Path, records: int, borrowers: int, codes: list[str], seed: int = 7) -> list[Path]:
    """One CSV per member; record i belongs to a random borrower (about 3 each, some none)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    today = datetime.now(UTC).date()
    paths = [folder / f"{code}.csv" for code in codes]
    outs = [open(path, "w", encoding="utf-8", newline="") for path in paths]
    try:
        for out in outs:
            out.write(CSV_COLUMNS + "\n")
        for i in range(records):
            outs[i % len(outs)].write(record_row(rng, f"L{i:09d}", rng.randrange(borrowers), today))
    finally:
        for out in outs:
            out.close()
    return paths


def import_all(paths: list[Path], codes: list[str], env: dict, parallel: int) -> list[dict]:
    """`manage.py import_records CODE FILE` per member, `parallel` at a time (the product's bulk path)."""

    def one(pair):
        code, path = pair
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "import_records", code, str(path), "--no-progress"],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(one, zip(codes, paths, strict=True)))


def _copy_rows(cursor, table: str, columns: list[str], rows) -> None:
    with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def load_consents_and_inquiries(
    *, borrowers: int, members: list[dict], inquiries: int, seed: int = 11, first_borrower: int = 0
) -> dict[int, tuple[str, str]]:
    """One active consent per borrower (by a random member) and `inquiries` past inquiries, by COPY.

    Returns {borrower: (consent id, member code)}.
    """
    from django.db import connection, transaction

    from core.tokens import subject_token

    rng = random.Random(seed)
    now = datetime.now(UTC)
    granted, expires = now - timedelta(days=1), now + timedelta(days=300)
    evidence = "ab" * 32
    consents: dict[int, tuple[str, str]] = {}

    def consent_rows():
        for b in range(first_borrower, borrowers):
            member = members[rng.randrange(len(members))]
            consent_id = uuid.uuid4()
            consents[b] = (str(consent_id), member["code"])
            token = subject_token("CN_RIC", ric(b))
            yield (
                consent_id,
                member["id"],
                token,
                "CN_RIC",
                "credit_application",
                "app",
                evidence,
                granted,
                expires,
                None,
                granted,
            )

    def inquiry_rows():
        for _ in range(inquiries):
            b = rng.randrange(first_borrower, borrowers)
            member = members[rng.randrange(len(members))]
            at = now - timedelta(seconds=rng.randrange(0, 120 * 86400))
            yield (
                uuid.uuid4(),
                member["id"],
                subject_token("CN_RIC", ric(b)),
                None,
                "credit_application",
                at,
                '{"bench": "past inquiry"}',
                "[]",
            )

    with transaction.atomic(), connection.cursor() as cursor:
        _copy_rows(
            cursor,
            "exchange_consent",
            [
                "id",
                "member_id",
                "subject_token",
                "id_type",
                "purpose",
                "channel",
                "evidence_sha256",
                "granted_at",
                "expires_at",
                "revoked_at",
                "created_at",
            ],
            consent_rows(),
        )
        _copy_rows(
            cursor,
            "exchange_inquiry",
            ["id", "member_id", "subject_token", "consent_id", "purpose", "created_at", "result", "line_records"],
            inquiry_rows(),
        )
    return consents


def create_members(count: int = MEMBERS) -> list[dict]:
    from members.services import member_create

    made = []
    for n in range(count):
        code = f"PERF{n:02d}"
        member, _key, full = member_create(code=code, name=f"Perf member {n}", kind="bank", actor="bench")
        made.append({"code": code, "id": str(member.pk), "key": full})
    return made


def write_pools(
    workdir: Path, *, consents: dict[int, tuple[str, str]], members: list[dict], size: int, prefix: str = ""
) -> dict:
    """Request files for wrk: random borrowers with the consent their member registered."""
    from core.tokens import subject_token

    keys = {m["code"]: m["key"] for m in members}
    rng = random.Random(5)
    picks = rng.sample(sorted(consents), min(size, len(consents)))
    paths = {name: workdir / f"{prefix}{name}.lines" for name in ("inquiry", "floor", "constant")}
    with (
        open(paths["inquiry"], "w") as inquiry,
        open(paths["floor"], "w") as floor,
        open(paths["constant"], "w") as constant,
    ):
        for b in picks:
            consent_id, code = consents[b]
            body = {
                "subject": {"id_type": "CN_RIC", "id_number": ric(b)},
                "consent_id": consent_id,
                "purpose": "credit_application",
            }
            inquiry.write(f"{keys[code]}\t{json.dumps(body, separators=(',', ':'))}\n")
            floor.write(f"-\t{json.dumps({'token': subject_token('CN_RIC', ric(b))})}\n")
        constant.write("-\t{}\n")
    return {name: str(path) for name, path in paths.items()}


def build(*, workdir: Path, records: int, env: dict, parallel: int = 2) -> dict:
    """Create members, import the records, load consents and inquiries, analyse. Returns the
    data set's description (also saved as workdir/dataset.json)."""
    from django.db import connection

    borrowers = max(records // 3, 1)
    figures: dict = {"records": records, "borrowers": borrowers, "members": MEMBERS}
    members = create_members()
    started = time.perf_counter()
    paths = write_csvs(workdir / "csv", records, borrowers, [m["code"] for m in members])
    figures["csv_seconds"] = round(time.perf_counter() - started, 1)
    figures["csv_mb"] = round(sum(p.stat().st_size for p in paths) / 1e6, 1)
    print(f"  generated {records:,} records in {figures['csv_seconds']} s ({figures['csv_mb']} MB)", flush=True)

    started = time.perf_counter()
    results = import_all(paths, [m["code"] for m in members], env, parallel)
    seconds = time.perf_counter() - started
    accepted = sum(r["accepted"] for r in results)
    figures.update(
        import_seconds=round(seconds, 1),
        import_accepted=accepted,
        import_rejected=sum(r["rejected"] for r in results),
        import_rows_per_second=round(accepted / seconds),
        import_parallel=parallel,
    )
    print(f"  imported {accepted:,} records in {seconds:.0f} s ({accepted / seconds:,.0f} rows/s)", flush=True)
    for path in paths:
        path.unlink()

    started = time.perf_counter()
    inquiries = records // 2
    consents = load_consents_and_inquiries(borrowers=borrowers, members=members, inquiries=inquiries)
    figures.update(consents=len(consents), past_inquiries=inquiries)
    figures["consents_inquiries_seconds"] = round(time.perf_counter() - started, 1)
    print(f"  loaded {len(consents):,} consents, {inquiries:,} inquiries by COPY", flush=True)
    started = time.perf_counter()
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    figures["vacuum_analyze_seconds"] = round(time.perf_counter() - started, 1)
    figures["pools"] = write_pools(workdir, consents=consents, members=members, size=50_000)
    figures["member_keys"] = members
    (workdir / "dataset.json").write_text(json.dumps(figures, indent=1))
    os.sync()
    return figures


def scale_up(*, workdir: Path, records: int) -> dict:
    """Grow a built data set to `records` rows with synthetic ones generated inside PostgreSQL
    (`generate_series`), NOT through the bulk path, which runs at about 1,500 rows/s on the shared
    2-vCPU machine (10 million would take about two hours; writing the rows from Python by COPY
    ran at about 2,000 rows/s there too).

    The synthetic rows belong to about N/3 new subjects whose tokens are SHA-256 values of a
    counter, not HMACs of IDs: no request can name them. They make the record, inquiry and consent
    tables and their indexes as large as an N-record exchange's (same value mix, N/2 inquiries, a
    consent per new subject), while the requests keep picking imported borrowers. Their encrypted
    reference is copied from one imported record and does not decrypt: point the staff console
    elsewhere. No versions or audit events are written for them.
    """
    from django.db import connection

    dataset = json.loads((workdir / "dataset.json").read_text())
    add = records - dataset["records"]
    subjects = max(add // 3, 1)
    inquiries = records // 2 - dataset["past_inquiries"]
    started = time.perf_counter()
    statuses = "ARRAY['delinquent','delinquent','delinquent','delinquent','delinquent','delinquent','restructured',"
    statuses += "'settled','settled','written_off']"
    products = "ARRAY[" + ",".join(f"'{p}'" for p in PRODUCTS) + "]"
    members = "(SELECT array_agg(id ORDER BY code) FROM members_member WHERE code LIKE 'PERF%')"
    token_sql = "encode(sha256(('scale-subject-' || ({expr}))::bytea), 'hex')"  # noqa: S105 - SQL, not a secret
    # No parameters: the statements are run as they are (their % are SQL's modulo).
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO exchange_record (id, member_id, reference_index, member_reference, name, version,
                withdrawn_at, withdraw_reason, created_at, updated_at, subject_token, id_type, product, currency,
                principal, amount_overdue, days_past_due, status, opened_on, delinquent_since, as_of,
                notice_sent_on, settled_on, payment_history)
            SELECT gen_random_uuid(), m.ids[1 + g % 20], encode(sha256(('scale-ref-' || g)::bytea), 'hex'),
                   t.member_reference, NULL, 1, NULL, NULL, now(), now(), {token_sql.format(expr=f"g % {subjects}")},
                   'CN_RIC', ({products})[1 + g % 7], 'CNY', 4 * (10000 + g * 31 % 5000000),
                   10000 + g * 31 % 5000000, 1 + g % 400, s.status, d.since - 30 - g * 17 % 1500, d.since,
                   d.as_of, d.since, CASE WHEN s.status IN ('settled', 'written_off') THEN d.as_of END, 'NNNN12'
              FROM generate_series(1, {add}) AS g
                   CROSS JOIN {members} AS m(ids)
                   CROSS JOIN (SELECT member_reference FROM exchange_record LIMIT 1) AS t
                   CROSS JOIN LATERAL (SELECT ({statuses})[1 + g * 7 % 10] AS status) AS s
                   CROSS JOIN LATERAL (SELECT current_date - g % 90 AS as_of,
                                              current_date - g % 90 - g * 13 % 720 AS since) AS d
            """
        )
        record_seconds = time.perf_counter() - started
        print(f"  generated {add:,} synthetic records in {record_seconds:.0f} s", flush=True)
        cursor.execute(
            f"""
            INSERT INTO exchange_inquiry (id, member_id, subject_token, consent_id, purpose, created_at, result,
                line_records)
            SELECT gen_random_uuid(), m.ids[1 + g % 20], {token_sql.format(expr=f"g * 7 % {subjects}")}, NULL,
                   'credit_application', now() - make_interval(secs => g % 10368000),
                   '{{"bench": "past inquiry"}}', '[]'
              FROM generate_series(1, {inquiries}) AS g CROSS JOIN {members} AS m(ids)
            """
        )
        cursor.execute(
            f"""
            INSERT INTO exchange_consent (id, member_id, subject_token, id_type, purpose, channel, evidence_sha256,
                granted_at, expires_at, revoked_at, created_at)
            SELECT gen_random_uuid(), m.ids[1 + g % 20], {token_sql.format(expr="g")}, 'CN_RIC', 'credit_application',
                   'app', repeat('ab', 32), now() - interval '1 day', now() + interval '300 days', NULL,
                   now() - interval '1 day'
              FROM generate_series(0, {subjects - 1}) AS g CROSS JOIN {members} AS m(ids)
            """
        )
        cursor.execute("VACUUM ANALYZE")
    dataset.update(
        records=records,
        consents=dataset["consents"] + subjects,
        past_inquiries=records // 2,
        synthetic_records=add,
        synthetic_subjects=subjects,
        synthetic_seconds=round(time.perf_counter() - started, 1),
    )
    (workdir / "dataset.json").write_text(json.dumps(dataset, indent=1))
    return dataset
