"""The two stores of members/counters.py behave alike: a hit answers its bucket's count and the
sum of the buckets before it in one round trip (one SQL statement; one Redis pipeline), a refusal
is taken back, and each ended minute's flood count is handed out once, with its first refusal, and
forgotten only when the caller's transaction commits. The Redis store runs
against a real redis-server of its own (skipped, saying so, where none is installed)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from members import counters
from tests.security.live import ThrowawayRedis, redis_available


@pytest.fixture(scope="module")
def redis_server():
    if not redis_available():
        pytest.skip("redis-server is not installed (Debian package redis-server): the Redis store is untested")
    server = ThrowawayRedis().start()
    yield server
    server.destroy()


@pytest.fixture(params=["database", "redis"])
def store(request, db, settings):
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": server.url}
        }
        chosen = counters.store()
        assert isinstance(chosen, counters.RedisStore)
        chosen.clear()
        yield chosen
        chosen.clear()
    else:
        chosen = counters.store()
        assert isinstance(chosen, counters.DatabaseStore)
        yield chosen


EXPIRES = 4_000_000_000


def test_a_hit_answers_its_bucket_and_the_buckets_before_it(store):
    assert store.hit("k", 100, 3, EXPIRES) == counters.Hit(1, 0, None)
    assert store.hit("k", 100, 3, EXPIRES) == counters.Hit(2, 0, None)
    assert store.hit("k", 102, 3, EXPIRES) == counters.Hit(1, 2, 100)
    assert store.hit("k", 103, 3, EXPIRES, amount=5) == counters.Hit(5, 3, 100)
    assert store.hit("k", 104, 3, EXPIRES) == counters.Hit(1, 6, 102)  # bucket 100 is out of reach
    assert store.hit("other", 104, 3, EXPIRES) == counters.Hit(1, 0, None)  # keys apart


def test_a_refused_hit_is_taken_back(store):
    store.hit("k", 7, 0, EXPIRES, amount=3)
    store.undo("k", 7, amount=2)
    assert store.hit("k", 7, 0, EXPIRES).current == 2


def _ended(store, before_minute: int, **kwargs) -> list[counters.Flood]:
    """What one caller is handed, forgotten once its (here: empty) transaction commits."""
    with store.floods_ended(before_minute, **kwargs) as floods, transaction.atomic():
        pass
    return floods


def test_each_ended_minute_of_a_flood_is_handed_out_once_with_its_first_refusal(
    store, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert [store.flood("flood|b|m|X", 50, 3000, first=f"first {n}") for n in range(3)] == [
            (1, 50),
            (2, 50),
            (3, 50),
        ]
        assert store.flood("flood|b|m|X", 51, 3060, first="later") == (1, 51)
        assert _ended(store, 51) == [counters.Flood("flood|b|m|X", 50, 3, "first 0")]
        assert _ended(store, 51) == []
        assert _ended(store, 52) == [counters.Flood("flood|b|m|X", 51, 1, "later")]


def test_a_key_is_handed_out_alone(store, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        for key in ("flood|b|a|10.0.0.1", "flood|b|a|10.0.0.10", "flood|b|a|10.0.0.1x"):
            store.flood(key, 50, 3000, first="{}")
        assert [f.key for f in _ended(store, 51, key="flood|b|a|10.0.0.1")] == ["flood|b|a|10.0.0.1"]
        assert sorted(f.key for f in _ended(store, 51)) == ["flood|b|a|10.0.0.10", "flood|b|a|10.0.0.1x"]


def test_a_minute_is_forgotten_only_when_its_transaction_commits(store, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        store.flood("flood|b|m|X", 50, 3000, first="{}")
        store.flood("flood|b|m|X", 50, 3000, first="{}")
        with pytest.raises(RuntimeError), store.floods_ended(51) as floods, transaction.atomic():
            assert [f.count for f in floods] == [2]
            raise RuntimeError("the commit failed")
        # Late, but still counted: in its minute, or (Redis: the minute was claimed) the next one.
        store.flood("flood|b|m|X", 50, 3000, first="{}")
        assert sum(f.count for f in _ended(store, 52)) == 3
        assert _ended(store, 52) == []


def test_the_redis_store_hands_a_minute_to_one_caller_at_a_time(redis_server, settings, db):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_server.url}
    }
    store = counters.store()
    store.clear()
    store.flood("flood|b|m|X", 50, 3000, first="{}")
    with store.floods_ended(51) as taken:
        assert len(taken) == 1
        assert _ended(store, 51) == []  # claimed by the first caller
    store.clear()


def test_the_database_store_checks_a_limit_in_one_statement(db):
    store = counters.DatabaseStore()
    store.hit("warm", 1, 6, EXPIRES)
    with CaptureQueriesContext(connection) as queries:
        store.hit("k", 10, 6, EXPIRES)
    assert len(queries) == 1


def test_the_database_store_sweeps_expired_buckets_but_not_unwritten_floods(db):
    store = counters.DatabaseStore()
    store.hit("old", 1, 0, 1000)
    store.hit("new", 1, 0, EXPIRES)
    store.flood("flood|b|m|X", 1, 0, first="{}")
    assert store.sweep(10**9) == 1
    assert _ended(store, 2) == [counters.Flood("flood|b|m|X", 1, 1, "{}")]


def test_the_database_store_counts_a_refusal_in_one_statement_and_finds_a_keys_minutes_by_its_key(db):
    store = counters.DatabaseStore()
    store.flood("flood|b|m|W", 1, 0, first="{}")
    with CaptureQueriesContext(connection) as queries:
        store.flood("flood|b|m|X", 1, 0, first="{}")
    assert len(queries) == 1
    with CaptureQueriesContext(connection) as queries, store.floods_ended(2, key="flood|b|m|X"):
        pass
    (select,) = [q["sql"] for q in queries if q["sql"].startswith("SELECT")]
    assert "LIKE" not in select.upper() and '"key" = ' in select


def test_a_minute_is_handed_out_in_bounded_batches_oldest_first(store, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        for minute in (52, 50, 51, 53):
            store.flood("flood|b|m|X", minute, minute * 60, first="{}")
        assert [f.minute for f in _ended(store, 53, limit=2)] == [50, 51]
        assert [f.minute for f in _ended(store, 53, limit=2)] == [52]  # 53 is not over


def test_a_refusal_counted_for_a_written_minute_goes_to_the_next_one(store, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        store.flood("flood|b|m|X", 50, 3000, first="a")
        assert _ended(store, 51) == [counters.Flood("flood|b|m|X", 50, 1, "a")]
        assert store.flood("flood|b|m|X", 50, 3059, first="late") == (1, 51)
        assert _ended(store, 52) == [counters.Flood("flood|b|m|X", 51, 1, "late")]


def _redis_store(redis_server, settings) -> counters.RedisStore:
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_server.url}
    }
    store = counters.store()
    store.clear()
    return store


def test_the_redis_store_loses_no_refusal_counted_while_a_minute_is_being_written(
    redis_server, settings, db, django_capture_on_commit_callbacks
):
    store = _redis_store(redis_server, settings)
    with django_capture_on_commit_callbacks(execute=True):
        store.flood("flood|b|m|X", 50, 3000, first="a")
        with store.floods_ended(51) as taken, transaction.atomic():
            assert store.flood("flood|b|m|X", 50, 3000, first="b") == (1, 51)  # after the claim
        assert [f.count for f in taken] == [1]
        assert _ended(store, 52) == [counters.Flood("flood|b|m|X", 51, 1, "b")]


def test_the_redis_store_keeps_a_first_refusal_as_long_as_its_count(redis_server, settings, db):
    store = _redis_store(redis_server, settings)
    client = store._client()
    store.flood("flood|b|m|X", 50, 3000, first="a")
    count, first = store._key("flood|b|m|X|50"), store._key("flood|b|m|X|50|first")
    client.expire(first, 10)  # as if set long ago
    client.expire(count, 10)
    store.flood("flood|b|m|X", 50, 3000, first="b")
    assert client.ttl(first) > 10 and abs(client.ttl(first) - client.ttl(count)) <= 1
    store.clear()


def test_a_dead_writers_claim_lapses_and_the_next_writer_gets_the_whole_count(redis_server, settings, db):
    store = _redis_store(redis_server, settings)
    store.flood("flood|b|m|X", 50, 3000, first="a")
    store.flood("flood|b|m|X", 50, 3000, first="a")
    with store.floods_ended(51) as taken:  # no transaction commits: the writer "died"
        assert [f.count for f in taken] == [2]
        store._client().delete(store._key("flood|b|m|X|50|lock"))  # its claim lapsed
        assert [f.count for f in _ended(store, 51)] == [2]
    store.clear()


def test_a_minute_whose_first_refusal_or_count_redis_lost_is_written_from_its_key_or_not_at_all(
    redis_server, settings, db, monkeypatch, django_capture_on_commit_callbacks
):
    from audit.models import AuditEvent
    from members import limits
    from tests.members.test_limits import Clock

    clock = Clock()
    monkeypatch.setattr(limits, "clock", clock)
    store = _redis_store(redis_server, settings)
    client = store._client()
    minute = int(clock.now // 60)
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            limits.flood_refusal(
                scope="m|BANKA", code="quota_exceeded", action="inquiry.create", member_code="BANKA", quota="inquiries"
            )
        limits.flood_refusal(scope="a|192.0.2.1", code="throttled", action="auth.authenticate")
        client.delete(store._key(f"flood|quota_exceeded|m|BANKA|{minute}|first"))  # evicted
        client.delete(store._key(f"flood|throttled|a|192.0.2.1|{minute}"))  # evicted
        clock.now += 60 + limits.FLOOD_GRACE_SECONDS
        assert limits.flood_events_write() == 1
    (event,) = AuditEvent.objects.filter(outcome="denied")
    assert (event.member_code, event.actor, event.details["why"], event.details["count"]) == (
        "BANKA",
        "member:BANKA",
        "quota_exceeded",
        2,
    )
    assert client.zcard(store._key(store.PENDING)) == 0  # the count-less minute is gone too
    store.clear()
