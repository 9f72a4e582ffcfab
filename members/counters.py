"""The shared counting store of the limits (members/limits.py): the database by default, Redis when
`CACHE_URL` names one. Either way every process and server of a deployment counts in one place.

A count is kept in buckets (time divided by a width): a hit adds one to its bucket and answers, in
the same round trip, the bucket's new count and the sum of the buckets just before it, so a limit
over a rolling period is one statement (database) or one pipeline (Redis) per check.

A refusal flood is counted per key (`flood|<code>|<scope>`) and minute, with the minute's first
refusal kept beside the count (`flood`); `floods_ended` hands out the minutes that are over, each
to one caller, and forgets them only once the caller's transaction (which writes their audit
events) has committed: a failed commit leaves them to be handed out again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.core.cache import caches
from django.db import connection, transaction
from django.db.models import F

from core.prepared import default_connection
from members.models import LimitCounter

FLOOD_PREFIX = "flood|"
FLOOD_TTL = 24 * 3600  # Redis: a minute's refusal count is written long before this
CLAIM_SECONDS = 60  # Redis: how long one caller holds the ended minutes it was handed


@dataclass(frozen=True, slots=True)
class Hit:
    current: int  # this bucket's count, the hit included
    earlier: int  # the sum of the `lookback` buckets before it
    oldest: int | None  # the oldest of those buckets with a count, if any


@dataclass(frozen=True, slots=True)
class Flood:
    key: str  # flood|<code>|<scope>
    minute: int
    count: int  # every refusal of the key in that minute
    first: str  # the first refusal (JSON, as given to `flood`)


def redis_configured() -> bool:
    return settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"


class DatabaseStore:
    """Counters in `members_limitcounter` (unlogged on PostgreSQL): one upsert per hit; buckets
    past their use are deleted by `sweep` (run_worker, through limits.flood_events_write)."""

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

    @staticmethod
    @cache
    def _flood_sql(vendor: str) -> str:
        q = connection.ops.quote_name
        table = q(LimitCounter._meta.db_table)
        key, bucket, count, expires, first = q("key"), q("bucket"), q("count"), q("expires"), q("first")
        return (
            f"INSERT INTO {table} ({key}, {bucket}, {count}, {expires}, {first}) "  # noqa: S608 - fixed names
            "VALUES (%(key)s, %(minute)s, 1, %(expires)s, %(first)s) "
            f"ON CONFLICT ({key}, {bucket}) DO UPDATE SET {count} = {table}.{count} + 1 "
            f"RETURNING {count}"
        )

    def flood(self, key: str, minute: int, now: int, *, first: str) -> int:
        """Count one refusal of `key` in `minute` (one statement); the minute's count so far. The
        first refusal's `first` is kept, later ones only counted."""
        database = default_connection()
        with database.cursor() as cursor:
            cursor.execute(
                self._flood_sql(database.vendor),
                {"key": key, "minute": minute, "expires": now + FLOOD_TTL, "first": first},
            )
            return cursor.fetchone()[0]

    @contextmanager
    def floods_ended(self, before_minute: int, *, key: str | None = None) -> Iterator[list[Flood]]:
        """The flood minutes before `before_minute` (of `key` only: a range of its primary key;
        else every key, through the partial index on flood rows), locked so that one caller takes
        each; deleted in the same transaction as the caller's work, so both commit or neither."""
        with transaction.atomic():
            pending = LimitCounter.objects.select_for_update(
                skip_locked=connection.features.has_select_for_update_skip_locked
            ).filter(first__isnull=False, bucket__lt=before_minute)
            if key is not None:
                pending = pending.filter(key=key)
            floods = [Flood(*row) for row in pending.values_list("key", "bucket", "count", "first")]
            yield floods
            if floods:
                LimitCounter.objects.filter(pk__in=[(f.key, f.minute) for f in floods]).delete()

    def sweep(self, now: int) -> int:
        """Delete the buckets that no limit reads any more (a flood's minute stays until written)."""
        return LimitCounter.objects.filter(expires__lt=now, first__isnull=True).delete()[0]

    def clear(self) -> None:
        LimitCounter.objects.all().delete()


