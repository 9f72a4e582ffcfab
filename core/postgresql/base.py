"""Django's PostgreSQL backend, minus the health check's `SELECT 1` on a connection in steady use.

Opt-in: config/settings.py names this backend only with EXCHANGE_DB_SKIP_BUSY_HEALTH_CHECK=1;
otherwise the ENGINE is Django's own.

With CONN_HEALTH_CHECKS, Django runs `SELECT 1` before the first query of every request that
reuses a persistent connection. Here the check is skipped when the connection ran a query in a
request that ended less than `HEALTH_CHECK_IDLE_SECONDS` ago, with no error since, and psycopg
does not know it broken (Django already checks, and closes if need be, a connection after a
request whose queries failed). After a quiet spell it runs as before, which is when a database
restart or a dropped idle connection would show. The price: a connection dropped within that
second fails one request, as it would without health checks.
"""

from __future__ import annotations

import time

from django.db.backends.postgresql import base

HEALTH_CHECK_IDLE_SECONDS = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    _last_used: float | None = None  # when a request that ran a query last ended
    _used = False  # a cursor was made since the last request hook

    def close_if_health_check_failed(self):
        # Called each time a cursor is made: the connection is in use in this request.
        self._used = True
        super().close_if_health_check_failed()

    def close_if_unusable_or_obsolete(self):
        # Runs at the start and the end of every request (django.db.close_old_connections).
        now = time.monotonic()
        if self._used:
            self._last_used, self._used = now, False
        recent = (
            self._last_used is not None
            and now - self._last_used < HEALTH_CHECK_IDLE_SECONDS
            and not self.errors_occurred
        )
        super().close_if_unusable_or_obsolete()  # resets health_check_done
        if self.connection is None:
            self._last_used = None
            return
        if recent and not getattr(self.connection, "broken", False) and not self.connection.closed:
            self.health_check_done = True  # used moments ago without error: no SELECT 1
