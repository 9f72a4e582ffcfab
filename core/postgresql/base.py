"""Django's PostgreSQL backend with a health check that costs nothing on a busy connection.

With CONN_HEALTH_CHECKS, Django runs `SELECT 1` before the first query of every request that
reuses a persistent connection: a whole extra round trip on each API call. Here the check is
skipped when the connection was last seen by Django's request hooks less than
`HEALTH_CHECK_IDLE_SECONDS` ago with no error since and psycopg does not know it broken (Django
already checks, and closes if need be, a connection after a request whose queries failed). After
a quiet spell it runs as before, which is when a database restart or a dropped idle connection
would show.
"""

from __future__ import annotations

import time

from django.db.backends.postgresql import base

HEALTH_CHECK_IDLE_SECONDS = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    _last_seen: float | None = None

    def close_if_unusable_or_obsolete(self):
        # Runs at the start and the end of every request (django.db.close_old_connections).
        now = time.monotonic()
        recent = (
            self._last_seen is not None
            and now - self._last_seen < HEALTH_CHECK_IDLE_SECONDS
            and not self.errors_occurred
        )
        super().close_if_unusable_or_obsolete()  # resets health_check_done
        if self.connection is None:
            self._last_seen = None
            return
        self._last_seen = now
        if recent and not self.connection.broken and not self.connection.closed:
            self.health_check_done = True  # in use moments ago without error: no SELECT 1
