"""The shared counting store of the limits (members/limits.py): the database by default, Redis when
`CACHE_URL` names one. Either way every process and server of a deployment counts in one place.

A count is kept in buckets (time divided by a width): a hit adds one to its bucket and answers, in
the same round trip, the bucket's new count and the sum of the buckets just before it, so a limit
over a rolling period is one statement (database) or one pipeline (Redis) per check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.core.cache import caches
from django.db import connection, transaction
from django.db.models import F

from core.prepared import default_connection
from members.models import LimitCounter

FLOOD_PREFIX = "flood|"
FLOOD_TTL = 24 * 3600  # a minute's refusal count is summarised long before this


@dataclass(frozen=True, slots=True)
class Hit:
    current: int  # this bucket's count, the hit included
    earlier: int  # the sum of the `lookback` buckets before it
    oldest: int | None  # the oldest of those buckets with a count, if any


def redis_configured() -> bool:
    return settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"


class DatabaseStore:
    """Counters in `members_limitcounter` (unlogged on PostgreSQL): one upsert per hit; buckets
    past their use are deleted by `sweep` (run_worker, through limits.flood_summaries_write)."""

    @staticmethod
    @cache
    def _hit_sql(vendor: str) -> str:
        q = connection.ops.quote_name
        table = q(LimitCounter._meta.db_table)
        key, bucket, count, expires = q("key"), q("bucket"), q("count"), q("expires")
        # Named parameters: each value is sent once, however often the statement names it.
        earlier = f"FROM {table} c WHERE c.{key} = %(key)s AND c.{bucket} >= %(low)s AND c.{bucket} < %(bucket)s"
        return (
            f"INSERT INTO {table} ({key}, {bucket}, {count}, {expires}) "  # noqa: S608 - fixed names
            "VALUES (%(key)s, %(bucket)s, %(amount)s, %(expires)s) "
            f"ON CONFLICT ({key}, {bucket}) DO UPDATE SET {count} = {table}.{count} + EXCLUDED.{count} "
            f"RETURNING {count}, (SELECT COALESCE(SUM(c.{count}), 0) {earlier}), "
            f"(SELECT MIN(c.{bucket}) {earlier} AND c.{count} > 0)"
        )

    def hit(self, key: str, bucket: int, lookback: int, expires: int, *, amount: int = 1) -> Hit:
        low = bucket - lookback
        database = default_connection()  # not through Django's connection proxy: this runs on every call
        with database.cursor() as cursor:
            cursor.execute(
                self._hit_sql(database.vendor),
                {"key": key, "bucket": bucket, "amount": amount, "expires": expires, "low": low},
            )
            current, earlier, oldest = cursor.fetchone()
        return Hit(current, int(earlier), oldest)

    def undo(self, key: str, bucket: int, *, amount: int = 1) -> None:
        LimitCounter.objects.filter(key=key, bucket=bucket).update(count=F("count") - amount)

    def flood(self, key: str, minute: int, now: int) -> int:
        return self.hit(key, minute, 0, now + FLOOD_TTL).current

    def flood_ended(self, before_minute: int) -> list[tuple[str, int, int]]:
        """(key, minute, count) of every flood count of a minute before `before_minute`, taken out
        of the store (so that one caller summarises each)."""
        with transaction.atomic():
            rows = list(
                LimitCounter.objects.select_for_update(
                    skip_locked=connection.features.has_select_for_update_skip_locked
                )
                .filter(key__startswith=FLOOD_PREFIX, bucket__lt=before_minute)
                .values_list("key", "bucket", "count")
            )
            for key, minute, _count in rows:
                LimitCounter.objects.filter(key=key, bucket=minute).delete()
        return rows

    def sweep(self, now: int) -> int:
        """Delete the buckets that no limit reads any more (flood counts are summarised first)."""
        return LimitCounter.objects.filter(expires__lt=now).exclude(key__startswith=FLOOD_PREFIX).delete()[0]

    def clear(self) -> None:
        LimitCounter.objects.all().delete()


class RedisStore:
    """Counters in Redis (Django's RedisCache of `CACHE_URL`): INCR plus MGET in one pipeline.

    Uses the cache's own connection pool (`_cache.get_client`, Django's RedisCacheClient) for the
    commands the cache API lacks; tests/members/test_limits_stores.py pins it against a real server.
    """

    PENDING = "flood-pending"

    def __init__(self):
        self.cache = caches["default"]

    def _client(self):
        return self.cache._cache.get_client(write=True)

    def _key(self, name: str) -> str:
        return self.cache.make_key(name)

    def hit(self, key: str, bucket: int, lookback: int, expires: int, *, amount: int = 1) -> Hit:
        ttl = max(int(expires - time.time()), 1)
        name = self._key(f"{key}|{bucket}")
        pipe = self._client().pipeline(transaction=False)
        pipe.incrby(name, amount)
        pipe.expire(name, ttl)
        earlier_buckets = list(range(bucket - lookback, bucket))
        if earlier_buckets:
            pipe.mget([self._key(f"{key}|{b}") for b in earlier_buckets])
        answers = pipe.execute()
        counts = [int(v) if v is not None else 0 for v in (answers[2] if earlier_buckets else [])]
        oldest = next((b for b, n in zip(earlier_buckets, counts, strict=True) if n > 0), None)
        return Hit(int(answers[0]), sum(counts), oldest)

    def undo(self, key: str, bucket: int, *, amount: int = 1) -> None:
        self._client().decrby(self._key(f"{key}|{bucket}"), amount)

    def flood(self, key: str, minute: int, now: int) -> int:
        name = self._key(f"{key}|{minute}")
        pipe = self._client().pipeline(transaction=False)
        pipe.incr(name)
        pipe.expire(name, FLOOD_TTL)
        pipe.sadd(self._key(self.PENDING), f"{key}|{minute}")
        return int(pipe.execute()[0])

    def flood_ended(self, before_minute: int) -> list[tuple[str, int, int]]:
        client = self._client()
        pending = self._key(self.PENDING)
        taken = []
        for raw in client.smembers(pending):
            member = raw.decode()
            key, _, minute = member.rpartition("|")
            if int(minute) < before_minute and client.srem(pending, member):  # one caller takes each
                name = self._key(member)
                pipe = client.pipeline(transaction=False)
                pipe.get(name)
                pipe.delete(name)
                count = pipe.execute()[0]
                taken.append((key, int(minute), int(count or 0)))
        return taken

    def sweep(self, now: int) -> int:
        return 0  # Redis expires keys itself

    def clear(self) -> None:
        self.cache.clear()


def store() -> DatabaseStore | RedisStore:
    return RedisStore() if redis_configured() else DatabaseStore()
