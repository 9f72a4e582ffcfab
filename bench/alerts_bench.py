"""Benchmark of `compliance_alerts`: the alert rules over 24 hours of an exchange holding millions
of inquiries, with the plans of their queries.

    .venv/bin/python bench/alerts_bench.py --pgdir /tmp/perf-alerts [--inquiries 10000000] [--days 30]

DIR is a data set kept by `bench/perf/run.py --pgdir DIR --keep` (its PERF members are used), or an
empty folder (a fresh cluster with 20 members). Synthetic inquiries are added inside PostgreSQL
(`generate_series`) until the table holds `--inquiries`, spread evenly over `--days` days across 20
members (each member's 7-day baseline is then steady), plus in the last 24 hours one member fishing
(a burst of distinct subjects in one hour) and refusals in the audit log (consent denials, evidence
reuse, aggregated quota refusals). Then `compliance_alerts --json` runs three times (the first cold),
each timed, and every SELECT it sent is shown with EXPLAIN (ANALYZE, BUFFERS).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.perf import run as perf  # noqa: E402

MEMBERS = 20
BURST = 3000  # distinct subjects the fishing member queries in one hour


def log(message: str) -> None:
    print(f"[alerts-bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_members(cursor) -> list:
    cursor.execute("SELECT id FROM members_member WHERE code LIKE 'PERF%%' ORDER BY code")
    ids = [row[0] for row in cursor.fetchall()]
    if len(ids) >= MEMBERS:
        return ids[:MEMBERS]
    from members.services import member_create

    for n in range(len(ids), MEMBERS):
        member_create(code=f"PERF{n:02d}", name=f"Perf member {n}", kind="bank", actor="bench")
    return ensure_members(cursor)


def grow(cursor, *, target: int, days: int) -> dict:
    cursor.execute("SELECT count(*) FROM exchange_inquiry")
    have = cursor.fetchone()[0]
    added = max(0, target - have)
    started = time.perf_counter()
    members = "(SELECT array_agg(id ORDER BY code) FROM members_member WHERE code LIKE 'PERF%%')"
    subjects = max(target // 4, 1)
    if added:
        cursor.execute(
            f"""
            INSERT INTO exchange_inquiry (id, member_id, subject_token, consent_id, purpose, created_at, result,
                line_records)
            SELECT gen_random_uuid(), m.ids[1 + g % {MEMBERS}],
                   encode(sha256(('alert-subject-' || (g::bigint * 7919 % {subjects}))::bytea), 'hex'), NULL,
                   'credit_application', now() - make_interval(secs => (g * 86400.0 * {days} / {added})::int),
                   '{{}}', '[]'
              FROM generate_series(1, {added}) AS g CROSS JOIN {members} AS m(ids)
            """
        )
    inquiry_seconds = time.perf_counter() - started
    if not added:  # the activity below was added when the data set was grown
        cursor.execute("VACUUM ANALYZE exchange_inquiry")
        return {"inquiries_before": have, "inquiries_added": 0}
    # The fisher: PERF00 queries BURST distinct new subjects within one hour, 3 hours ago.
    cursor.execute(
        f"""
        INSERT INTO exchange_inquiry (id, member_id, subject_token, consent_id, purpose, created_at, result,
            line_records)
        SELECT gen_random_uuid(), m.ids[1], encode(sha256(('alert-fishing-' || g || '-' || now())::bytea), 'hex'),
               NULL, 'credit_application',
               date_trunc('hour', now()) - interval '3 hours' + make_interval(secs => g % 3600), '{{}}', '[]'
          FROM generate_series(1, {BURST}) AS g CROSS JOIN {members} AS m(ids)
        """
    )
    # Refusals in the audit log over the last 24 hours: PERF01 is refused consent 60 times in an
    # hour, PERF02 reuses evidence twice, PERF03 hits its quota (aggregated events carrying a count),
    # and every member gets a background of scattered refusals.
    cursor.execute(
        f"""
        INSERT INTO audit_auditevent (occurred_at, actor, member_code, action, object_type, object_id,
            subject_token, outcome, request_id, details)
        SELECT ts, 'member:' || code, code, action, '', '', '', 'denied', '', details::jsonb
          FROM (
            SELECT date_trunc('hour', now()) - interval '5 hours' + make_interval(secs => g * 50) AS ts,
                   'PERF01' AS code, 'inquiry.create' AS action, '{{"why": "consent_not_found"}}' AS details
              FROM generate_series(1, 60) AS g
            UNION ALL
            SELECT now() - make_interval(mins => g * 7), 'PERF02', 'consent.register',
                   '{{"why": "consent_evidence_reused"}}' FROM generate_series(1, 2) AS g
            UNION ALL
            SELECT now() - make_interval(mins => g), 'PERF03', 'inquiry.create',
                   '{{"why": "quota_exceeded", "count": 40}}' FROM generate_series(1, 30) AS g
            UNION ALL
            SELECT now() - make_interval(secs => g * 29), 'PERF' || lpad((g % {MEMBERS})::text, 2, '0'),
                   'inquiry.create', '{{"why": "consent_expired"}}' FROM generate_series(1, 2000) AS g
          ) AS refusals
        """
    )
    started_vacuum = time.perf_counter()
    cursor.execute("VACUUM ANALYZE exchange_inquiry")
    cursor.execute("VACUUM ANALYZE audit_auditevent")
    return {
        "inquiries_before": have,
        "inquiries_added": added,
        "inquiry_seconds": round(inquiry_seconds, 1),
        "vacuum_seconds": round(time.perf_counter() - started_vacuum, 1),
    }


def explain(cursor, sql: str, params) -> str:
    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
    return "\n".join(row[0] for row in cursor.fetchall())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pgdir", type=Path, required=True)
    parser.add_argument("--inquiries", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30, help="the inquiries are spread over this many days")
    parser.add_argument("--shared-buffers", default="2GB")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    perf.PG_SETTINGS.update(shared_buffers=args.shared_buffers, effective_cache_size="8GB")
    args.pgdir.mkdir(parents=True, exist_ok=True)
    pg = perf.Postgres(args.pgdir)
    pg.start()
    try:
        env = {**os.environ, **perf.BENCH_ENV, "DATABASE_URL": pg.url}
        log(f"PostgreSQL on port {pg.port} in {args.pgdir}; migrating")
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"], check=True, env=env)
        perf.django_setup(env)
        from django.core.management import call_command
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with connection.cursor() as cursor:
            ensure_members(cursor)
            log(f"growing exchange_inquiry to {args.inquiries:,} rows over {args.days} days")
            built = grow(cursor, target=args.inquiries, days=args.days)
            log(f"data: {built}")
            cursor.execute("SELECT count(*), min(created_at), max(created_at) FROM exchange_inquiry")
            count, oldest, newest = cursor.fetchone()
            cursor.execute("SELECT count(*) FROM exchange_inquiry WHERE created_at >= now() - interval '8 days'")
            in_reach = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM audit_auditevent")
            events = cursor.fetchone()[0]
        log(
            f"{count:,} inquiries ({oldest:%Y-%m-%d} to {newest:%Y-%m-%d}), {in_reach:,} in the rules' 8 days; "
            f"{events:,} audit events"
        )
        with connection.cursor() as cursor:
            # Cold: the first run counts the 7-day baseline's hours from the inquiries and rolls them up.
            cursor.execute("TRUNCATE exchange_inquiryhour, exchange_rolleduphour")
        timings, output, queries, cold = [], "", [], []
        for n in range(args.runs):
            out = StringIO()
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                call_command("compliance_alerts", "--json", stdout=out)
                timings.append(round(time.perf_counter() - started, 3))
            output, queries = out.getvalue(), captured.captured_queries
            cold = cold or queries
            log(f"run {n + 1}{' (cold)' if n == 0 else ''}: {timings[-1]} s, {len(queries)} queries")
        print("\nAlerts found:\n" + output)
        plans, seen = [], set()
        with connection.cursor() as cursor:
            for label, batch in (("cold run", cold), ("steady run", queries)):
                for query in batch:
                    sql = query["sql"]
                    reads = sql.lstrip().upper().startswith("SELECT") and "exchange_compliancealert" not in sql[:200]
                    if reads and sql not in seen and float(query["time"]) >= 0.001:
                        seen.add(sql)
                        plans.append((label, query["time"], sql, explain(cursor, sql, None)))
        for label, seconds, sql, plan in plans:
            print(f"\n-- {label}: {seconds} s\n{sql}\n{plan}")
        report = {
            "inquiries": count,
            "inquiries_in_8_days": in_reach,
            "audit_events": events,
            "build": built,
            "seconds": timings,
            "queries": len(queries),
        }
        print("\n" + json.dumps(report, indent=1, default=str))
        (args.pgdir / "alerts-report.json").write_text(json.dumps(report, indent=1, default=str))
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
