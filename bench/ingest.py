"""Bulk ingest throughput on PostgreSQL: `import_records` against plain COPY and the naive ORM path.

    DATABASE_URL=postgres://user:pass@host:port/db .venv/bin/python bench/ingest.py [--rows 1000000]
        [--orm-sample 2000] [--chunk-rows 5000] [--reader process|thread] [--workdir DIR] [--keep]

In one run, on one database (migrated here), it
1. generates a CSV of `--rows` records (about 1% invalid) without holding it in memory;
2. imports it with `manage.py import_records` in a child process: rows per second, and the peak
   resident memory of that process (ru_maxrss);
3. loads the same rows, as the import stored them, with plain `COPY` into a table shaped like
   exchange_record (same columns, indexes and constraints): the physical limit for these rows;
4. stores `--orm-sample` rows one at a time, each validated and saved through the ORM (Record,
   RecordVersion and its audit event, as records_store did before it was made set-wise)
   in its own transaction: what a naive implementation does.
It prints one JSON line per step and a summary. See bench/README.md for a throwaway server.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.keys import setdefault_environ  # noqa: E402

setdefault_environ(os.environ, LOG_LEVEL="WARNING")

COLUMNS = (
    "member_reference,id_type,id_number,name,country,product,currency,principal,amount_overdue,"
    "days_past_due,status,opened_on,delinquent_since,as_of,notice_sent_on,settled_on,payment_history"
)
_RIC_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_RIC_CHECK = "10X98765432"
_PRODUCTS = ("consumer_loan", "credit_line", "credit_card", "mortgage", "auto_loan", "bnpl")


def _ric(n: int) -> str:
    born = date(1950, 1, 1) + timedelta(days=n // 1000)
    body = f"110105{born:%Y%m%d}{n % 1000:03d}"
    return body + _RIC_CHECK[sum(int(c) * w for c, w in zip(body, _RIC_WEIGHTS, strict=True)) % 11]


def generate(path: Path, rows: int, *, prefix: str = "B") -> None:
    """A CSV of `rows` records, every 100th one invalid (a negative amount)."""
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(COLUMNS + "\n")
        for n in range(rows):
            overdue = "-1.00" if n % 100 == 99 else f"{(n % 5000) + 100}.50"
            settled = n % 7 == 0
            status, settled_on = ("settled", "2026-09-01") if settled else ("delinquent", "")
            out.write(
                f"{prefix}-{n:08d},CN_RIC,{_ric(n)},Borrower {n % 9973},,{_PRODUCTS[n % len(_PRODUCTS)]},CNY,"
                f"{10000 + n % 90000}.00,{overdue},{n % 400},{status},2025-01-10,2026-08-01,2026-09-15,"
                f"2026-08-20,{settled_on},NNNN12\n"
            )


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def _django():
    import django

    django.setup()


def _manage(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _member(code: str) -> None:
    _django()
    from members.models import Member
    from members.services import member_create

    if not Member.objects.filter(code=code).exists():
        member_create(code=code, name=f"Bench {code}", kind="bank", actor="bench")


def _tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc), in KiB."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                total += next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending += [int(child) for child in children.read().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def step_import(code: str, path: Path, rows: int, chunk_rows: int, reader: str) -> dict:
    """`import_records` in a child process. Peak memory: the largest single process (ru_maxrss)
    and the whole process tree (the import and its reader process, summed, sampled every 0.2 s;
    shared copy-on-write pages are counted in each, so the sum is an upper bound)."""
    started = time.perf_counter()
    if reader == "thread":  # the same command, its reader swapped here (the product has no switch)
        command = [sys.executable, __file__, "--step=import-thread", f"--code={code}", str(path)]
    else:
        command = [sys.executable, str(ROOT / "manage.py"), "import_records", code, str(path), "--no-progress"]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(
            [*command, f"--chunk-rows={chunk_rows}"], stdout=out, stderr=err, text=True, env=os.environ
        )
        tree_peak = 0
        while child.poll() is None:
            tree_peak = max(tree_peak, _tree_rss_kib(child.pid))
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode:
        raise SystemExit(f"import_records failed: {stderr}")
    result = json.loads(stdout.strip().splitlines()[-1])
    processing = _processing_seconds(result["submission"])
    return {
        "step": "import_records",
        "rows": rows,
        "accepted": result["accepted"],
        "rejected": result["rejected"],
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        # Claim to finish of the submission: without start-up, hashing the file, and the sealing of
        # the audit events into the chain (done after the rows are committed).
        "processing_seconds": round(processing, 2),
        "processing_rows_per_second": round(rows / processing),
        "peak_memory_mb": round(_peak_mb(resource.RUSAGE_CHILDREN), 1),
        "peak_memory_tree_mb": round(tree_peak / 1024, 1),
    }


def _processing_seconds(submission_id: str) -> float:
    done = subprocess.run(
        [sys.executable, __file__, "--step=submission", f"--code={submission_id}"],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def step_import_thread(code: str, argv: list[str]) -> None:
    """`import_records` with the bulk reader in a thread of this process, never a forked process."""
    _django()
    from django.core.management import call_command

    from exchange.bulk import worker

    worker._use_process = lambda: False
    call_command("import_records", code, *argv, "--no-progress")


def step_submission(submission_id: str) -> float:
    _django()
    from exchange.models import Submission

    submission = Submission.objects.get(pk=submission_id)
    return (submission.finished_at - submission.started_at).total_seconds()


def step_copy(code: str, workdir: Path, repeat: int = 3) -> dict:
    """Plain COPY of the imported records (as stored) into a table shaped like exchange_record."""
    _django()
    from django.db import connection

    from exchange.models import Record
    from members.models import Member

    member = Member.objects.get(code=code)
    table = Record._meta.db_table
    dump = workdir / "records.copy"
    with connection.cursor() as cursor:
        with (
            open(dump, "wb") as out,
            cursor.cursor.copy(f"COPY (SELECT * FROM {table} WHERE member_id = '{member.pk}') TO STDOUT") as copy,
        ):
            for block in copy:
                out.write(block)
    rows = Record.objects.filter(member=member).count()
    # Repeated into a fresh table each time, the median taken: a single short run on a shared
    # machine is at the mercy of whatever else runs in those seconds.
    timings = []
    for _attempt in range(repeat):
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_copy_target")
            cursor.execute(f"CREATE TABLE bench_copy_target (LIKE {table} INCLUDING ALL)")
        started = time.perf_counter()
        with connection.cursor() as cursor:
            with open(dump, "rb") as source, cursor.cursor.copy("COPY bench_copy_target FROM STDIN") as copy:
                while block := source.read(1 << 20):
                    copy.write(block)
        timings.append(time.perf_counter() - started)
    seconds = sorted(timings)[len(timings) // 2]
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_copy_target")
    dump.unlink()
    return {
        "step": "plain_copy",
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "runs_seconds": [round(t, 2) for t in timings],
    }


def _orm_store_one(member, actor: str, record) -> None:
    """The naive path: one record saved through the ORM (as records_store did before it
    was made set-wise), its version and its audit event; the caller's transaction."""
    from django.utils import timezone

    from audit.models import AuditEvent
    from audit.services import audit_bulk_write
    from exchange.models import Record, RecordVersion
    from exchange.records import reference_index

    now = timezone.now()
    index = reference_index(member, record.member_reference)
    current = Record.objects.select_for_update().filter(member=member, reference_index=index).first()
    created = current is None
    if created:
        current = Record(member=member, reference_index=index, member_reference=record.member_reference)
        current.created_at = now
    else:
        current.version += 1
    for name in (*Record.DATA_FIELDS, "name"):
        setattr(current, name, getattr(record, name))
    current.updated_at = now
    current.save()
    version = RecordVersion(record=current, member=member, version=current.version, created_at=now)
    for name in (*Record.DATA_FIELDS, "name"):
        setattr(version, name, getattr(record, name))
    version.save()
    audit_bulk_write(
        [
            AuditEvent(
                action="record.submit",
                actor=actor,
                member_code=member.code,
                object_type="record",
                object_id=str(current.pk),
                subject_token=record.subject_token,
                details={"version": current.version, "created": created},
            )
        ]
    )


