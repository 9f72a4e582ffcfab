"""The inquiry on two data sets side by side (1 million and 10 million records), in alternating runs.

    .venv/bin/python bench/perf/compare.py --small DIR_1M --large DIR_10M [--rounds 3] [--duration 15]
        [--connections 16,1] [--doc docs/performance.md] [--label NAME]

Issue 9 asks that the inquiry's latency at 10 million records stay within 1.2 times that at
1 million: the cost must not grow with the data. Two `run.py` runs an hour apart cannot show that
on a shared machine whose CPU speed drifts (docs/performance.md saw 1.8x within one session). So
this script keeps both data sets online at once, each on its own PostgreSQL and its own gunicorn,
and alternates short wrk runs between them (A B, then B A, ...), so that drift hits both alike.
Both folders hold data sets built by `run.py --pgdir DIR --keep` (the large one grown with
`--scale-by-copy`); nothing is built here.

Per data set and load level it prints requests/s and p50/p95/p99 averaged over the rounds, and
the ratio large/small of each. With 16 clients, latency is mostly queueing (16 divided by the
rate); with 1 client it is one request's own time, which is what grows if a query's cost grows
with the data. The floor view is measured the same way, as the data-independent reference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from bench.perf.run import (  # noqa: E402 - after the path
    BENCH_ENV,
    HOT_RELATIONS,
    ROOT,
    Postgres,
    Server,
    log,
    machine,
    summarise,
    wrk,
    write_doc,
)

ENDPOINTS = {"inquiry": "/api/v1/inquiries", "floor": "/bench/floor"}


class DataSet:
    """One built data set: its PostgreSQL (started, migrated, hot relations prewarmed) and its gunicorn."""

    def __init__(self, name: str, folder: Path):
        self.name = name
        manifest = folder / "work" / "dataset.json"
        if not manifest.exists():
            raise SystemExit(f"{folder} holds no data set (build one with run.py --pgdir {folder} --keep)")
        dataset = json.loads(manifest.read_text())
        self.records = dataset["records"]
        self.synthetic = dataset.get("synthetic_records", 0)
        self.pools = dataset.get("pools_scaled") or dataset["pools"]
        self.pg = Postgres(folder)
        self.server: Server | None = None

    def start(self) -> None:
        self.pg.start()
        env = {**os.environ, **BENCH_ENV, "DATABASE_URL": self.pg.url}
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"], check=True, env=env)
        self.pg.psql("CREATE EXTENSION IF NOT EXISTS pg_prewarm", db="exchange")
        for relation in HOT_RELATIONS:
            self.pg.psql(f"SELECT pg_prewarm('{relation}'::regclass)", db="exchange")
        self.server = _server(env)
        log(f"{self.name}: {self.records:,} records, PostgreSQL port {self.pg.port}, gunicorn port {self.server.port}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.pg.stop()


def _server(env: dict) -> Server:
    """gunicorn as gunicorn.conf.py configures it (the production worker model)."""
    from importlib import util as import_util

    spec = import_util.spec_from_file_location("gunicorn_conf", ROOT / "gunicorn.conf.py")
    conf = import_util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return Server(env, workers=conf.workers, worker_class=conf.worker_class, threads=conf.threads)


def measure(dataset: DataSet, endpoint: str, connections: int, duration: int) -> dict:
    return summarise(
        wrk(
            dataset.server.port,
            ENDPOINTS[endpoint],
            dataset.pools[endpoint],
            duration=duration,
            connections=connections,
            threads=min(2, connections),
        )
    )


def mean_of(runs: list[dict]) -> dict:
    keys = ("rps", "p50_ms", "p95_ms", "p99_ms")
    return {key: round(sum(run[key] for run in runs) / len(runs), 2) for key in keys} | {
        "errors": sum(run["errors"] for run in runs)
    }


def render(report: dict) -> str:
    small, large = report["sets"]["small"], report["sets"]["large"]
    lines = [
        f"Run {report['when']}: `{report['command']}`",
        "",
        f"Machine: {report['machine']}",
        "",
        f"Data sets: small {small['records']:,} records; large {large['records']:,} records "
        f"({large['synthetic']:,} of them synthetic, see bench/perf/README.md). Both online at once, "
        f"{report['rounds']} alternating rounds of {report['duration']} s per endpoint and load.",
        "",
        "| endpoint, clients | small req/s | large req/s | small p50 / p99 ms | large p50 / p99 ms "
        "| large/small p50 | large/small p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, pair in report["results"].items():
        a, b = pair["small"], pair["large"]
        lines.append(
            f"| {key} | {a['rps']:,.0f} | {b['rps']:,.0f} | {a['p50_ms']} / {a['p99_ms']} | "
            f"{b['p50_ms']} / {b['p99_ms']} | {pair['p50_ratio']:.2f} | {pair['p99_ratio']:.2f} |"
        )
    lines += ["", "Each run (req/s, p50, p99 ms), in the order run:", ""]
    lines += [
        f"- {run['set']} {run['key']}: {run['rps']:,} req/s, {run['p50_ms']} / {run['p99_ms']} ms"
        f"{' (' + str(run['errors']) + ' errors)' if run['errors'] else ''}"
        for run in report["runs"]
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=Path, required=True, help="folder of the smaller data set (1M)")
    parser.add_argument("--large", type=Path, required=True, help="folder of the larger data set (10M)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--connections", default="16,1", help="comma-separated client counts")
    parser.add_argument("--endpoints", default="inquiry,floor", help="comma-separated: inquiry,floor")
    parser.add_argument("--doc", type=Path, default=None)
    parser.add_argument("--label", default="1M against 10M, side by side")
    args = parser.parse_args()
    loads = [int(n) for n in args.connections.split(",") if n]
    endpoints = [e for e in args.endpoints.split(",") if e]
    if unknown := set(endpoints) - set(ENDPOINTS):
        raise SystemExit(f"unknown endpoints: {', '.join(sorted(unknown))}")

    sets = {"small": DataSet("small", args.small), "large": DataSet("large", args.large)}
    report: dict = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": ".venv/bin/python bench/perf/compare.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "rounds": args.rounds,
        "duration": args.duration,
        "sets": {name: {"records": s.records, "synthetic": s.synthetic} for name, s in sets.items()},
        "runs": [],
    }
    try:
        for dataset in sets.values():
            dataset.start()
        for dataset in sets.values():  # warm both: connections, prepared statements, caches
            for endpoint in endpoints:
                measure(dataset, endpoint, max(loads), 3)
        for round_number in range(args.rounds):
            order = ["small", "large"] if round_number % 2 == 0 else ["large", "small"]
            for endpoint in endpoints:
                for connections in loads:
                    for name in order:
                        started = time.monotonic()
                        result = measure(sets[name], endpoint, connections, args.duration)
                        key = f"{endpoint}, {connections}"
                        report["runs"].append({"set": name, "key": key, **result})
                        log(f"round {round_number + 1} {name} {key}: {result} ({time.monotonic() - started:.0f} s)")
    finally:
        for dataset in sets.values():
            dataset.stop()

    report["results"] = {}
    for key in dict.fromkeys(run["key"] for run in report["runs"]):
        pair = {name: mean_of([r for r in report["runs"] if r["key"] == key and r["set"] == name]) for name in sets}
        pair["p50_ratio"] = pair["large"]["p50_ms"] / pair["small"]["p50_ms"]
        pair["p99_ratio"] = pair["large"]["p99_ms"] / pair["small"]["p99_ms"]
        report["results"][key] = pair
    text = render(report)
    print(text)
    out = args.large / "work" / f"compare-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2))
    if args.doc:
        write_doc(args.doc, args.label, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
