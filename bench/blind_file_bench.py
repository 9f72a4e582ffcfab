"""`cx blind-file` end to end against a real exchange: rows/s against the exchange's evaluation
rate measured in the same run, and the cx process's peak memory per file size.

    .venv/bin/python bench/blind_file_bench.py [--rows 100000,1000000] [--seconds 20]
        [--database-url URL] [--workdir DIR] [--keep] [--json FILE]

In one run it
1. generates one bulk CSV per size (bench/ingest.py's generator: valid CN_RIC IDs with their check
   characters, every row a distinct borrower, about 170 bytes a row);
2. starts an exchange: a fresh SQLite database (or `--database-url`) migrated, a member made with
   `create_member`, its OPRF quota lifted with `set_member_limits CODE --oprf-per-day 0`, served by
   gunicorn with gunicorn.conf.py (production settings, the bench's public keys, 2 gthread workers);
3. per size, the evaluation rate for `--seconds` each: core.oprf.evaluate_encoded in this process
   pinned to one core on batches of 1,000 (what bench/oprf_bench.py times), and
   `POST /api/v1/oprf/evaluate` from one sequential client (batches of 1,000 already blinded: the
   endpoint's elements/s as one client sees them); then
   `python -m cx_client.cli blind-file IN OUT` as a child process with CX_URL, CX_API_KEY and
   CX_PIN_FILE: wall time, rows/s, its peak RSS and CPU (os.wait4's rusage of that process) and
   the server's CPU over the same time (/proc); both rates once more after the last size;
4. checks the output: one row per input row, and sample rows' `blind` equal to the exchange's
   own evaluation of the same ID (core.oprf.evaluate_input).

cx and the server share the machine's cores (2 here) and take turns: cx blinds a batch and waits
while the exchange evaluates it, then verifies the proof and unblinds. The load averages before
and after are printed.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.keys import BENCH_KEYS, setdefault_environ  # noqa: E402

setdefault_environ(os.environ, LOG_LEVEL="WARNING")

import django  # noqa: E402

django.setup()

from cx_client import voprf  # noqa: E402
from cx_client.blinding import Batch  # noqa: E402
from cx_client.subjects import oprf_input  # noqa: E402

from bench.ingest import _ric, generate  # noqa: E402
from core import oprf  # noqa: E402

CODE = "BLINDBENCH"
TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (all their threads), from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def _tree(pid: int) -> list[int]:
    """pid and its descendants."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except FileNotFoundError:
                pass
    return found