def step_orm(code: str, sample: int) -> dict:
    """One row at a time: parse, then save through the ORM in its own transaction."""
    _django()
    from django.db import transaction

    from exchange.validation import RecordErrors, parse_record
    from members.models import Member

    member = Member.objects.get(code=code)
    keys = COLUMNS.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="bench-orm-"))
    path = workdir / "sample.csv"
    generate(path, sample, prefix="O")
    import csv

    started = time.perf_counter()
    with open(path, encoding="utf-8", newline="") as source:
        reader = csv.reader(source)
        next(reader)
        for cells in reader:
            raw = {k: v for k, v in zip(keys, cells, strict=True) if v}
            raw["subject"] = {k: raw.pop(k) for k in ("id_type", "id_number", "name", "country") if k in raw}
            try:
                parsed = parse_record(raw)
            except RecordErrors:
                continue
            with transaction.atomic():
                _orm_store_one(member, "bench", parsed)
    seconds = time.perf_counter() - started
    path.unlink()
    workdir.rmdir()
    return {
        "step": "orm_one_at_a_time",
        "rows": sample,
        "seconds": round(seconds, 2),
        "rows_per_second": round(sample / seconds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--orm-sample", type=int, default=2000)
    parser.add_argument("--chunk-rows", type=int, default=5000)
    parser.add_argument(
        "--reader",
        choices=["process", "thread"],
        default="process",
        help="thread: the bulk reader in a thread even where the product forks a reader process",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated CSV")
    parser.add_argument(
        "--step", choices=["copy", "orm", "member", "submission", "import-thread"], help=argparse.SUPPRESS
    )
    parser.add_argument("--code", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.step == "import-thread":
        step_import_thread(args.code, rest)
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    if args.step == "copy":
        print(json.dumps(step_copy(args.code, args.workdir)))
        return 0
    if args.step == "orm":
        print(json.dumps(step_orm(args.code, args.orm_sample)))
        return 0
    if args.step == "submission":
        print(step_submission(args.code))
        return 0
    if args.step == "member":
        _member(args.code)
        return 0

    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        print("Set DATABASE_URL to a PostgreSQL database (see bench/README.md).", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    workdir.mkdir(parents=True, exist_ok=True)
    _manage("migrate", "--noinput", "-v0")
    # Fresh members each run: a file already imported by a member would be answered as a duplicate.
    stamp = time.strftime("%m%d%H%M%S")
    codes = {"import": f"BI{stamp}", "copy": f"BI{stamp}", "orm": f"BO{stamp}"}
    for code in (codes["import"], codes["orm"]):
        subprocess.run([sys.executable, __file__, "--step=member", f"--code={code}"], check=True)

    path = workdir / f"ingest-{args.rows}.csv"
    started = time.perf_counter()
    generate(path, args.rows)
    size_mb = path.stat().st_size / 1e6
    print(
        json.dumps(
            {
                "step": "generate",
                "rows": args.rows,
                "size_mb": round(size_mb, 1),
                "seconds": round(time.perf_counter() - started, 1),
            }
        ),
        flush=True,
    )

    results = {}
    load_before = [round(x, 2) for x in os.getloadavg()]
    results["import"] = step_import(codes["import"], path, args.rows, args.chunk_rows, args.reader)
    print(json.dumps(results["import"]), flush=True)
    for step in ("copy", "orm"):
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                f"--step={step}",
                f"--code={codes[step]}",
                f"--workdir={workdir}",
                f"--orm-sample={args.orm_sample}",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        results[step] = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(results[step]), flush=True)
    if not args.keep:
        path.unlink()

    imported = results["import"]["rows_per_second"]
    summary = {
        "import_rows_per_second": imported,
        "plain_copy_rows_per_second": results["copy"]["rows_per_second"],
        "orm_rows_per_second": results["orm"]["rows_per_second"],
        "import_vs_copy": round(imported / results["copy"]["rows_per_second"], 3),
        "import_vs_orm": round(imported / results["orm"]["rows_per_second"], 1),
        "import_processing_rows_per_second": results["import"]["processing_rows_per_second"],
        "import_processing_vs_copy": round(
            results["import"]["processing_rows_per_second"] / results["copy"]["rows_per_second"], 3
        ),
        "import_peak_memory_mb": results["import"]["peak_memory_mb"],
        "import_peak_memory_tree_mb": results["import"]["peak_memory_tree_mb"],
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps({"summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
