"""The shared counting store of the limits (members/limits.py): the database by default, Redis when
`CACHE_URL` names one. Either way every process and server of a deployment counts in one place.

A count is kept in buckets (time divided by a width): a hit adds one to its bucket and answers, in
the same round trip, the bucket's new count and the sum of the buckets just before it, so a limit
over a rolling period is one statement (database) or one pipeline (Redis) per check.

A refusal flood is counted per key (`flood|<code>|<scope>`) and minute, with the minute's first
refusal kept beside the count (`flood`); `floods_ended` hands out the minutes that are over, at
most FLOOD_BATCH at a time, each to one caller, and forgets them only once the caller's transaction
(which writes their audit events) has committed: a failed commit leaves them to be handed out
again. A minute handed out is known as written: a refusal counted for it later goes to the key's
next minute (so no minute is written twice, and nothing counted is dropped).

The Redis used must not evict (`maxmemory-policy noeviction`, or a Redis of its own: see
docs/configuration.md, CACHE_URL); if it does anyway, a minute whose first refusal was evicted is
written from its key, one whose count was evicted is not written.
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
FLOOD_TTL = 24 * 3600  # both stores: a minute's refusal count is written long before this
# How long a written minute stays known as written (a database row emptied of its count; a key's
# last written minute in Redis): a refusal counted later for it (a server's clock behind, a slow
# request) is counted in the key's next minute instead of giving the written one a second event.
FLOOD_WRITTEN_SECONDS = 3600
FLOOD_BATCH = 500  # the most minutes one caller is handed at once (one transaction writes them)
CLAIM_SECONDS = 120  # Redis: how long one caller holds a batch it was handed (far longer than writing it)


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
    first: str  # the first refusal (JSON, as given to `flood`; "" if the store lost it)


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
            f"RETURNING {count}, {first}"
        )

    def flood(self, key: str, minute: int, now: int, *, first: str) -> tuple[int, int]:
        """Count one refusal of `key` in `minute` (one statement); (the minute's count so far, the
        minute). The first refusal's `first` is kept, later ones only counted. A minute already
        written (its row emptied, `first` NULL: the upsert waits for a writer holding it) does not
        count it: the next minute does, so a late refusal never gives a minute a second event."""
        database = default_connection()
        with database.cursor() as cursor:
            while True:
                cursor.execute(
                    self._flood_sql(database.vendor),
                    {"key": key, "minute": minute, "expires": now + FLOOD_TTL, "first": first},
                )
                count, kept = cursor.fetchone()
                if kept is not None:
                    return count, minute
                minute += 1

    @contextmanager
    def floods_ended(
        self, before_minute: int, *, key: str | None = None, limit: int = FLOOD_BATCH
    ) -> Iterator[list[Flood]]:
        """At most `limit` flood minutes before `before_minute`, oldest first (of `key` only: a
        range of its primary key; else every key, through the partial index on flood rows), locked
        so that one caller takes each; emptied (kept FLOOD_WRITTEN_SECONDS as written, then swept)
        in the same transaction as the caller's work, so both commit or neither."""
        with transaction.atomic():
            pending = LimitCounter.objects.select_for_update(
                skip_locked=connection.features.has_select_for_update_skip_locked
            ).filter(first__isnull=False, bucket__lt=before_minute)
            if key is not None:
                pending = pending.filter(key=key)
            rows = pending.order_by("bucket").values_list("key", "bucket", "count", "first")[:limit]
            floods = [Flood(*row) for row in rows]
            yield floods
            if floods:
                LimitCounter.objects.filter(pk__in=[(f.key, f.minute) for f in floods]).update(
                    count=0, first=None, expires=int(time.time()) + FLOOD_WRITTEN_SECONDS
                )

    def sweep(self, now: int) -> int:
        """Delete the buckets that no limit reads any more (a flood's minute stays until written;
        a written one FLOOD_WRITTEN_SECONDS more). Also deletes rows of the flood format before
        `first` (their keys named the action), once expired: never written."""
        return LimitCounter.objects.filter(expires__lt=now, first__isnull=True).delete()[0]

    def clear(self) -> None:
        LimitCounter.objects.all().delete()


