"""Load soak: a bounded mixed load from several members at once against gunicorn on a throwaway
PostgreSQL, then a reconciliation of everything the clients were told.

    .venv/bin/python bench/soak.py [--duration 300] [--members 4] [--clients 2] [--workers 2] [--threads 4]

Each client (`--clients` per member, all in threads of this process) loops until the time is up,
choosing: a batch of 1-20 records (with an Idempotency-Key, retried with the same key when the
answer was lost or 503), a consent registration, an inquiry under a fresh consent (subjects are
shared between members, so inquiries see other members' records and inquiries), a list of its own
records. Then it checks: every acknowledged record is in its owner's list and nothing else is;
the audit log holds one `ok` event per acknowledged record version, consent and inquiry; the
chain seals and `verify_audit` passes; no answer was a 5xx. It prints what was served, the
errors and latency percentiles, and exits 1 when any check fails. Not run in CI (see bench/README.md).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import random
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.security.live import Server, ThrowawayPostgres, call, create_member, manage  # noqa: E402

_RIC_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_RIC_CHECK = "10X98765432"
SUBJECTS = 2000  # a shared pool, so members' records and inquiries meet


def ric(n: int) -> str:
    born = date(1960, 1, 1) + timedelta(days=n // 1000)
    body = f"310104{born:%Y%m%d}{n % 1000:03d}"
    return body + _RIC_CHECK[sum(int(c) * w for c, w in zip(body, _RIC_WEIGHTS, strict=True)) % 11]


def subject(n: int) -> dict:
    return {"id_type": "CN_RIC", "id_number": ric(n)}


def record(reference: str, n: int, rng: random.Random) -> dict:
    today = date.today()
    return {
        "member_reference": reference,
        "subject": {**subject(n), "name": "Soak Borrower"},
        "product": rng.choice(["consumer_loan", "credit_card", "bnpl", "auto_loan"]),
        "currency": "CNY",
        "principal": f"{rng.randint(1000, 90000)}.00",
        "amount_overdue": f"{rng.randint(1, 900)}.{rng.randint(0, 99):02d}",
        "days_past_due": rng.randint(1, 200),
        "status": "delinquent",
        "opened_on": (today - timedelta(days=700)).isoformat(),
        "delinquent_since": (today - timedelta(days=120)).isoformat(),
        "as_of": (today - timedelta(days=2)).isoformat(),
        "notice_sent_on": (today - timedelta(days=60)).isoformat(),
        "payment_history": "NNN123",
    }


def consent(n: int) -> dict:
    now = datetime.now(UTC)
    return {
        "subject": subject(n),
        "purpose": "credit_application",
        "granted_at": (now - timedelta(hours=1)).isoformat(),
        "expires_at": (now + timedelta(days=30)).isoformat(),
        "evidence_sha256": hashlib.sha256(f"soak consent {n} {now}".encode()).hexdigest(),
        "channel": "app",
    }


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.accepted: dict[str, dict[str, int]] = collections.defaultdict(dict)  # member -> record id -> versions
        self.consents: collections.Counter = collections.Counter()
        self.inquiries: collections.Counter = collections.Counter()
        self.lists: collections.Counter = collections.Counter()

    def note(self, action: str, status: int, seconds: float) -> None:
        with self.lock:
            self.statuses[action][status] += 1
            if status:
                self.latency[action].append(seconds)


class Client:
    def __init__(self, base: str, member: str, key: str, number: int, stats: Stats, seed: int):
        self.base, self.member, self.key, self.number, self.stats = base, member, key, number, stats
        self.rng = random.Random(seed)
        self.sequence = 0

    def request(self, action: str, method: str, path: str, body=None, headers=None):
        status, _headers, answer, seconds = call(self.base, method, path, key=self.key, body=body, headers=headers)
        self.stats.note(action, status, seconds)
        return status, answer

    def submit(self) -> None:
        batch = []
        for _ in range(self.rng.randint(1, 20)):
            self.sequence += 1
            batch.append(record(f"{self.member}-{self.number}-{self.sequence}", self.rng.randrange(SUBJECTS), self.rng))
        key = {"Idempotency-Key": uuid.uuid4().hex}
        for _attempt in range(5):  # a lost answer or a 503 is retried with the same key
            status, answer = self.request("records.submit", "POST", "/api/v1/records", {"records": batch}, key)
            if status == 201:
                with self.stats.lock:
                    for result in answer["results"]:
                        self.stats.accepted[self.member][result["id"]] = result["version"]
                return
            if status not in (0, 409, 503):
                return
            time.sleep(0.5)

    def register(self, n: int) -> str | None:
        status, answer = self.request("consents.register", "POST", "/api/v1/consents", consent(n))
        if status == 201:
            with self.stats.lock:
                self.stats.consents[self.member] += 1
            return answer["id"]
        return None

    def inquire(self) -> None:
        n = self.rng.randrange(SUBJECTS)
        consent_id = self.register(n)
        if consent_id is None:
            return
        body = {"subject": subject(n), "consent_id": consent_id, "purpose": "credit_application"}
        status, _answer = self.request("inquiries.create", "POST", "/api/v1/inquiries", body)
        if status == 200:
            with self.stats.lock:
                self.stats.inquiries[self.member] += 1

    def list(self) -> None:
        status, _answer = self.request("records.list", "GET", "/api/v1/records?page_size=50")
        if status == 200:
            with self.stats.lock:
                self.stats.lists[self.member] += 1

    def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            choice = self.rng.random()
            if choice < 0.35:
                self.submit()
            elif choice < 0.55:
                self.register(self.rng.randrange(SUBJECTS))
            elif choice < 0.90:
                self.inquire()
            else:
                self.list()


def listed_ids(base: str, key: str) -> tuple[set[str], int]:
    ids: set[str] = set()
    path, pages = "/api/v1/records?page_size=500", 0
    while path:
        status, _headers, answer, _seconds = call(base, "GET", path, key=key, timeout=120)
        if status != 200:
            raise RuntimeError(f"listing failed: {status} {answer}")
        pages += 1
        ids.update(item["id"] for item in answer["results"])
        following = urlsplit(answer["next"]) if answer["next"] else None
        path = f"{following.path}?{following.query}" if following else None
    return ids, pages


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return f"p50 {at(0.50):7.1f}  p90 {at(0.90):7.1f}  p99 {at(0.99):7.1f}  max {ordered[-1] * 1000:7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300, help="seconds of load (default 300)")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--clients", type=int, default=2, help="concurrent clients per member")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    pg = ThrowawayPostgres(max_connections=200)
    server = None
    try:
        print(f"==> PostgreSQL on port {pg.port} in {pg.dir}", flush=True)
        pg.create()
        env = {"DATABASE_URL": pg.url, "DB_CONN_MAX_AGE": "60"}
        migrated = manage("migrate", "--noinput", "-v0", env=env)
        if migrated.returncode != 0:
            print(migrated.stderr)
            return 1
        codes = [f"SOAK{i}" for i in range(args.members)]
        with ThreadPoolExecutor(len(codes)) as pool:
            keys = dict(zip(codes, pool.map(lambda code: create_member(code, env), codes), strict=True))
        server = Server(env, workers=args.workers, threads=args.threads, log=pg.dir / "server.log")
        server.wait_ready()
        print(
            f"==> gunicorn {args.workers}x{args.threads} on {server.base}; {args.members} members x "
            f"{args.clients} clients for {args.duration:.0f} s",
            flush=True,
        )

        stats = Stats()
        clients = [
            Client(server.base, code, keys[code], number, stats, seed=args.seed * 1000 + i * 10 + number)
            for i, code in enumerate(codes)
            for number in range(args.clients)
        ]
        started = time.monotonic()
        deadline = started + args.duration
        threads = [threading.Thread(target=client.run, args=(deadline,)) for client in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started

        # --- reconciliation ------------------------------------------------------------------
        failures: list[str] = []
        listed_pages = collections.Counter()
        for code in codes:
            ids, listed_pages[code] = listed_ids(server.base, keys[code])
            accepted = set(stats.accepted[code])
            if accepted - ids:
                failures.append(f"{code}: {len(accepted - ids)} acknowledged records missing from its list")
            if ids - accepted:
                failures.append(f"{code}: {len(ids - accepted)} records stored but never acknowledged")
        rows = pg.psql(
            "SELECT member_code, action, count(*) FROM audit_auditevent WHERE outcome = 'ok' GROUP BY 1, 2;",
            database="exchange",
        )
        events = {(m, a): int(c) for m, a, c in (line.split("|") for line in rows.splitlines() if line)}
        versions = pg.psql(
            "SELECT m.code, count(*) FROM exchange_recordversion v JOIN members_member m ON m.id = v.member_id "
            "GROUP BY 1;",
            database="exchange",
        )
        stored_versions = {m: int(c) for m, c in (line.split("|") for line in versions.splitlines() if line)}
        for code in codes:
            acknowledged_versions = sum(stats.accepted[code].values())
            expected = {
                "record.submit": stored_versions.get(code, 0),
                "consent.register": stats.consents[code],
                "inquiry.create": stats.inquiries[code],
                "record.list": stats.lists[code] + listed_pages[code],
            }
            if acknowledged_versions != stored_versions.get(code, 0):
                stored = stored_versions.get(code, 0)
                failures.append(f"{code}: {stored} record versions stored, {acknowledged_versions} acknowledged")
            for action, count in expected.items():
                if events.get((code, action), 0) != count:
                    failures.append(f"{code}: {events.get((code, action), 0)} {action} events, expected {count}")
        sealed = manage("seal_audit", env=env)
        verified = manage("verify_audit", env=env)
        if sealed.returncode != 0 or verified.returncode != 0:
            failures.append(f"audit: seal rc {sealed.returncode}, verify: {verified.stdout}{verified.stderr}")
        server_errors = sum(
            count for counter in stats.statuses.values() for status, count in counter.items() if status >= 500
        )
        if server_errors:
            failures.append(f"{server_errors} answers were 5xx")

        # --- summary ---------------------------------------------------------------------------
        total = sum(sum(counter.values()) for counter in stats.statuses.values())
        answered = sum(count for counter in stats.statuses.values() for status, count in counter.items() if status)
        print(f"\n==> {answered} requests served in {elapsed:.0f} s ({answered / elapsed:.1f}/s); {total} sent")
        for action in sorted(stats.statuses):
            counter = stats.statuses[action]
            shown = ", ".join(f"{status or 'no answer'}: {count}" for status, count in sorted(counter.items()))
            print(f"    {action:18} {shown}")
            print(f"    {'':18} {percentiles(stats.latency[action])}")
        all_latency = [value for values in stats.latency.values() for value in values]
        print(f"    {'all':18} {percentiles(all_latency)}")
        accepted_total = sum(len(ids) for ids in stats.accepted.values())
        print(
            f"==> acknowledged: {accepted_total} records, {sum(stats.consents.values())} consents, "
            f"{sum(stats.inquiries.values())} inquiries; 5xx: {server_errors}"
        )
        print(f"==> verify_audit: {verified.stdout.strip() or verified.stderr.strip()}")
        if failures:
            print("==> RECONCILIATION FAILED")
            for failure in failures:
                print("    " + failure)
            return 1
        print("==> reconciliation OK: every acknowledged record listed, every action audited, chain verified")
        return 0
    finally:
        if server is not None:
            server.stop()
        pg.destroy()


if __name__ == "__main__":
    sys.exit(main())
