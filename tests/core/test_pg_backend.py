"""core.postgresql: Django's PostgreSQL backend, minus the health check's `SELECT 1` on a connection
that Django's request hooks saw moments ago without error. Opt-in, with
EXCHANGE_DB_SKIP_BUSY_HEALTH_CHECK=1; off by default, when the ENGINE is Django's own.

A "request" here is what Django does around one: `close_if_unusable_or_obsolete()` (run by
`close_old_connections` on request_started and request_finished) and the request's queries. The
health check runs on psycopg's own cursor, out of sight of CaptureQueriesContext, so it is
counted through a wrapper around `connection.is_usable`.

PostgreSQL only, and transactional (the connection in autocommit, as in a real request, and not
inside the test's transaction). The skip's tests put the backend that the setting selects in
place of the default connection for the test's duration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from django.db import DEFAULT_DB_ALIAS, DataError, OperationalError, ProgrammingError, connection, connections
from django.db.backends.postgresql import base as django_pg
from django.db.utils import load_backend
from django.test.utils import CaptureQueriesContext

import core.postgresql.base as pg_backend
from tests.testenv import TEST_ENV

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parents[2]


def settings_engine(**env: str) -> str:
    """The ENGINE that config/settings.py chooses for a PostgreSQL DATABASE_URL and `env`."""
    code = "import json; from django.conf import settings; print(json.dumps(settings.DATABASES['default']['ENGINE']))"
    base_env = {k: v for k, v in os.environ.items() if k != "EXCHANGE_DB_SKIP_BUSY_HEALTH_CHECK"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base_env, **TEST_ENV, "DATABASE_URL": "postgres://u:p@127.0.0.1:1/x", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _count_checks(wrapper) -> list[bool]:
    """Each health check run on `wrapper` (the result of each `is_usable()`), in order."""
    wrapper.ensure_connection()
    assert wrapper.health_check_enabled, "CONN_HEALTH_CHECKS is off: nothing to test"
    assert wrapper.get_autocommit() and not wrapper.in_atomic_block
    runs: list[bool] = []
    real = wrapper.is_usable

    def counting_is_usable() -> bool:
        usable = real()
        runs.append(usable)
        return usable

    wrapper.is_usable = counting_is_usable  # on the wrapper instance
    return runs


@pytest.fixture
def skipping_backend():
    """The default connection, for this test, as EXCHANGE_DB_SKIP_BUSY_HEALTH_CHECK=1 makes it:
    core.postgresql's wrapper on the same database settings."""
    original = connections[DEFAULT_DB_ALIAS]
    settings_dict = {**original.settings_dict, "ENGINE": "core.postgresql"}
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, DEFAULT_DB_ALIAS)
    connections[DEFAULT_DB_ALIAS] = wrapper  # `connection` now resolves to it
    try:
        yield wrapper
    finally:
        wrapper.close()
        connections[DEFAULT_DB_ALIAS] = original


@pytest.fixture
def checks(skipping_backend):
    """Each health check run on the skipping backend's connection, in order."""
    runs = _count_checks(skipping_backend)
    # Start from a connection the hooks have not seen yet (connecting itself makes a cursor).
    skipping_backend._last_used = None
    skipping_backend._used = False
    yield runs
    del skipping_backend.is_usable


def request(sql: str = "SELECT pg_backend_pid()") -> tuple[object, list[str]]:
    """One request: the start hook, one query, the end hook. Returns the query's value and the
    SQL Django sent for it."""
    connection.close_if_unusable_or_obsolete()  # request_started
    try:
        with CaptureQueriesContext(connection) as captured:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                value = cursor.fetchone()[0]
    finally:
        connection.close_if_unusable_or_obsolete()  # request_finished, even after an error
    return value, [query["sql"] for query in captured.captured_queries]