class RedisStore:
    """Counters in Redis (Django's RedisCache of `CACHE_URL`): INCR plus MGET in one pipeline.

    Uses the cache's own connection pool (`_cache.get_client`, Django's RedisCacheClient) for the
    commands the cache API lacks; tests/members/test_limits_stores.py pins it against a real server.
    """

    PENDING = "flood-minutes"  # a sorted set of "<key>|<minute>", all of score 0

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

    def flood(self, key: str, minute: int, now: int, *, first: str) -> int:
        """Count one refusal of `key` in `minute` (one pipeline); the minute's count so far. The
        first refusal's `first` is kept (SET NX), and the minute listed as pending."""
        member = f"{key}|{minute}"
        name = self._key(member)
        pipe = self._client().pipeline(transaction=False)
        pipe.incr(name)
        pipe.expire(name, FLOOD_TTL)
        pipe.set(self._key(f"{member}|first"), first, nx=True, ex=FLOOD_TTL)
        pipe.zadd(self._key(self.PENDING), {member: 0})  # one score: ordered by name, so by key
        return int(pipe.execute()[0])

    @contextmanager
    def floods_ended(self, before_minute: int, *, key: str | None = None) -> Iterator[list[Flood]]:
        """The pending flood minutes before `before_minute` (of `key` only: a range of the
        pending set by name), each claimed for CLAIM_SECONDS so that one caller takes it; forgotten
        only once the caller's transaction has committed (on_commit), released if it fails. A
        caller that dies holding a claim leaves the minute to the next caller after the claim."""
        client = self._client()
        pending = self._key(self.PENDING)
        if key is None:
            names = client.zrange(pending, 0, -1)
        else:  # "key|" then the minute's digits; ":" follows "9"
            names = client.zrangebylex(pending, f"[{key}|", f"({key}|:")
        candidates = []
        for raw in names:
            member = raw.decode()
            flood_key, _, minute = member.rpartition("|")
            if minute.isdigit() and int(minute) < before_minute and (key is None or flood_key == key):
                candidates.append((member, flood_key, int(minute)))
        claimed = []
        if candidates:
            pipe = client.pipeline(transaction=False)
            for member, _key, _minute in candidates:
                pipe.set(self._key(f"{member}|claim"), 1, nx=True, ex=CLAIM_SECONDS)
            claimed = [c for c, won in zip(candidates, pipe.execute(), strict=True) if won]
        floods = []
        if claimed:
            pipe = client.pipeline(transaction=False)
            for member, _key, _minute in claimed:
                pipe.get(self._key(member))
                pipe.get(self._key(f"{member}|first"))
            answers = pipe.execute()
            for n, (_member, flood_key, minute) in enumerate(claimed):
                count, first = answers[2 * n], answers[2 * n + 1]
                floods.append(Flood(flood_key, minute, int(count or 0), first.decode() if first else "{}"))
        members = [member for member, _key, _minute in claimed]
        try:
            yield floods
        except BaseException:
            self._forget(members, claims_only=True)
            raise
        if members:
            transaction.on_commit(lambda: self._forget(members), robust=True)

    def _forget(self, members: list[str], *, claims_only: bool = False) -> None:
        if not members:
            return
        pipe = self._client().pipeline(transaction=False)
        for member in members:
            if not claims_only:
                pipe.delete(self._key(member), self._key(f"{member}|first"))
                pipe.zrem(self._key(self.PENDING), member)
            pipe.delete(self._key(f"{member}|claim"))
        pipe.execute()

    def sweep(self, now: int) -> int:
        return 0  # Redis expires keys itself

    def clear(self) -> None:
        self.cache.clear()


def store() -> DatabaseStore | RedisStore:
    return RedisStore() if redis_configured() else DatabaseStore()