def in_process_rate(seconds: float, batch: int = 1000) -> float:
    """core.oprf.evaluate_encoded's elements/s on one core (the median of rounds of one batch)."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        key = oprf.oprf_key()
        encoded = [base64.b64encode(voprf.blind(b"bench %d" % i)[1]).decode() for i in range(batch)]
        rates, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline or len(rates) < 3:
            started = time.perf_counter()
            oprf.evaluate_encoded(encoded, key)
            rates.append(batch / (time.perf_counter() - started))
        return statistics.median(rates)
    finally:
        os.sched_setaffinity(0, cores)


class Server:
    """A migrated database, one member with its API key, and gunicorn serving the exchange."""

    def __init__(self, workdir: Path, database_url: str | None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **{k: os.environ.get(k, v) for k, v in BENCH_KEYS.items()},
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url or f"sqlite:///{workdir / 'exchange.sqlite3'}",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
        }
        if database_url is None:
            (workdir / "exchange.sqlite3").unlink(missing_ok=True)  # a fresh one each run
        self._manage("migrate", "--noinput", "-v0")
        made = json.loads(self._manage("create_member", CODE, "--name", "Blind-file bench"))
        self.api_key = made["api_key"]
        self.limits = json.loads(self._manage("set_member_limits", CODE, "--oprf-per-day", "0"))
        self.log = open(workdir / "gunicorn.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "config.wsgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready(workdir)
        except BaseException:
            self.stop()  # never leave a server behind
            raise

    def _wait_ready(self, workdir: Path) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                self.call("GET", "oprf/key")
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"gunicorn did not start: see {workdir / 'gunicorn.log'}") from None
                time.sleep(0.3)

    def call(self, method: str, path: str, body: bytes | None = None) -> dict:
        """One API call with the member's key (plain urllib: the bench does not depend on cx's API)."""
        request = urllib.request.Request(f"{self.url}/api/v1/{path}", data=body, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.api_key}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - our own server
            return json.loads(response.read())

    def _manage(self, *args: str) -> str:
        command = [sys.executable, "manage.py", *args]
        done = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def server_cpu(self) -> float:
        return _cpu_seconds(_tree(self.process.pid))

    def workers(self) -> int:
        return len(_tree(self.process.pid)) - 1

    def endpoint_rate(self, seconds: float, batch: int = 1000) -> dict:
        """Elements/s of POST /oprf/evaluate for one sequential client, on batches blinded once."""
        body = json.dumps(Batch.blind([b"cx-subject-v1|bench||%d" % i for i in range(batch)]).request_body()).encode()
        calls, started = 0, time.perf_counter()
        cpu = self.server_cpu()
        while calls < 3 or time.perf_counter() - started < seconds:
            answer = self.call("POST", "oprf/evaluate", body)
            calls += 1
        wall = time.perf_counter() - started
        if len(answer["evaluated"]) != batch:
            raise SystemExit(f"oprf/evaluate answered {len(answer['evaluated'])} elements for {batch}")
        return {
            "elements_per_s": round(calls * batch / wall),
            "calls": calls,
            "seconds": round(wall, 1),
            "server_cpu_per_element_us": round((self.server_cpu() - cpu) / (calls * batch) * 1e6, 1),
        }

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _client_version() -> str:
    """Where the cx_client run here comes from, and its git commit (the venv may point elsewhere)."""
    import cx_client

    folder = Path(cx_client.__file__).resolve().parent
    done = subprocess.run(
        ["git", "-C", str(folder), "log", "-1", "--format=%h %cs", "--", "."], capture_output=True, text=True
    )
    status = ["git", "-C", str(folder), "status", "--porcelain", "--", "."]
    dirty = subprocess.run(status, capture_output=True, text=True)
    return f"{folder} at {done.stdout.strip() or '?'}{' (modified)' if dirty.stdout.strip() else ''}"


def run_cx(exchange: Server, source: Path, target: Path, workdir: Path) -> dict:
    env = {
        **os.environ,
        "CX_URL": exchange.url,
        "CX_API_KEY": exchange.api_key,
        "CX_PIN_FILE": str(workdir / "pin.json"),
    }
    err = workdir / f"cx-{source.stem}.stderr"
    cpu = exchange.server_cpu()
    started = time.perf_counter()
    with open(err, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "cx_client.cli", "blind-file", str(source), str(target)],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    server_cpu = exchange.server_cpu() - cpu
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"cx exited with {os.waitstatus_to_exitcode(status)}: see {err}")
    return {
        "wall_s": round(wall, 1),
        "cx_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "cx_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "server_cpu_s": round(server_cpu, 1),
        "cx_said": re.split(r"[\r\n]+", err.read_bytes().decode().strip())[-1],
    }


def check_output(source_rows: int, target: Path, key: oprf.OprfKey) -> int:
    """The output's data rows; raises unless there is one per input row and samples match."""
    samples = {0, 1, source_rows // 2, source_rows - 1}
    rows = 0
    with open(target, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        i_blind = header.index("blind")
        for n, row in enumerate(reader):
            rows += 1
            if n in samples:
                expected = oprf.evaluate_input(oprf_input("CN_RIC", _ric(n)), key)
                if base64.b64decode(row[i_blind]) != expected:
                    raise SystemExit(f"{target}: row {n}'s blind value is not the exchange's evaluation")
    if rows != source_rows:
        raise SystemExit(f"{target}: {rows} rows for {source_rows} input rows")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="100000,1000000", help="file sizes, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement of the evaluation rate")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in the work folder")
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder (removed unless --keep)")
    parser.add_argument("--keep", action="store_true", help="leave the CSVs, the database and the logs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    sizes = [int(x) for x in args.rows.split(",")]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-blindfile-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "when": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": "bench/blind_file_bench.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}",
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "sizes": {},
    }
    print(f"# {report['machine']}; load average {report['load_average_before']}", flush=True)

    files = {}
    for rows in sizes:
        path = workdir / f"in-{rows}.csv"
        started = time.perf_counter()
        generate(path, rows)
        files[rows] = path
        mb = path.stat().st_size / 1e6
        print(f"generated {rows:,} rows ({mb:.0f} MB) in {time.perf_counter() - started:.0f} s", flush=True)

    exchange = Server(workdir, args.database_url)
    report["cx_client"] = _client_version()
    report["server"] = f"gunicorn {exchange.workers()} worker(s), gunicorn.conf.py, {exchange.env['DATABASE_URL']}"
    report["member_limits"] = exchange.limits
    endpoint, in_process = [], []

    def evaluation_rates() -> None:
        in_process.append(round(in_process_rate(args.seconds)))
        print(f"core.oprf.evaluate_encoded, one core: {in_process[-1]:,} elements/s", flush=True)
        endpoint.append(exchange.endpoint_rate(args.seconds))
        print(f"POST /oprf/evaluate, one client: {endpoint[-1]}", flush=True)

    try:
        for rows in sizes:
            evaluation_rates()
            target = workdir / f"out-{rows}.csv"
            result = run_cx(exchange, files[rows], target, workdir)
            result["rows"] = rows
            result["input_mb"] = round(files[rows].stat().st_size / 1e6, 1)
            result["rows_per_s"] = round(rows / result["wall_s"])
            result["cx_cpu_per_row_us"] = round(result["cx_cpu_s"] / rows * 1e6, 1)
            result["server_cpu_per_row_us"] = round(result["server_cpu_s"] / rows * 1e6, 1)
            result["checked_rows"] = check_output(rows, target, oprf.oprf_key())
            report["sizes"][str(rows)] = result
            print(f"cx blind-file {rows:,} rows: {result}", flush=True)
            if not args.keep:
                target.unlink()
        evaluation_rates()
    finally:
        exchange.stop()
    report["endpoint"] = endpoint
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    rate = round(statistics.median(e["elements_per_s"] for e in endpoint))
    report["endpoint_elements_per_s_median"] = rate
    report["in_process_elements_per_s_runs"] = in_process
    report["in_process_elements_per_s"] = round(statistics.median(in_process))

    print()
    print(f"# load average before {report['load_average_before']}, after {report['load_average_after']}")
    print(f"# {report['server']}; cx and the server share the machine's {os.cpu_count()} cores")
    print(f"# cx_client: {report['cx_client']}")
    print(f"evaluation in process, one core (median)  {report['in_process_elements_per_s']:>9,} elements/s")
    print(f"POST /oprf/evaluate, one client (median)  {rate:>9,} elements/s")
    print(
        "| rows | MB | wall s | rows/s | / endpoint | / in-process | cx peak RSS MB | cx CPU us/row "
        "| server CPU us/row |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for rows, r in report["sizes"].items():
        r["ratio_to_endpoint"] = round(r["rows_per_s"] / rate, 2)
        r["ratio_to_in_process"] = round(r["rows_per_s"] / report["in_process_elements_per_s"], 2)
        print(
            f"| {int(rows):,} | {r['input_mb']:.0f} | {r['wall_s']} | {r['rows_per_s']:,} | {r['ratio_to_endpoint']} "
            f"| {r['ratio_to_in_process']} | {r['cx_peak_rss_mb']} | {r['cx_cpu_per_row_us']} "
            f"| {r['server_cpu_per_row_us']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if not args.keep and args.workdir is None:
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
