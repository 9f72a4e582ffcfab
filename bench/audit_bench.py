"""Throughput of an audited write against the same write without its audit event (PostgreSQL).

    DATABASE_URL=postgres://... .venv/bin/python bench/audit_bench.py [--writers 8] [--seconds 8] [--rounds 2]
        [--threads] [--path product|transaction|consent] [--seal thread|request|none]

Each write stores one small row like the application's own (a UUID key, a few columns). The plain
write stores only the row; the audited one stores the row and its audit event as the product does:
`audit.services.insert_audited`, which on PostgreSQL writes both in one statement (one round trip,
one commit), then has the event sealed after commit by the process's sealer thread, as every
gunicorn worker does (gunicorn.conf.py). `--path transaction` is the general form instead: BEGIN,
the row through the ORM, `audit_write`, COMMIT, against BEGIN, the row, COMMIT.

The writers are separate processes by default, each with its own connection and its own sealer
thread, as gunicorn's workers are (`--threads`: threads of one process instead, which then share one
interpreter lock). Both kinds run in the same run, alternating in rounds. It migrates the database
and leaves bench events in the audit log (which is append-only): point it at a throwaway database,
never at production.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# A fixed, public bench key unless one is given: checkpoints need a key, and repeated runs on the
# same database must verify against the same one. Never a production key.
os.environ.setdefault("EXCHANGE_AUDIT_SIGNING_KEY", "YmVuY2gta2V5LW5vdC1zZWNyZXQtbm90LXByb2Qtb2s=")
os.environ.setdefault("EXCHANGE_OPRF_KEY", "YmVuY2gtb3ByZi1zZWVkLW5vdC1zZWNyZXQtbm90LW8=")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, models, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from audit import sealing  # noqa: E402
from audit.models import AuditEvent  # noqa: E402
from audit.services import audit_write, insert_audited  # noqa: E402
from audit.verify import verify_chain  # noqa: E402
from bench.perf.dataset import ric  # noqa: E402
from core.prepared import insert_one  # noqa: E402

TABLE = "bench_audit_row"


class BenchRow(models.Model):  # noqa: DJ008 - never displayed
    """A small row like the application's own; the table is made by this script, never migrated."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    member_code = models.CharField(max_length=32)
    amount_minor = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "audit"
        db_table = TABLE
        managed = False


_CONSENT: dict = {}


def consent_write(audited: bool, number: int) -> None:
    """The product's consent registration (`exchange.consents.consent_register`: subject parsed
    and tokenised, dates checked, the consent and its event stored). Without its event: the same
    subject parsing and the same row, stored alone by `insert_one` (the date checks, a few
    comparisons, are left out)."""
    from exchange import consents, services
    from exchange.models import Consent

    if not _CONSENT:
        from members.models import Member

        member = Member.objects.get(code="BENCHAUDIT")
        _CONSENT["caller"] = services.Caller(member=member, actor="key:bench")
    caller = _CONSENT["caller"]
    now = timezone.now()
    subject = {"id_type": "CN_RIC", "id_number": ric(number)}
    arguments = {
        "purpose": "credit_application",
        "channel": "app",
        "granted_at": now,
        "expires_at": now + timedelta(days=90),
        "evidence_sha256": "ab" * 32,
    }
    if audited:
        consents.consent_register(caller=caller, subject=subject, **arguments)
        return
    id_type, token = services.parse_subject_or_invalid(subject)
    insert_one(Consent(member=caller.member, subject_token=token, id_type=id_type, **arguments))


def write(audited: bool, number: int, path: str) -> None:
    if path == "consent":
        consent_write(audited, number)
        return
    row = BenchRow(member_code="BENCH", amount_minor=number)
    if path == "product":
        if audited:
            insert_audited(
                row,
                action="bench.write",
                actor="bench",
                member_code="BENCH",
                object_type="bench_row",
                details={"amount_minor": number},
            )
        else:
            insert_one(row)
        return
    with transaction.atomic():
        row.save(force_insert=True)
        if audited:
            audit_write(
                action="bench.write",
                actor="bench",
                member_code="BENCH",
                object_type="bench_row",
                object_id=row.id,
                details={"amount_minor": number},
            )


def _writer(audited: bool, path: str, seal: str, ready, stop, report) -> None:
    """One writer: its own connection (and, with seal=thread, its own sealer thread)."""
    count = 0
    try:
        connection.ensure_connection()
        ready()
        while not stop.is_set():
            write(audited, count, path)
            count += 1
    finally:
        report(count)
        connection.close()


def _process_main(audited, path, seal, barrier, stop, counts, index) -> None:
    connection.close()  # the parent's connection is not ours
    if seal == "thread":
        sealing.start_background_sealer()
    elif seal == "none":
        sealing.seal_soon = lambda: None

    def report(count):
        counts[index] = count

    _writer(audited, path, seal, barrier.wait, stop, report)
    if seal == "thread":
        sealing.stop_background_sealer()
        connection.close()