class RedisStore:
    """Counters in Redis (Django's RedisCache of `CACHE_URL`): INCR plus MGET in one pipeline.

    Uses the cache's own connection pool (`_cache.get_client`, Django's RedisCacheClient) for the
    commands the cache API lacks, and two Lua scripts (atomic: a refusal and a claim never
    interleave) for the floods; tests/members/test_limits_stores.py pins it against a real server.
    """

    # Flood minutes waiting for their event, as "<key>|<minute>": by minute (score) for the
    # worker's rounds, and by name (all of score 0) for one key's minutes.
    PENDING = "flood-minutes"
    PENDING_BY_KEY = "flood-keys"
    # One refusal: counted in its minute, unless that minute of the key is already written (or
    # being written): then in the key's next minute. Count, first refusal and the key's last
    # written minute share one TTL, refreshed by every refusal. Answers {count, minute}.
    FLOOD_SCRIPT = """
local p, k, ttl = ARGV[1], ARGV[2], tonumber(ARGV[5])
local m = tonumber(ARGV[3])
local written = tonumber(redis.call('GET', p .. k .. '|written') or '-1')
if m <= written then m = written + 1 end
local member = k .. '|' .. m
local n = redis.call('INCR', p .. member)
redis.call('EXPIRE', p .. member, ttl)
redis.call('SET', p .. member .. '|first', ARGV[4], 'NX')
redis.call('EXPIRE', p .. member .. '|first', ttl)
redis.call('ZADD', p .. ARGV[6], m, member)
redis.call('ZADD', p .. ARGV[7], 0, member)
return {n, m}
"""
    # Hands out at most ARGV[3] minutes up to ARGV[2] (of key ARGV[5] only, if given), each
    # claimed (a lock of ARGV[4] seconds) by this caller alone: its count moves atomically to
    # `|claimed` (a refusal counted after this goes to the key's next minute: nothing is lost,
    # nothing counted twice), where it stays until forgotten after the caller's commit; a caller
    # that fails or dies leaves it there for the next one once the lock is gone.
    CLAIM_SCRIPT = """
local p, last, want, lock, ttl, key = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[6], ARGV[5]
local members
if key == '' then
  members = redis.call('ZRANGEBYSCORE', p .. ARGV[7], '-inf', last, 'LIMIT', 0, want * 4)
else
  members = redis.call('ZRANGEBYLEX', p .. ARGV[8], '[' .. key .. '|', '(' .. key .. '|:')
end
local out = {}
for _, member in ipairs(members) do
  if #out >= want then break end
  local k, m = string.match(member, '^(.*)|(%d+)$')
  if k and tonumber(m) <= last and (key == '' or k == key)
     and redis.call('SET', p .. member .. '|lock', 1, 'NX', 'EX', lock) then
    local base = p .. member
    local n = tonumber(redis.call('GETDEL', base) or '0') + tonumber(redis.call('GET', base .. '|claimed') or '0')
    redis.call('SET', base .. '|claimed', n, 'EX', ttl)
    local written = p .. k .. '|written'
    if tonumber(m) > tonumber(redis.call('GET', written) or '-1') then
      redis.call('SET', written, m, 'EX', ttl)
    end
    out[#out + 1] = {member, n, redis.call('GET', base .. '|first') or ''}
  end
end
return out
"""

    def __init__(self):
        self.cache = caches["default"]

    def _client(self):
        return self.cache._cache.get_client(write=True)

    def _key(self, name: str) -> str:
        return self.cache.make_key(name)

    def _prefix(self) -> str:
        """What the flood names start with (the cache's prefix and version; with the default key
        function `_key(x) == _prefix() + x`, so names of an earlier release are still found)."""
        return self._key("")

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

    def flood(self, key: str, minute: int, now: int, *, first: str) -> tuple[int, int]:
        """Count one refusal of `key` in `minute` (one script); (the minute's count so far, the
        minute: the key's next one if `minute` is already written)."""
        script = self._client().register_script(self.FLOOD_SCRIPT)
        args = [self._prefix(), key, minute, first, FLOOD_TTL, self.PENDING, self.PENDING_BY_KEY]
        count, counted_in = script(args=args)
        return int(count), int(counted_in)

    @contextmanager
    def floods_ended(
        self, before_minute: int, *, key: str | None = None, limit: int = FLOOD_BATCH
    ) -> Iterator[list[Flood]]:
        """At most `limit` pending flood minutes before `before_minute`, oldest first (of `key`
        only: a range of the by-name set), each claimed for CLAIM_SECONDS so that one caller
        takes it; forgotten only once the caller's transaction has committed (on_commit), released
        if it fails. A caller that dies holding a claim leaves the minute to the next caller after
        the claim, with its count."""
        script = self._client().register_script(self.CLAIM_SCRIPT)
        args = [
            self._prefix(),
            before_minute - 1,
            limit,
            CLAIM_SECONDS,
            key or "",
            FLOOD_TTL,
            self.PENDING,
            self.PENDING_BY_KEY,
        ]
        floods, members = [], []
        for raw_member, count, first in script(args=args):
            member = raw_member.decode()
            flood_key, _, minute = member.rpartition("|")
            floods.append(Flood(flood_key, int(minute), int(count), first.decode() if first else ""))
            members.append(member)
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
        prefix = self._prefix()
        pipe = self._client().pipeline(transaction=False)
        for member in members:
            if not claims_only:
                pipe.delete(f"{prefix}{member}|claimed", f"{prefix}{member}|first")
                pipe.zrem(prefix + self.PENDING, member)
                pipe.zrem(prefix + self.PENDING_BY_KEY, member)
            pipe.delete(f"{prefix}{member}|lock")
        pipe.execute()

    def sweep(self, now: int) -> int:
        self._client().delete(self._key("flood-pending"))  # the pending set of an earlier release
        return 0  # Redis expires keys itself

    def clear(self) -> None:
        self.cache.clear()


def store() -> DatabaseStore | RedisStore:
    return RedisStore() if redis_configured() else DatabaseStore()
