"""Performance harness: the inquiry hot path and record submission, measured against the floor.

    .venv/bin/python bench/perf/run.py [--records 1000000] [--duration 20] [--connections 16]
        [--workers 4 --worker-class sync --threads 1] [--compare-workers sync:3,gthread:2x4,...]
        [--pgdir DIR --keep] [--partitions] [--doc docs/performance.md] [--label NAME]

One run: starts a throwaway PostgreSQL 15 (fsync on) as a non-root user in a temp folder,
migrates, builds the data set through the product's bulk path (bench/perf/dataset.py), serves
the exchange with gunicorn (gunicorn.conf.py; DJANGO_SETTINGS_MODULE=bench.perf.settings, which
adds the bench-only floor view), runs `manage.py run_worker` beside it, and drives it over
loopback with wrk, random borrowers per request:

- floor:    POST /bench/floor      one indexed aggregate by subject token in a bare DRF view;
- inquiry:  POST /api/v1/inquiries the full endpoint (key, consent, report, counts, writes, audit);
- batches:  POST /api/v1/records   1000-record JSON batches from concurrent clients (records/s).

It prints requests/s, p50/p95/p99 and the ratios to the floor, the peak memory of every server
and worker process, EXPLAIN (ANALYZE, BUFFERS) of the hot path's queries, and (--partitions) the
read queries against 16 hash partitions by subject token; and writes them into `--doc`.
`--pgdir DIR --keep` keeps the server and its data, so a later run with the same DIR reuses
the data set instead of building it again.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.keys import BENCH_KEYS  # noqa: E402

HERE = Path(__file__).resolve().parent
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
VENV_BIN = Path(sys.executable).parent

BENCH_ENV = {
    **BENCH_KEYS,
    "DJANGO_SETTINGS_MODULE": "bench.perf.settings",
    "EXCHANGE_THROTTLE_RATE": os.environ.get("BENCH_THROTTLE_RATE", ""),  # a rate: the limit check measured
    "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
    "LOG_LEVEL": "WARNING",
    "PYTHONPATH": str(ROOT),
}
# Server settings of the throwaway PostgreSQL: durable (fsync, synchronous commit: the defaults),
# shared buffers large enough to hold what an inquiry reads at 10 million records (about 7 GB of
# tables and indexes, prewarmed before measuring) on this 24 GB machine, WAL large enough for the build.
PG_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "shared_buffers": "8GB",
    "effective_cache_size": "16GB",
    "work_mem": "16MB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "15min",
    "max_connections": "200",
    # Full-page images (the first change to a page after a checkpoint) are most of an inquiry's WAL,
    # and there are more of them on a larger data set (random inserts into larger indexes):
    # compressed, they cost less (docs/operations.md, docs/performance.md).
    "wal_compression": "lz4",
}


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- PostgreSQL ------------------------------------------------------------------------------


class Postgres:
    """A PostgreSQL 15 server in `folder`, run by the `postgres` user when we are root."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.prefix: list[str] = []
        if os.getuid() == 0:
            user = "postgres" if _user_exists("postgres") else "nobody"
            self.prefix = ["runuser", "-u", user, "--"]
            shutil.chown(folder, user)
        folder.chmod(0o755)

    def _run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, *args], check=True, capture_output=True, text=True, **kwargs)

    @property
    def url(self) -> str:
        return f"postgres://exchange:exchange@127.0.0.1:{self.port}/exchange"

    def start(self) -> bool:
        """Start (initialising if needed); True when a fresh cluster was made."""
        fresh = not (self.data / "PG_VERSION").exists()
        if fresh:
            self._run(
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
            )
        options = " ".join(f"-c {k}={v}" for k, v in PG_SETTINGS.items())
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 {options}",
            "start",
        )
        if fresh:
            self.psql("CREATE ROLE exchange LOGIN CREATEDB PASSWORD 'exchange'")
            self.psql("CREATE DATABASE exchange OWNER exchange")
        return fresh

    def psql(self, sql: str, db: str = "postgres") -> str:
        return self._run(
            str(PG_BIN / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-qAt",
            "-c",
            sql,
        ).stdout

    def stop(self) -> None:
        subprocess.run(
            [*self.prefix, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"], capture_output=True
        )


def _user_exists(name: str) -> bool:
    return subprocess.run(["id", "-u", name], capture_output=True).returncode == 0


# --- serving and driving ---------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(rest.split()[0])  # KiB
    except FileNotFoundError:
        pass
    return values


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except FileNotFoundError:
            pass
    return found


class Server:
    """gunicorn serving the exchange (bench settings), plus one `run_worker` beside it."""

    def __init__(self, env: dict, *, workers: int, worker_class: str, threads: int):
        self.env = env
        self.port = free_port()
        self.config = f"{worker_class}:{workers}" + (f"x{threads}" if worker_class == "gthread" else "")
        self.gunicorn = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--worker-class",
                worker_class,
                "--threads",
                str(threads),
                "config.wsgi:application",
            ],
            cwd=ROOT,
            env={**env, "GUNICORN_ACCESSLOG": ""},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.worker = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "run_worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()  # neither process outlives a failed start
        raise RuntimeError("gunicorn did not start: " + self.gunicorn.stderr.read1().decode())

    def memory(self) -> dict:
        """Peak resident memory (VmHWM) of the master, each worker, and run_worker, in MB."""
        workers = children(self.gunicorn.pid)
        peaks = {pid: proc_status(pid).get("VmHWM", 0) / 1024 for pid in workers}
        master = proc_status(self.gunicorn.pid).get("VmHWM", 0) / 1024
        return {
            "gunicorn_master_mb": round(master, 1),
            "gunicorn_workers_mb": [round(v, 1) for v in peaks.values()],
            "gunicorn_total_mb": round(master + sum(peaks.values()), 1),
            "run_worker_mb": round(proc_status(self.worker.pid).get("VmHWM", 0) / 1024, 1),
        }

    def stop(self) -> None:
        for proc in (self.gunicorn, self.worker):
            proc.send_signal(signal.SIGTERM)
        for proc in (self.gunicorn, self.worker):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def gunicorn_defaults() -> dict:
    """The worker model gunicorn.conf.py sets for production (chosen by measurement)."""
    from importlib import util as import_util

    spec = import_util.spec_from_file_location("gunicorn_conf", ROOT / "gunicorn.conf.py")
    conf = import_util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return {"worker_class": conf.worker_class, "workers": conf.workers, "threads": conf.threads}


def wrk(port: int, path: str, lines: str, *, duration: int, connections: int, threads: int = 2) -> dict:
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "-s",
            str(HERE / "wrk.lua"),
            f"http://127.0.0.1:{port}",
            "--",
            path,
            lines,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    for line in done.stdout.splitlines():
        if line.startswith("WRKJSON "):
            result = json.loads(line[len("WRKJSON ") :])
            result["errors"] = sum(v for k, v in result.items() if k.startswith("errors_"))
            return result
    raise RuntimeError("wrk printed no result: " + done.stdout + done.stderr)


def ms(us: float) -> float:
    return round(us / 1000, 2)


def summarise(result: dict) -> dict:
    return {
        "rps": round(result["rps"]),
        "p50_ms": ms(result["p50_us"]),
        "p95_ms": ms(result["p95_us"]),
        "p99_ms": ms(result["p99_us"]),
        "requests": result["requests"],
        "errors": result["errors"],
    }


def submit_batches(port: int, members: list[dict], *, batches: int, clients: int, borrowers: int, tag: str) -> dict:
    """`clients` threads POST `batches` 1000-record batches of new records; records/s over the run.

    The bodies are made before the clock starts. Then the same references are submitted again
    with other values (each record gets a new version: the update path).
    """
    from bench.perf.dataset import record_json

    rng = random.Random(99)
    today = datetime.now(UTC).date()
    bodies = []
    for j in range(batches):
        member = members[j % len(members)]
        records = [record_json(rng, f"J{tag}-{j}-{i}", rng.randrange(borrowers), today) for i in range(1000)]
        bodies.append((member["key"], json.dumps({"records": records}).encode()))

    def run(label: str) -> dict:
        queue = list(bodies)
        latencies: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            while True:
                with lock:
                    if not queue:
                        return
                    key, body = queue.pop()
                started = time.perf_counter()
                conn.request(
                    "POST",
                    "/api/v1/records",
                    body=body,
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                )
                response = conn.getresponse()
                payload = response.read()
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if response.status != 201:
                        failures.append(f"{response.status} {payload[:200]!r}")
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        latencies.sort()
        return {
            "kind": label,
            "batches": batches,
            "clients": clients,
            "records_per_second": round(batches * 1000 / seconds),
            "batch_p50_ms": round(statistics.median(latencies) * 1000, 1),
            "batch_max_ms": round(latencies[-1] * 1000, 1),
            "failures": len(failures),
            "first_failure": failures[0] if failures else None,
        }

    created = run("new records")
    # Second pass: same references, new values: every record becomes version 2.
    rng = random.Random(100)
    bodies = [
        (
            key,
            json.dumps(
                {
                    "records": [
                        {**r, "amount_overdue": f"{rng.randrange(100, 90000)}.00"} for r in json.loads(body)["records"]
                    ]
                }
            ).encode(),
        )
        for key, body in bodies
    ]
    versions = run("new versions")
    return {"created": created, "versions": versions}


# --- in-process database work (EXPLAIN, partitions) -------------------------------------------


def django_setup(env: dict) -> None:
    os.environ.update(env)
    import django

    django.setup()


def hot_path_queries(members: list[dict], pool: str) -> list[dict]:
    """The SQL of one inquiry through the whole stack, captured in-process."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from audit.sealing import start_background_sealer

    start_background_sealer()  # as gunicorn.conf.py does: the request's own queries only
    line = Path(pool).read_text().splitlines()[0]
    key, body = line.split("\t", 1)
    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    client.post("/api/v1/inquiries", body, content_type="application/json", **headers)  # warm: last_used_at
    with CaptureQueriesContext(connection) as captured:
        response = client.post("/api/v1/inquiries", body, content_type="application/json", **headers)
    assert response.status_code == 200, response.content
    return [{"sql": q["sql"], "time": q["time"]} for q in captured.captured_queries]


# What an inquiry reads: loaded into PostgreSQL's shared buffers before measuring, as they are on a
# server that has been answering for a while (a freshly started server reads them from disk first).
HOT_RELATIONS = (
    "exchange_record",
    "record_subject_idx",
    "exchange_consent",
    "exchange_consent_pkey",
    "exchange_inquiry",
    "inquiry_subject_idx",
    "members_apikey",
    "members_member",
)


def prewarm(pg: Postgres) -> dict:
    """Load HOT_RELATIONS into the server's shared buffers; blocks loaded per relation. Through
    psql as postgres (pg_prewarm is not a trusted extension), so it serves any data set's server."""
    pg.psql("CREATE EXTENSION IF NOT EXISTS pg_prewarm", db="exchange")
    selects = " UNION ALL ".join(f"SELECT '{name}', pg_prewarm('{name}'::regclass)" for name in HOT_RELATIONS)
    rows = pg.psql(selects, db="exchange").splitlines()
    return {name: int(blocks) for name, blocks in (row.split("|") for row in rows)}


def explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        for _ in range(3):  # warm
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            rows = cursor.fetchall()
    return "\n".join(r[0] for r in rows)


PARTITIONED = {"exchange_record": "perf_record_part", "exchange_inquiry": "perf_inquiry_part"}


def make_partitions(count: int = 16) -> dict:
    """Copies of records and inquiries hash-partitioned by subject token (as Citus would shard them)."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        for source, target in PARTITIONED.items():
            cursor.execute(f"DROP TABLE IF EXISTS {target} CASCADE")
            cursor.execute(
                f"CREATE TABLE {target} (LIKE {source} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
                "PARTITION BY HASH (subject_token)"
            )
            for n in range(count):
                cursor.execute(
                    f"CREATE TABLE {target}_{n} PARTITION OF {target} FOR VALUES WITH (MODULUS {count}, REMAINDER {n})"
                )
            cursor.execute(f"INSERT INTO {target} SELECT * FROM {source}")
        cursor.execute("CREATE INDEX ON perf_record_part (subject_token)")
        cursor.execute("CREATE INDEX ON perf_inquiry_part (subject_token, created_at)")
        cursor.execute("CREATE INDEX ON perf_record_part (id)")
        for target in PARTITIONED.values():
            cursor.execute(f"VACUUM ANALYZE {target}")
    return {"partitions": count, "seconds": round(time.perf_counter() - started, 1)}


def query_latency(sql_by_token, tokens: list[str], rounds: int = 3) -> dict:
    """p50/p95/p99 (ms) of one read query per token, measured in-process over psycopg."""
    from django.db import connection

    samples: list[float] = []
    with connection.cursor() as cursor:
        for _ in range(rounds):
            for token in tokens:
                sql = sql_by_token(token)
                started = time.perf_counter()
                cursor.execute(sql)
                cursor.fetchall()
                samples.append(time.perf_counter() - started)
    samples.sort()
    pick = lambda q: round(samples[min(len(samples) - 1, int(q * len(samples)))] * 1000, 3)  # noqa: E731
    return {"queries": len(samples), "p50_ms": pick(0.5), "p95_ms": pick(0.95), "p99_ms": pick(0.99)}


def partition_study(hot_sql: str, tokens: list[str], token_in_sql: str) -> dict:
    """The inquiry's records-and-counts query on the plain tables and on the partitioned copies."""

    def plain(token):
        return hot_sql.replace(token_in_sql, token)

    def partitioned(token):
        sql = plain(token)
        for source, target in PARTITIONED.items():
            sql = re.sub(rf'"?\b{source}\b"?', target, sql)
        return sql

    # Alternate the two so that neither profits from a warmer cache.
    result = {"plain": [], "partitioned": []}
    for _ in range(2):
        result["plain"].append(query_latency(plain, tokens, rounds=1))
        result["partitioned"].append(query_latency(partitioned, tokens, rounds=1))
    return {
        "plain": result["plain"][-1],
        "partitioned": result["partitioned"][-1],
        "explain_plain": explain(plain(tokens[0])),
        "explain_partitioned": explain(partitioned(tokens[0])),
    }


# --- machine and report ----------------------------------------------------------------------


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    pg = subprocess.run([str(PG_BIN / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "postgresql": pg,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "wrk": (wrk_version.stdout + wrk_version.stderr).split("\n")[0].strip(),
        "load_average_before": os.getloadavg(),
    }


def render(report: dict) -> str:
    m = report["machine"]
    ds = report["dataset"]
    out = [
        f"Measured {report['when']} with:",
        "",
        f"    {report['command']}",
        "",
        f"Machine: {m['nproc']} vCPUs ({m['cpu']}), {m['memory_gb']} GB RAM, {m['postgresql']} "
        f"(fsync on, synchronous_commit on, shared_buffers {PG_SETTINGS['shared_buffers']}, "
        f"wal_compression {PG_SETTINGS['wal_compression']}), Python {m['python']}, "
        f"{m['wrk']}; server, database and wrk share the machine over loopback. "
        f"Load average before the run: {', '.join(f'{x:.2f}' for x in m['load_average_before'])}.",
        "",
        f"Data set: {ds['records']:,} records over {ds['borrowers']:,} borrowers from {ds['members']} members, "
        f"imported through `import_records` ({ds.get('import_parallel', 2)} at a time) at "
        f"{ds.get('import_rows_per_second', 0):,} rows/s ({ds.get('import_seconds', '?')} s, audit sealing included); "
        f"{ds['consents']:,} consents and {ds['past_inquiries']:,} past inquiries loaded with COPY.",
        *(
            [
                "",
                f"Of these, {ds['synthetic_records']:,} records over {ds['synthetic_subjects']:,} subjects, with "
                "their consents and inquiries, are synthetic rows generated inside PostgreSQL in "
                f"{ds['synthetic_seconds']} s, not through the bulk path (bench/perf/dataset.py, scale_up): they "
                "make the tables and indexes that large, while requests pick imported borrowers.",
            ]
            if ds.get("synthetic_records")
            else []
        ),
        "",
        f"Server: gunicorn `{report['server']}`, `run_worker` beside it; wrk `-t2 -c{report['connections']} "
        f"-d{report['duration']}s`, a random borrower (and that borrower's consent) per request.",
        "",
        "| endpoint | req/s | p50 ms | p95 ms | p99 ms | requests | errors | req/s vs floor | p99 vs floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    floor = report["results"].get("floor")  # absent with --skip floor: no ratios then
    for name, label in (
        ("constant", "DRF view returning a constant (reference)"),
        ("floor", "floor: bare DRF view, one summary query"),
        ("inquiry", "POST /api/v1/inquiries (full)"),
    ):
        r = report["results"].get(name)
        if r is None:
            continue
        out.append(
            f"| {label} | {r['rps']:,} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['requests']:,} | "
            f"{r['errors']} | "
            + (f"{r['rps'] / floor['rps']:.2f} | {r['p99_ms'] / floor['p99_ms']:.2f} |" if floor else "- | - |")
        )
    batches = report.get("batches")
    if batches:
        out += [
            "",
            "| JSON batch submission (1000 records each) | clients | records/s | batch p50 ms | batch max ms "
            "| failures |",
            "|---|---|---|---|---|---|",
        ]
        for b in (batches["created"], batches["versions"]):
            out.append(
                f"| {b['kind']} ({b['batches']} batches) | {b['clients']} | {b['records_per_second']:,} | "
                f"{b['batch_p50_ms']} | {b['batch_max_ms']} | {b['failures']} |"
            )
    mem = report["memory"]
    out += [
        "",
        f"Peak memory (VmHWM): gunicorn master {mem['gunicorn_master_mb']} MB, workers "
        f"{', '.join(str(w) for w in mem['gunicorn_workers_mb'])} MB (server total {mem['gunicorn_total_mb']} MB); "
        f"run_worker {mem['run_worker_mb']} MB.",
    ]
    if report.get("compare"):
        out += [
            "",
            f"Worker models (inquiry endpoint, same data, same wrk settings, {report['compare_duration']} s each):",
            "",
            "| gunicorn | req/s | p50 ms | p95 ms | p99 ms | errors |",
            "|---|---|---|---|---|---|",
        ]
        for config, r in report["compare"].items():
            out.append(f"| `{config}` | {r['rps']:,} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['errors']} |")
    if report.get("queries"):
        out += ["", f"Queries of one inquiry ({len(report['queries'])}, captured in-process):", ""]
        out += [
            f"{n}. `{q['sql'][:160]}{'...' if len(q['sql']) > 160 else ''}`" for n, q in enumerate(report["queries"], 1)
        ]
    for title, plan in report.get("explain", {}).items():
        out += ["", f"EXPLAIN (ANALYZE, BUFFERS), {title}:", "", "```", plan, "```"]
    return "\n".join(out) + "\n"


def write_doc(doc: Path, label: str, text: str) -> None:
    begin, end = f"<!-- bench/perf {label}: begin -->", f"<!-- bench/perf {label}: end -->"
    block = f"{begin}\n{text}{end}\n"
    current = doc.read_text() if doc.exists() else "# Performance\n"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        _old, tail = rest.split(end, 1)
        current = head + block + tail.lstrip("\n")
    else:
        current = current.rstrip("\n") + f"\n\n### Measured: {label}\n\n" + block
    doc.write_text(current)


# --- main ------------------------------------------------------------------------------------


def parse_compare(spec: str) -> list[tuple[str, int, int]]:
    configs = []
    for item in filter(None, spec.split(",")):
        kind, _, size = item.partition(":")
        workers, _, threads = size.partition("x")
        configs.append((kind, int(workers), int(threads or 1)))
    return configs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=20, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None, help="default: gunicorn.conf.py's")
    parser.add_argument("--worker-class", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compare-workers", default="", help="e.g. sync:3,sync:5,gthread:2x4")
    parser.add_argument("--compare-duration", type=int, default=15)
    parser.add_argument("--batches", type=int, default=30, help="1000-record batches to submit (0: skip)")
    parser.add_argument("--batch-clients", type=int, default=4)
    parser.add_argument("--import-parallel", type=int, default=2)
    parser.add_argument("--partitions", action="store_true", help="also measure 16 hash partitions")
    parser.add_argument("--pgdir", type=Path, default=None, help="server folder (reused if it holds a data set)")
    parser.add_argument("--keep", action="store_true", help="leave the server folder (and data set) in place")
    parser.add_argument("--doc", type=Path, default=None, help="write the results into this markdown file")
    parser.add_argument("--label", default=None, help="section label in --doc (default: records count)")
    parser.add_argument(
        "--scale-by-copy",
        action="store_true",
        help="grow a smaller data set in --pgdir to --records with synthetic rows generated in SQL (dataset.scale_up)",
    )
    parser.add_argument("--build-only", action="store_true", help="build (or find) the data set, then stop")
    parser.add_argument("--skip", default="", help="comma-separated: constant,floor,inquiry,batches,explain")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2

    label = args.label or (
        f"{args.records // 1_000_000}M records" if args.records >= 1_000_000 else f"{args.records:,} records"
    )
    report: dict = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": ".venv/bin/python bench/perf/run.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "connections": args.connections,
        "duration": args.duration,
        "results": {},
    }
    folder = args.pgdir or Path(tempfile.mkdtemp(prefix="exchange-perf-"))
    folder.mkdir(parents=True, exist_ok=True)
    pg = Postgres(folder)
    workdir = folder / "work"
    fresh = pg.start()
    server = None
    try:
        env = {**os.environ, **BENCH_ENV, "DATABASE_URL": pg.url}
        workdir.mkdir(exist_ok=True)
        shutil.chown(workdir, "root") if os.getuid() == 0 else None
        log(f"PostgreSQL on port {pg.port} in {folder} ({'new' if fresh else 'reused'})")
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"], check=True, env=env)
        django_setup(env)
        dataset_file = workdir / "dataset.json"
        if dataset_file.exists():
            dataset = json.loads(dataset_file.read_text())
            if dataset["records"] < args.records and args.scale_by_copy:
                from bench.perf.dataset import scale_up

                log(f"growing {dataset['records']:,} records to {args.records:,} (synthetic rows, scale_up)")
                dataset = scale_up(workdir=workdir, records=args.records)
            if dataset["records"] != args.records:
                raise SystemExit(f"{folder} holds {dataset['records']:,} records, not {args.records:,}")
            log("reusing the data set")
        else:
            from bench.perf.dataset import build

            log(f"building {args.records:,} records")
            dataset = build(workdir=workdir, records=args.records, env=env, parallel=args.import_parallel)
        report["dataset"] = {k: v for k, v in dataset.items() if k not in ("member_keys", "pools")}
        log(f"data set: {report['dataset']}")
        if args.build_only:
            return 0
        members, pools = dataset["member_keys"], dataset.get("pools_scaled") or dataset["pools"]

        if "explain" not in skip:
            queries = hot_path_queries(members, pools["inquiry"])
            report["queries"] = queries
            report["explain"] = {}
            for n, q in enumerate(queries, 1):
                if q["sql"].lstrip().upper().startswith("SELECT") and "advisory" not in q["sql"]:
                    report["explain"][f"query {n}"] = explain(q["sql"])

        if args.partitions:
            log("partitioned copies")
            report["partition_build"] = make_partitions()
            queries = report.get("queries") or hot_path_queries(members, pools["inquiry"])
            hot = max((q["sql"] for q in queries if "exchange_record" in q["sql"]), key=len)
            token = re.search(r"'([0-9a-f]{64})'", hot).group(1)
            floor_tokens = [
                json.loads(x.split("\t", 1)[1])["token"] for x in Path(pools["floor"]).read_text().split("\n") if x
            ]
            report["partition_study"] = partition_study(hot, random.Random(3).sample(floor_tokens, 3000), token)
            log(f"partitions: {report['partition_study']['plain']} vs {report['partition_study']['partitioned']}")

        log(f"prewarmed into shared buffers: {prewarm(pg)}")
        from django.db import connection

        connection.close()

        spec = {"worker_class": args.worker_class, "workers": args.workers, "threads": args.threads}

        def start(worker_class, workers, threads):
            return Server(env, workers=workers, worker_class=worker_class, threads=threads)

        conf = gunicorn_defaults()
        worker_class = spec["worker_class"] or conf["worker_class"]
        workers = spec["workers"] or conf["workers"]
        threads = spec["threads"] or conf["threads"]

        if args.compare_workers:
            report["compare"] = {}
            report["compare_duration"] = args.compare_duration
            for kind, count, nthreads in parse_compare(args.compare_workers):
                server = start(kind, count, nthreads)
                wrk(server.port, "/api/v1/inquiries", pools["inquiry"], duration=3, connections=args.connections)
                result = summarise(
                    wrk(
                        server.port,
                        "/api/v1/inquiries",
                        pools["inquiry"],
                        duration=args.compare_duration,
                        connections=args.connections,
                    )
                )
                report["compare"][server.config] = result
                log(f"{server.config}: {result}")
                server.stop()
                server = None

        server = start(worker_class, workers, threads)
        report["server"] = server.config
        log(f"gunicorn {server.config} on port {server.port}")
        for name, path in (
            ("constant", "/bench/constant"),
            ("floor", "/bench/floor"),
            ("inquiry", "/api/v1/inquiries"),
        ):
            if name in skip:
                continue
            wrk(server.port, path, pools[name], duration=3, connections=args.connections)  # warm up
            result = summarise(
                wrk(server.port, path, pools[name], duration=args.duration, connections=args.connections)
            )
            report["results"][name] = result
            log(f"{name}: {result}")
        if "floor" in report["results"] and "inquiry" in report["results"]:
            f, i = report["results"]["floor"], report["results"]["inquiry"]
            log(f"inquiry/floor: req/s {i['rps'] / f['rps']:.2f}, p99 {i['p99_ms']} ms vs {f['p99_ms']} ms")
        if args.batches and "batches" not in skip:
            report["batches"] = submit_batches(
                server.port,
                members,
                batches=args.batches,
                clients=args.batch_clients,
                borrowers=dataset["borrowers"],
                tag=f"{int(time.time())}",
            )
            log(f"batches: {report['batches']}")
        report["memory"] = server.memory()
        log(f"memory: {report['memory']}")
        server.stop()
        server = None
        (workdir / f"report-{int(time.time())}.json").write_text(json.dumps(report, indent=1, default=str))
        if args.doc:
            text = render(report)
            if report.get("partition_study"):
                text += render_partitions(report)
            write_doc(args.doc, label, text)
            log(f"wrote {args.doc} ({label})")
    finally:
        if server is not None:
            server.stop()
        pg.stop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            log(f"kept {folder} (stopped); reuse with --pgdir {folder}")
    return 0


def render_partitions(report: dict) -> str:
    study = report["partition_study"]
    p, q = study["plain"], study["partitioned"]
    return "\n".join(
        [
            "",
            f"Hash partitions ({report['partition_build']['partitions']} by subject_token, copies of records and "
            f"inquiries built in {report['partition_build']['seconds']} s): the inquiry's records-and-counts query, "
            f"{p['queries']:,} random subjects each, in-process over psycopg:",
            "",
            "| tables | p50 ms | p95 ms | p99 ms |",
            "|---|---|---|---|",
            f"| plain | {p['p50_ms']} | {p['p95_ms']} | {p['p99_ms']} |",
            f"| 16 hash partitions | {q['p50_ms']} | {q['p95_ms']} | {q['p99_ms']} |",
            "",
            "EXPLAIN (ANALYZE, BUFFERS) on the partitioned copies (one partition of each table is touched):",
            "",
            "```",
            study["explain_partitioned"],
            "```",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
