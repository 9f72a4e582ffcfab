"""The inquiry on two data sets side by side (1 million and 10 million records), in alternating runs.

    .venv/bin/python bench/perf/compare.py --small DIR_1M --large DIR_10M [--rounds 4] [--duration 15]
        [--connections 16,1] [--doc docs/performance.md] [--label NAME]

Issue 9 asks that the inquiry's latency at 10 million records stay within 1.2 times that at
1 million: the cost must not grow with the data. Two `run.py` runs an hour apart cannot show that
on a shared machine whose CPU speed drifts (docs/performance.md saw 1.8x within one session). So
this script keeps both data sets online at once, each on its own PostgreSQL and its own gunicorn,
and alternates short wrk runs between them (A B, then B A, ...), so that drift hits both alike.
Both folders hold data sets built by `run.py --pgdir DIR --keep` (the large one grown with
`--scale-by-copy`); nothing is built here.

Per data set and load level it prints requests/s, p50 and p99 (the means of each run's figures)
and, per round, the ratio large/small of the two runs made back to back: their median and range.
With 16 clients, latency is mostly queueing (16 divided by the rate); with 1 client it is one
request's own time, which is what grows if a query's cost grows with the data. The floor view is
measured the same way, as the data-independent reference.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from bench.perf.run import (  # noqa: E402 - after the path
    BENCH_ENV,
    ROOT,
    Postgres,
    Server,
    gunicorn_defaults,
    log,
    machine,
    prewarm,
    summarise,
    write_doc,
    wrk,
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
        prewarm(self.pg)
        self.server = Server(env, **gunicorn_defaults())  # the production worker model
        log(f"{self.name}: {self.records:,} records, PostgreSQL port {self.pg.port}, gunicorn port {self.server.port}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.pg.stop()


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
    if not runs:
        return dict.fromkeys(keys, 0.0) | {"errors": 0}
    return {key: round(sum(run[key] for run in runs) / len(runs), 2) for key in keys} | {
        "errors": sum(run["errors"] for run in runs)
    }


def _ratio(large: float, small: float) -> float | None:
    return large / small if small else None


def results(runs: list[dict], names: list[str]) -> dict:
    """Per endpoint and load: each set's means, and the per-round ratios large/small (paired)."""
    found = {}
    for key in dict.fromkeys(run["key"] for run in runs):
        mine = [run for run in runs if run["key"] == key]
        entry = {name: mean_of([run for run in mine if run["set"] == name]) for name in names}
        for percentile in ("p50_ms", "p99_ms"):
            ratios = []
            for round_number in sorted({run["round"] for run in mine}):
                pair = {run["set"]: run for run in mine if run["round"] == round_number}
                if len(pair) == 2 and (ratio := _ratio(pair["large"][percentile], pair["small"][percentile])):
                    ratios.append(ratio)
            entry[percentile.replace("_ms", "_ratios")] = [round(r, 3) for r in ratios]
        found[key] = entry
    return found


def _spread(ratios: list[float]) -> str:
    if not ratios:
        return "n/a"
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


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
        "| p50 large/small, per round: median (range) | p99 large/small, per round: median (range) | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, entry in report["results"].items():
        a, b = entry["small"], entry["large"]
        lines.append(
            f"| {key} | {a['rps']:,.0f} | {b['rps']:,.0f} | {a['p50_ms']} / {a['p99_ms']} | "
            f"{b['p50_ms']} / {b['p99_ms']} | {_spread(entry['p50_ratios'])} | {_spread(entry['p99_ratios'])} "
            f"| {a['errors'] + b['errors']} |"
        )
    lines += [
        "",
        "req/s, p50 and p99 of a set are the means of its runs' figures. A run with errors (any"
        " non-2xx answer or socket error) counts those requests in its latencies too.",
    ]
    lines += ["", "Each run (req/s, p50 / p95 / p99 ms), in the order run:", ""]
    lines += [
        f"- round {run['round']}, {run['set']} {run['key']}: {run['rps']:,} req/s, "
        f"{run['p50_ms']} / {run['p95_ms']} / {run['p99_ms']} ms"
        f"{' (' + str(run['errors']) + ' errors)' if run['errors'] else ''}"
        for run in report["runs"]
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=Path, required=True, help="folder of the smaller data set (1M)")
    parser.add_argument("--large", type=Path, required=True, help="folder of the larger data set (10M)")
    parser.add_argument("--rounds", type=int, default=4, help="an even number: each set goes first as often")
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
        "command": shlex.join([".venv/bin/python", "bench/perf/compare.py", *sys.argv[1:]]),
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
                        report["runs"].append({"round": round_number + 1, "set": name, "key": key, **result})
                        log(f"round {round_number + 1} {name} {key}: {result} ({time.monotonic() - started:.0f} s)")
    finally:
        for dataset in sets.values():
            dataset.stop()

    out = args.large / "work" / f"compare-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2))  # the raw runs first, whatever follows
    report["results"] = results(report["runs"], list(sets))
    out.write_text(json.dumps(report, indent=2))
    text = render(report)
    print(text)
    if args.doc:
        write_doc(args.doc, args.label, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