def run(audited: bool, *, writers: int, seconds: float, path: str, seal: str, threads: bool) -> tuple[int, float]:
    if threads:
        counts = [0] * writers
        barrier = threading.Barrier(writers + 1)
        stop = threading.Event()
        errors: list[BaseException] = []

        def target(index):
            def report(count):
                counts[index] = count

            try:
                _writer(audited, path, seal, barrier.wait, stop, report)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        pool = [threading.Thread(target=target, args=(i,)) for i in range(writers)]
    else:
        context = multiprocessing.get_context("fork")
        counts = context.Array("q", writers)
        barrier = context.Barrier(writers + 1)
        stop = context.Event()
        errors = []
        connection.close()
        pool = [
            context.Process(target=_process_main, args=(audited, path, seal, barrier, stop, counts, i))
            for i in range(writers)
        ]
    for worker in pool:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    elapsed = time.perf_counter() - started
    for worker in pool:
        worker.join()
    if errors:
        raise errors[0]
    if not threads and any(worker.exitcode for worker in pool):
        raise SystemExit("a writer process failed")
    return sum(counts), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=8, help="concurrent writers")
    parser.add_argument("--threads", action="store_true", help="writers are threads of this process, not processes")
    parser.add_argument("--seconds", type=float, default=8.0, help="per kind per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--path",
        choices=("product", "transaction", "consent"),
        default="product",
        help="product: a row and its event in one statement; transaction: BEGIN, ORM row, audit_write, COMMIT; "
        "consent: the product's consent registration",
    )
    parser.add_argument(
        "--seal",
        choices=("thread", "request", "none"),
        default="thread",
        help="after commit: wake the sealer thread (production), seal on the writer's thread, or not at all "
        "(diagnosis; the backstop seals at the end)",
    )
    parser.add_argument("--verify", action="store_true", help="verify the whole chain afterwards")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("audit_bench runs on PostgreSQL: set DATABASE_URL=postgres://...")

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id uuid PRIMARY KEY, member_code varchar(32) NOT NULL, "
            "amount_minor bigint NOT NULL, created_at timestamptz NOT NULL)"
        )
    if args.path == "consent":
        from members.models import Member
        from members.services import member_create

        if not Member.objects.filter(code="BENCHAUDIT").exists():
            member_create(code="BENCHAUDIT", name="Audit bench member", actor="bench")
    sealing.seal_pending()
    before = AuditEvent.objects.count()
    connection.close()
    if args.threads and args.seal == "thread":
        sealing.start_background_sealer()
    if args.threads and args.seal == "none":
        sealing.seal_soon = lambda: None

    totals = {False: [0, 0.0], True: [0, 0.0]}
    paired = []  # each round's audited rate over its plain rate: the host's drift hits both alike
    for round_number in range(1, args.rounds + 1):
        rates = {}
        for audited in (False, True):
            ops, elapsed = run(
                audited,
                writers=args.writers,
                seconds=args.seconds,
                path=args.path,
                seal=args.seal,
                threads=args.threads,
            )
            totals[audited][0] += ops
            totals[audited][1] += elapsed
            rates[audited] = ops / elapsed
            label = "audited" if audited else "plain  "
            print(f"round {round_number} {label}: {ops} writes in {elapsed:.1f} s = {ops / elapsed:,.0f}/s", flush=True)
        paired.append(rates[True] / rates[False])

    if args.threads and args.seal == "thread":
        sealing.stop_background_sealer()
    unsealed = AuditEvent.objects.filter(seq__isnull=True).count()
    backstop = sealing.seal_pending().sealed
    events = AuditEvent.objects.count() - before
    plain = totals[False][0] / totals[False][1]
    audited = totals[True][0] / totals[True][1]
    print(
        f"writers={args.writers} ({'threads of one process' if args.threads else 'processes'}) "
        f"seconds={args.seconds} rounds={args.rounds} path={args.path} seal={args.seal}"
    )
    print(f"plain write:   {plain:,.0f} writes/s")
    print(f"audited write: {audited:,.0f} writes/s")
    print(f"ratio audited/plain: {audited / plain:.2f} (target >= 0.7)")
    print(
        f"per round: median {statistics.median(paired):.2f}, range {min(paired):.2f}-{max(paired):.2f} "
        f"({', '.join(f'{ratio:.2f}' for ratio in paired)})"
    )
    print(f"events written: {events}; left unsealed after the run: {unsealed} (backstop sealed {backstop})")
    if args.verify:
        started = time.perf_counter()
        report = verify_chain()
        print(f"verify_audit: {report.summary()} in {time.perf_counter() - started:.1f} s")
    connection.close()


if __name__ == "__main__":
    main()
