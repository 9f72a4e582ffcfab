"""Throughput of an audited write against the same write without its audit event (PostgreSQL).

    DATABASE_URL=postgres://... .venv/bin/python bench/audit_bench.py [--threads 8] [--seconds 10] [--rounds 2]

Each write is a small row insert through the ORM (as the application's own writes are) in its own
transaction; the audited one adds its audit event in the same transaction and seals after commit,
as in production (audit_write's on_commit hook). `--raw` writes the row with raw SQL instead,
the harshest baseline (no ORM cost at all on the plain side).
Both kinds run in the same process, alternating in rounds, with N writer threads each on its
own connection. It migrates the database and leaves bench events in the audit log (which is
append-only): point it at a throwaway database, never at production.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# A fixed, public bench key unless one is given: checkpoints need a key, and repeated runs on the
# same database must verify against the same one. Never a production key.
os.environ.setdefault("EXCHANGE_AUDIT_SIGNING_KEY", "YmVuY2gta2V5LW5vdC1zZWNyZXQtbm90LXByb2Qtb2s=")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, models, transaction  # noqa: E402

from audit.models import AuditEvent  # noqa: E402
from audit.sealing import seal_pending  # noqa: E402
from audit.services import audit_write  # noqa: E402
from audit.verify import verify_chain  # noqa: E402

TABLE = "bench_audit_row"
RAW = False


class BenchRow(models.Model):  # noqa: DJ008 - never displayed
    """A small row like the application's own; the table is made by this script, never migrated."""

    member_code = models.CharField(max_length=32)
    amount_minor = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "audit"
        db_table = TABLE
        managed = False


def write(audited: bool, number: int) -> None:
    with transaction.atomic():
        if RAW:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {TABLE} (member_code, amount_minor, created_at) VALUES (%s, %s, now()) RETURNING id",
                    ["BENCH", number],
                )
                row_id = cursor.fetchone()[0]
        else:
            row_id = BenchRow.objects.create(member_code="BENCH", amount_minor=number).id
        if audited:
            audit_write(
                action="bench.write",
                actor="bench",
                member_code="BENCH",
                object_type="bench_row",
                object_id=row_id,
                details={"amount_minor": number},
            )


def run(audited: bool, threads: int, seconds: float) -> tuple[int, float]:
    counts = [0] * threads
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()

    def worker(index: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait()
            while not stop.is_set():
                write(audited, counts[index])
                counts[index] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return sum(counts), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="per kind per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--verify", action="store_true", help="verify the whole chain afterwards")
    parser.add_argument("--raw", action="store_true", help="write the row with raw SQL (no ORM) on both sides")
    parser.add_argument(
        "--no-hot-seal", action="store_true", help="diagnosis: no sealing after commit, only the backstop at the end"
    )
    parser.add_argument(
        "--sealer-thread",
        action="store_true",
        help="seal on a background thread woken after commit, as gunicorn.conf.py does in production",
    )
    args = parser.parse_args()
    if args.sealer_thread:
        import audit.sealing

        audit.sealing.start_background_sealer()
    if args.no_hot_seal:
        import audit.sealing

        audit.sealing.seal_soon = lambda: None
    global RAW
    RAW = args.raw
    if connection.vendor != "postgresql":
        sys.exit("audit_bench runs on PostgreSQL: set DATABASE_URL=postgres://...")

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, member_code varchar(32) NOT NULL, "
            "amount_minor bigint NOT NULL, created_at timestamptz NOT NULL)"
        )
    seal_pending()
    connection.close()
    before = AuditEvent.objects.count()
    connection.close()

    totals = {False: [0, 0.0], True: [0, 0.0]}
    for round_number in range(1, args.rounds + 1):
        for audited in (False, True):
            ops, elapsed = run(audited, args.threads, args.seconds)
            totals[audited][0] += ops
            totals[audited][1] += elapsed
            label = "audited" if audited else "plain  "
            print(f"round {round_number} {label}: {ops} writes in {elapsed:.1f} s = {ops / elapsed:,.0f}/s", flush=True)

    unsealed = AuditEvent.objects.filter(seq__isnull=True).count()
    backstop = seal_pending().sealed
    events = AuditEvent.objects.count() - before
    plain = totals[False][0] / totals[False][1]
    audited = totals[True][0] / totals[True][1]
    print(
        f"threads={args.threads} seconds={args.seconds} rounds={args.rounds} row write={'raw SQL' if RAW else 'ORM'}"
        + (" (no sealing after commit)" if args.no_hot_seal else "")
        + (" (sealer thread)" if args.sealer_thread else "")
    )
    print(f"plain write:   {plain:,.0f} writes/s")
    print(f"audited write: {audited:,.0f} writes/s")
    print(f"ratio audited/plain: {audited / plain:.2f} (target >= 0.7)")
    print(f"events written: {events}; left unsealed after the run: {unsealed} (backstop sealed {backstop})")
    if args.verify:
        started = time.perf_counter()
        report = verify_chain()
        print(f"verify_audit: {report.summary()} in {time.perf_counter() - started:.1f} s")
    connection.close()


if __name__ == "__main__":
    main()
