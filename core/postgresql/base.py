"""Django's PostgreSQL backend with a health check that costs nothing on a busy connection.

With CONN_HEALTH_CHECKS, Django runs `SELECT 1` before the first query of every request that
reuses a persistent connection: a whole extra round trip on each API call. Here the check is
skipped when the connection ran a query in a request that ended less than
`HEALTH_CHECK_IDLE_SECONDS` ago, with no error since, and psycopg does not know it broken (Django
already checks, and closes if need be, a connection after a request whose queries failed). After
a quiet spell it runs as before, which is when a database restart or a dropped idle connection
would show.

It also reads `timestamptz` columns with psycopg's own loader (its C implementation with
psycopg-binary) instead of Django's, which subclasses psycopg's pure-Python one to set the
datetime's zone: about 12 us a value against 1 here, and the key, consent and records of one
inquiry hold a dozen of them. With the session's time zone UTC, which Django sets on every new
connection when USE_TZ is on, psycopg's loader returns the same datetimes (`tzinfo` is
`datetime.timezone.utc`).
"""

from __future__ import annotations

import datetime
import time

from django.db.backends.postgresql import base
from psycopg import adapters
from psycopg.adapt import Loader
from psycopg.pq import Format

HEALTH_CHECK_IDLE_SECONDS = 1.0
TIMESTAMPTZ_OID = adapters.types["timestamptz"].oid


_DEFAULT_TIMESTAMPTZ_LOADER = adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)  # C with psycopg-binary


class UtcTimestamptzLoader(Loader):
    """psycopg's default `timestamptz` loader, for a connection whose session time zone is UTC.

    A wrapper, because the C loader cannot be subclassed; `timezone` is what Django's
    `create_cursor` compares with the connection's time zone: while they agree, no cursor
    registers Django's own loader.
    """

    timezone = datetime.UTC

    def __init__(self, oid, context=None):
        super().__init__(oid, context)
        self._load = _DEFAULT_TIMESTAMPTZ_LOADER(oid, context).load

    def load(self, data):
        return self._load(data)


class DatabaseWrapper(base.DatabaseWrapper):
    _last_used: float | None = None  # when a request that ran a query last ended
    _used = False  # a cursor was made since the last request hook

    def init_connection_state(self):
        super().init_connection_state()  # sets the session's time zone
        connection = self.connection
        if (
            connection is not None
            and self.timezone is datetime.UTC
            and connection.info.parameter_status("TimeZone") == "UTC"
        ):
            connection.adapters.register_loader(TIMESTAMPTZ_OID, UtcTimestamptzLoader)

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