def server_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def terminate(pid: int) -> None:
    """Kill a backend from the server side, as a database restart or a proxy's idle timeout would."""
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"],
        autocommit=True,
        connect_timeout=5,
    ) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0] is True
        # pg_terminate_backend only signals: wait until the backend is gone.
        for _ in range(100):
            if not other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
                return
            time.sleep(0.02)
    raise AssertionError(f"backend {pid} still alive")


def test_the_setting_is_off_by_default_and_the_engine_is_djangos_own():
    assert settings_engine() == "django.db.backends.postgresql"
    assert settings_engine(EXCHANGE_DB_SKIP_BUSY_HEALTH_CHECK="0") == "django.db.backends.postgresql"
    assert settings_engine(EXCHANGE_DB_SKIP_BUSY_HEALTH_CHECK="1") == "core.postgresql"
    # This test run leaves it off: the default connection is Django's wrapper itself.
    assert connection.settings_dict["ENGINE"] == "django.db.backends.postgresql"
    assert type(connections["default"]) is django_pg.DatabaseWrapper


def test_sqlite_ignores_the_setting():
    assert settings_engine(EXCHANGE_DB_SKIP_BUSY_HEALTH_CHECK="1", DATABASE_URL="sqlite:////tmp/x.db") == (
        "django.db.backends.sqlite3"
    )


def test_by_default_every_request_on_a_reused_connection_is_checked():
    runs = _count_checks(connections["default"])
    try:
        for _ in range(3):
            request()
    finally:
        del connections["default"].is_usable
    assert runs == [True, True, True]


def test_with_the_setting_the_backend_is_the_subclass_and_health_checks_are_on(skipping_backend):
    assert connection.vendor == "postgresql"
    assert type(connections["default"]) is pg_backend.DatabaseWrapper
    assert issubclass(pg_backend.DatabaseWrapper, django_pg.DatabaseWrapper)
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
    assert connection.settings_dict["CONN_MAX_AGE"]  # persistent connections: what checks are for
    connection.ensure_connection()
    assert connection.health_check_enabled is True


def test_the_first_request_on_a_connection_the_hooks_have_not_seen_is_checked(checks):
    value, statements = request()
    assert checks == [True]
    assert statements == ["SELECT pg_backend_pid()"]  # the check is not one of the request's queries
    assert value == server_pid()


def test_a_second_request_in_quick_succession_skips_the_check(checks, monkeypatch):
    monkeypatch.setattr(pg_backend, "HEALTH_CHECK_IDLE_SECONDS", 60.0)  # however slow this machine is
    first, _ = request()
    assert checks == [True]
    for _ in range(3):
        value, statements = request()
        assert value == first  # the same connection
        assert statements == ["SELECT pg_backend_pid()"]
    assert checks == [True], "a SELECT 1 ran on a connection in use moments ago"
    assert connection.health_check_done


def test_with_the_default_idle_time_back_to_back_requests_skip_the_check(checks):
    assert pg_backend.HEALTH_CHECK_IDLE_SECONDS > 0
    request()
    request()
    assert checks == [True]


def test_after_an_idle_spell_the_check_runs_again(checks, monkeypatch):
    monkeypatch.setattr(pg_backend, "HEALTH_CHECK_IDLE_SECONDS", 0.3)
    request()
    assert checks == [True]
    time.sleep(0.5)
    request()
    assert checks == [True, True]


def test_with_no_idle_allowance_every_request_is_checked_as_django_does(checks, monkeypatch):
    monkeypatch.setattr(pg_backend, "HEALTH_CHECK_IDLE_SECONDS", 0)
    for _ in range(3):
        request()
    assert checks == [True, True, True]


def test_after_an_error_the_next_request_is_checked(checks, monkeypatch):
    monkeypatch.setattr(pg_backend, "HEALTH_CHECK_IDLE_SECONDS", 60.0)
    request()
    request()
    assert checks == [True]
    connection.errors_occurred = True
    request()
    assert checks == [True, True]
    assert connection.errors_occurred is False
    request()  # checked and found well: quick again
    assert checks == [True, True]


