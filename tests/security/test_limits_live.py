"""Limits hold in total across processes: gunicorn with two worker processes against a throwaway
PostgreSQL, with the counters in the database (the default) and in a real redis-server
(CACHE_URL). Whichever worker answers, a member's 21st request in the minute at 20/minute is a
429, and an address's failed authentications past its rate are 429s while a valid key from the
same address still works. Failures come in floods, their audit events do not: one per address or
member, code and minute, written once the minute is over, counting every refusal.

PostgreSQL only (it starts its own cluster, servers and redis-server: tests/security/live.py)."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection

from members.limits import FLOOD_GRACE_SECONDS
from tests.security.live import (
    Server,
    ThrowawayPostgres,
    ThrowawayRedis,
    call,
    manage,
    postgres_available,
    redis_available,
)

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor != "postgresql" or not postgres_available(),
        reason="starts a PostgreSQL server of its own (runs in the PostgreSQL pass)",
    ),
]

RATE = 20
AUTH_FAILURES = 10
SETUP = """
from django.core.management import call_command
from members.services import member_create
call_command("migrate", verbosity=0, interactive=False)
for code in ("DBA", "DBB", "REDA", "REDB"):
    member, _key, full = member_create(code=code, name=code, kind="bank", actor="test")
    print(code + "=" + full)
"""
# gunicorn's access line: the worker's pid and the status, to show both workers answered.
ACCESS_FORMAT = ("--access-logformat", "ACCESS %(p)s %(s)s")


@pytest.fixture(scope="module")
def database():
    pg = ThrowawayPostgres().create()
    env = {"DATABASE_URL": pg.url}
    setup = manage("shell", "-c", SETUP, env=env)
    assert setup.returncode == 0, setup.stderr
    keys = dict(line.split("=", 1) for line in setup.stdout.split() if "=" in line)
    yield pg, env, keys
    pg.destroy()


@pytest.fixture(scope="module")
def redis():
    if not redis_available():
        pytest.skip("redis-server is not installed (Debian package redis-server): the Redis store is untested")
    server = ThrowawayRedis().start()
    yield server
    server.destroy()


def _serve(env: dict[str, str], access_log: Path) -> Server:
    limits = {"EXCHANGE_THROTTLE_RATE": f"{RATE}/minute", "EXCHANGE_AUTH_FAILURE_RATE": f"{AUTH_FAILURES}/minute"}
    server = Server(
        {**env, **limits}, workers=2, threads=1, extra_args=("--access-logfile", str(access_log), *ACCESS_FORMAT)
    )
    server.access_log = access_log
    server.wait_ready()
    # Both workers up (on a loaded host the second may boot later than the first answers).
    deadline = time.monotonic() + 60
    while len(set(re.findall(r"ACCESS <(\d+)> 200", access_log.read_text()))) < 2:
        assert time.monotonic() < deadline, "the second worker did not come up"
        _burst(server.base, 8, None, path="/healthz")
    return server


def _burst(base: str, n: int, key: str | None, path: str = "/api/v1/me") -> list[tuple[int, dict, dict]]:
    def one(_):
        status, headers, body, _seconds = call(base, "GET", path, key=key)
        return status, headers, body

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(n)))


def _workers_that_answered(server: Server, since: int) -> set[str]:
    return set(re.findall(r"ACCESS <(\d+)> (?:200|429)", server.access_log.read_text()[since:]))


def _events(pg: ThrowawayPostgres, where: str) -> int:
    return int(pg.psql(f"SELECT count(*) FROM audit_auditevent WHERE {where};", database="exchange").strip())


def _counted(pg: ThrowawayPostgres, where: str) -> int:
    total = f"SELECT COALESCE(SUM((details->>'count')::int), 0) FROM audit_auditevent WHERE {where};"
    return int(pg.psql(total, database="exchange").strip())


def _write_ended_minutes(env: dict[str, str]) -> None:
    """Wait for the minute to be over, then write its events as run_worker's round does."""
    now = time.time()
    time.sleep((now // 60 + 1) * 60 + FLOOD_GRACE_SECONDS + 1 - now)
    done = manage("shell", "-c", "from members.limits import flood_events_write; flood_events_write()", env=env)
    assert done.returncode == 0, done.stderr


def _assert_limits_hold(
    server: Server, pg: ThrowawayPostgres, env: dict[str, str], keys: dict, member: str, peer: str
) -> None:
    started = pg.psql("SELECT now();", database="exchange").strip()
    log_start = len(server.access_log.read_text())
    answers = _burst(server.base, RATE + 10, keys[member])
    statuses = sorted(status for status, _h, _b in answers)
    assert statuses == [200] * RATE + [429] * 10, statuses
    refused = [(headers, body) for status, headers, body in answers if status == 429]
    assert all(body["code"] == "throttled" and int(headers["Retry-After"]) >= 1 for headers, body in refused)
    assert len(_workers_that_answered(server, log_start)) == 2, "both worker processes must have answered"
    assert call(server.base, "GET", "/api/v1/me", key=keys[peer])[0] == 200  # the limit is per member

    # Failed authentications from one address: 401 up to the rate, then 429; a valid key still works.
    bad = keys[peer][:-4] + "AAAA"
    failed = sorted(status for status, _h, _b in _burst(server.base, AUTH_FAILURES + 10, bad))
    assert failed == [401] * AUTH_FAILURES + [429] * 10, failed
    no_header = call(server.base, "GET", "/api/v1/me")
    assert no_header[0] == 429 and no_header[2]["code"] == "throttled" and "Retry-After" in no_header[1]
    assert call(server.base, "GET", "/api/v1/me", key=keys[peer])[0] == 200

    # 10 member refusals and 21 failed authentications (10 failed, 11 throttled): a handful of
    # events, not one per refusal (one per scope, code and minute; more if the minute turned
    # during the burst), counting every refusal.
    _write_ended_minutes(env)
    since = f"occurred_at >= '{started}' AND outcome = 'denied'"
    refused = f"{since} AND action = 'api.access' AND member_code = '{member}'"
    assert 1 <= _events(pg, refused) <= 2 and _counted(pg, refused) == 10
    failed = f"{since} AND action = 'auth.authenticate'"
    assert 2 <= _events(pg, failed) <= 4
    assert _counted(pg, f"{failed} AND details->>'why' = 'authentication_failed'") == AUTH_FAILURES
    assert _counted(pg, f"{failed} AND details->>'why' = 'throttled'") == 11
    assert _events(pg, f"{since} AND action = 'limit.flood'") == 0


def test_the_limits_hold_across_two_workers_with_the_database_store(database, tmp_path):
    pg, env, keys = database
    server = _serve(env, tmp_path / "access.log")
    try:
        _assert_limits_hold(server, pg, env, keys, "DBA", "DBB")
        counted = pg.psql("SELECT count(*) FROM members_limitcounter WHERE key = 'rate|DBA';", database="exchange")
        assert int(counted) >= 1  # in the shared table, not in a process
    finally:
        server.stop()


def test_the_limits_hold_across_two_workers_with_redis(database, redis, tmp_path):
    pg, env, keys = database
    # The database store is cleared first so that only Redis can be counting.
    pg.psql("DELETE FROM members_limitcounter;", database="exchange")
    redis_env = {**env, "CACHE_URL": redis.url}
    server = _serve(redis_env, tmp_path / "access.log")
    try:
        _assert_limits_hold(server, pg, redis_env, keys, "REDA", "REDB")
        leftover = pg.psql("SELECT count(*) FROM members_limitcounter WHERE key LIKE '%RED%';", database="exchange")
        assert int(leftover) == 0
    finally:
        server.stop()
