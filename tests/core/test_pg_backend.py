"""core.postgresql: Django's PostgreSQL backend, minus the health check's `SELECT 1` on a connection
that Django's request hooks saw moments ago without error.

A "request" here is what Django does around one: `close_if_unusable_or_obsolete()` (run by
`close_old_connections` on request_started and request_finished) and the request's queries. The
health check runs on psycopg's own cursor, out of sight of CaptureQueriesContext, so it is
counted through a wrapper around `connection.is_usable`.

PostgreSQL only, and transactional (the connection in autocommit, as in a real request, and not
inside the test's transaction).
"""

from __future__ import annotations

import datetime
import time

import psycopg
import pytest
from django.db import DataError, OperationalError, ProgrammingError, connection, connections
from django.db.backends.postgresql import base as django_pg
from django.test.utils import CaptureQueriesContext

import core.postgresql.base as pg_backend

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def checks():
    """Each health check run on `connection` (the result of each `is_usable()`), in order."""
    connection.ensure_connection()
    assert connection.health_check_enabled, "CONN_HEALTH_CHECKS is off: nothing to test"
    assert connection.get_autocommit() and not connection.in_atomic_block
    # Start from a connection the hooks have not seen yet (an earlier test may have run them).
    connection._last_used = None
    connection._used = False
    runs: list[bool] = []
    real = connection.is_usable

    def counting_is_usable() -> bool:
        usable = real()
        runs.append(usable)
        return usable

    connection.is_usable = counting_is_usable  # on the wrapper instance, through the proxy
    yield runs
    del connection.is_usable


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


def test_the_backend_is_the_subclass_and_health_checks_are_on():
    assert connection.vendor == "postgresql"
    assert connection.settings_dict["ENGINE"] == "core.postgresql"
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


# --- timestamptz values read with psycopg's own loader ---------------------------------------

TIMESTAMPS = [
    "2026-11-29 03:58:15.157262+00",
    "2026-01-02 00:00:00+00",
    "1999-12-31 23:59:59.5+00",
    "2026-03-29 01:30:00+02",  # a non-UTC literal: PostgreSQL converts it to the session's zone
    "0001-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
]


def _read(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def test_timestamptz_columns_are_read_by_the_fast_loader_with_the_same_values_as_djangos():
    connection.ensure_connection()
    assert connection.connection.info.parameter_status("TimeZone") == "UTC"
    loader = connection.connection.adapters.get_loader(pg_backend.TIMESTAMPTZ_OID, psycopg.pq.Format.TEXT)
    assert loader is pg_backend.UtcTimestamptzLoader
    sql = "SELECT v::timestamptz FROM unnest(%s::text[]) AS v"
    fast = [row[0] for row in _read(sql, [TIMESTAMPS])]
    # Django's own loader, registered on one cursor as Django does when the zones disagree.
    with connection.cursor() as cursor:
        django_pg.register_tzloader(connection.timezone, cursor.cursor)
        cursor.execute(sql, [TIMESTAMPS])
        slow = [row[0] for row in cursor.fetchall()]
    assert fast == slow
    assert all(value.tzinfo is slow_value.tzinfo is datetime.UTC for value, slow_value in zip(fast, slow, strict=True))
    assert fast[3].hour == 23 and fast[3].day == 28  # 01:30+02 is 23:30 UTC the day before
    assert _read("SELECT NULL::timestamptz") == [(None,)]
    with pytest.raises(DataError):
        _read("SELECT 'infinity'::timestamptz")


def test_cursors_keep_the_connections_loader_while_the_zones_agree():
    with connection.cursor() as cursor:
        loader = cursor.cursor.adapters.get_loader(pg_backend.TIMESTAMPTZ_OID, psycopg.pq.Format.TEXT)
    assert loader is pg_backend.UtcTimestamptzLoader


def test_a_connection_whose_session_is_not_in_utc_keeps_djangos_loader(monkeypatch):
    monkeypatch.setattr(django_pg.DatabaseWrapper, "timezone_name", "Asia/Shanghai")
    wrapper = connections.create_connection("default")
    try:
        wrapper.ensure_connection()
        assert wrapper.connection.info.parameter_status("TimeZone") == "Asia/Shanghai"
        loader = wrapper.connection.adapters.get_loader(pg_backend.TIMESTAMPTZ_OID, psycopg.pq.Format.TEXT)
        assert loader is not pg_backend.UtcTimestamptzLoader
        assert loader.timezone is datetime.UTC  # Django's, from its adapters template
    finally:
        wrapper.close()