def test_after_a_real_failing_query_the_next_request_is_checked(checks, monkeypatch):
    monkeypatch.setattr(pg_backend, "HEALTH_CHECK_IDLE_SECONDS", 60.0)
    request()
    assert checks == [True]
    connection.close_if_unusable_or_obsolete()  # request_started
    with pytest.raises(ProgrammingError, match="no_such_table"), connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")  # ProgrammingError: not Data/IntegrityError
    assert connection.errors_occurred
    connection.close_if_unusable_or_obsolete()  # request_finished: Django checks the connection
    assert checks == [True, True]
    request()
    assert checks == [True, True]


def test_after_a_data_error_the_next_request_is_not_checked(checks, monkeypatch):
    # Django does not count DataError and IntegrityError as connection trouble.
    monkeypatch.setattr(pg_backend, "HEALTH_CHECK_IDLE_SECONDS", 60.0)
    request()
    with pytest.raises(DataError, match="invalid input syntax"), connection.cursor() as cursor:
        cursor.execute("SELECT 'x'::integer")
    assert not connection.errors_occurred
    request()
    assert checks == [True]


def test_a_connection_killed_by_the_server_after_an_idle_spell_is_replaced_transparently(checks, monkeypatch):
    monkeypatch.setattr(pg_backend, "HEALTH_CHECK_IDLE_SECONDS", 0.05)
    old_pid, _ = request()
    old_raw = connection.connection
    terminate(old_pid)
    time.sleep(0.15)  # the idle spell
    new_pid, statements = request()  # must not raise
    assert checks == [True, False], "the check did not run, or did not see the dead connection"
    assert new_pid != old_pid
    assert connection.connection is not old_raw
    assert statements == ["SELECT pg_backend_pid()"]
    assert server_pid() == new_pid


def test_a_connection_killed_within_the_idle_window_fails_one_request_then_recovers(checks, monkeypatch):
    # The price of skipping the check: a connection dropped moments after its last use fails the
    # next query (as it would under Django without health checks). Django then sees the error and
    # the following request gets a new connection.
    monkeypatch.setattr(pg_backend, "HEALTH_CHECK_IDLE_SECONDS", 60.0)
    old_pid, _ = request()
    terminate(old_pid)
    with pytest.raises(OperationalError):
        request()  # its end hook sees the error, checks the connection and closes it
    assert checks == [True, False]
    assert connection.connection is None
    new_pid, _ = request()  # a new connection
    assert new_pid != old_pid
    assert checks == [True, False]
    assert server_pid() == new_pid


def test_a_connection_closed_by_django_is_not_treated_as_recently_seen(checks, monkeypatch):
    monkeypatch.setattr(pg_backend, "HEALTH_CHECK_IDLE_SECONDS", 60.0)
    old_pid, _ = request()
    connection.close()
    connection.close_if_unusable_or_obsolete()  # no connection: nothing to see
    assert connection._last_used is None
    new_pid, _ = request()  # a new connection is healthy by definition: no check needed
    assert new_pid != old_pid
    assert checks == [True]


def test_requests_without_queries_do_not_keep_a_connection_counted_as_recently_used(checks, monkeypatch):
    """Only a request that ran a query refreshes the idle timer: hook-only requests (no database
    work) must not hide a connection dropped during a quiet spell."""
    monkeypatch.setattr(pg_backend, "HEALTH_CHECK_IDLE_SECONDS", 0.3)
    old_pid, _ = request()
    assert checks == [True]
    terminate(old_pid)
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:  # requests that touch no database, for longer than the idle time
        connection.close_if_unusable_or_obsolete()
        connection.close_if_unusable_or_obsolete()
        time.sleep(0.05)
    new_pid, _ = request()  # checked (the dropped connection is found and replaced), not failed
    assert checks == [True, False]
    assert new_pid != old_pid
